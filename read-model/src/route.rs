//! The route of a delivery: the partner's location pings of one order, in time order. Tracking
//! data written by the gateway beside the order's latest location, never workflow history.
//! Bounded: an order keeps its latest [`MAX_ROUTE_POINTS`] pings, and none once it ends.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::reader::{ReadError, ReadModel};

/// Most pings kept per order: at one ping a second that is the last quarter of an hour of the
/// trip, enough to draw where the parcel came from; older ones are dropped as new ones come.
pub const MAX_ROUTE_POINTS: i64 = 900;

/// One ping of the route.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePoint {
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
}

/// An order's route as the read model holds it.
#[derive(Debug, Clone)]
pub struct Route {
    pub customer_id: String,
    pub partner_id: Option<String>,
    pub state: String,
    /// Oldest first.
    pub points: Vec<RoutePoint>,
    /// Where the parcel goes, as the partner geocoded it (`{lat, lon}`), when it said.
    pub destination: Option<Value>,
}

/// Keeps a ping in the route (a repeated one changes nothing) and drops the oldest beyond the
/// bound. The caller holds the order's row lock, so an order that ends meanwhile cannot get a
/// ping after its route was pruned.
pub(crate) async fn record(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    at: DateTime<Utc>,
    location: &Value,
) -> Result<(), sqlx::Error> {
    let (Some(lat), Some(lon)) = (
        location.get("lat").and_then(Value::as_f64),
        location.get("lon").and_then(Value::as_f64),
    ) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO delivery_order_locations (delivery_order_id, at, lat, lon, accuracy_m)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(at)
    .bind(lat)
    .bind(lon)
    .bind(location.get("accuracy_m").and_then(Value::as_f64))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM delivery_order_locations WHERE delivery_order_id = $1 AND at < (
             SELECT at FROM delivery_order_locations WHERE delivery_order_id = $1
             ORDER BY at DESC OFFSET $2 - 1 LIMIT 1)",
    )
    .bind(id)
    .bind(MAX_ROUTE_POINTS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets the route of an order that ended.
pub(crate) async fn prune(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM delivery_order_locations WHERE delivery_order_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl ReadModel {
    /// The route of one order (`None`: no such order), read in one snapshot with the order's
    /// owner so the caller can check who may see it.
    pub async fn route(&self, id: Uuid) -> Result<Option<Route>, ReadError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let order = sqlx::query(
            "SELECT customer_id, partner_id, state, destination::text AS destination
             FROM delivery_orders WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(order) = order else {
            return Ok(None);
        };
        let points = sqlx::query(
            "SELECT at, lat, lon, accuracy_m FROM delivery_order_locations
             WHERE delivery_order_id = $1 ORDER BY at LIMIT $2",
        )
        .bind(id)
        .bind(MAX_ROUTE_POINTS)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| RoutePoint {
            at: row.get("at"),
            lat: row.get("lat"),
            lon: row.get("lon"),
            accuracy_m: row.get("accuracy_m"),
        })
        .collect();
        tx.commit().await?;
        let destination = order
            .get::<Option<String>, _>("destination")
            .map(|text| serde_json::from_str(&text))
            .transpose()?;
        Ok(Some(Route {
            customer_id: order.get("customer_id"),
            partner_id: order.get("partner_id"),
            state: order.get("state"),
            points,
            destination,
        }))
    }
}
