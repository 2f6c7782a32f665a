//! The route of a delivery: the partner's location pings of one order, in time order. Tracking
//! data the gateway writes ([`ReadModel::record_location`]) beside the order's latest location,
//! never workflow history. Bounded: an order keeps its latest [`MAX_ROUTE_POINTS`] pings, and
//! none once it ends.

use chrono::{DateTime, Utc};
use delivery_workflows::State;
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::outbox::{self, LiveMessage, OutboxKind, OutboxRow, TrackingUpdate};
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

    /// Records a location ping from the partner: tracking data, never a workflow event. Returns
    /// `None` for an unknown order, `Some(false)` when a newer ping is already stored. The ping
    /// also joins the order's route (even a late one: the route is in time order), unless the
    /// order has ended; `destination` is where the partner geocoded the drop-off.
    pub async fn record_location(
        &self,
        id: Uuid,
        event_id: &str,
        location: &Value,
        destination: Option<&Value>,
        at: DateTime<Utc>,
    ) -> Result<Option<bool>, ReadError> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders this ping with the projection that ends the order (and prunes
        // its route).
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM delivery_orders WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            return Ok(None);
        };
        let ended = serde_json::from_value::<State>(Value::String(state))
            .is_ok_and(|s| delivery_workflows::DELIVERY_ORDER_V1.is_terminal(s));
        if !ended {
            record(&mut tx, id, at, location).await?;
            if let Some(destination) = destination {
                sqlx::query("UPDATE delivery_orders SET destination = $2 WHERE id = $1")
                    .bind(id)
                    .bind(sqlx::types::Json(destination))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let updated: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "UPDATE delivery_orders SET location = $2, location_at = $3
             WHERE id = $1 AND (location_at IS NULL OR location_at < $3) RETURNING version, customer_id, partner_id",
        )
        .bind(id)
        .bind(sqlx::types::Json(location))
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((version, customer_id, partner_id)) = updated else {
            tx.commit().await?;
            return Ok(Some(false));
        };
        let update = LiveMessage::Tracking(TrackingUpdate {
            delivery_order_id: id.to_string(),
            customer_id,
            partner_id,
            version: version as u64,
            location: location.clone(),
            location_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        let row = OutboxRow {
            dedup_key: format!("tracking:{id}:{event_id}"),
            delivery_order_id: id,
            version,
            kind: OutboxKind::Tracking,
            payload: serde_json::to_value(update)?,
        };
        outbox::enqueue(&mut tx, [row]).await?;
        tx.commit().await?;
        Ok(Some(true))
    }
}
