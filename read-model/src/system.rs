//! What `GET /api/state` reads: counts by state, today's confirmations and failures, drivers on
//! the road, the latest events, the projection's health, whether PostgreSQL and Redis answer,
//! and the computed state the gateways share for a few seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use delivery_workflows::State;
use sqlx::Row;

use crate::graph_facts;
use crate::reader::ReadModel;

/// Longest a health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Delivery orders by state and what happened today.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Every state that has orders (absent states have none).
    pub by_state: BTreeMap<String, i64>,
    pub confirmed_today: i64,
    pub failed_today: i64,
    /// Drivers with a parcel on board (`unnamed driver` when the partner gave no name), and
    /// which orders.
    pub drivers: Vec<(String, Vec<String>)>,
    /// The 20 most recent audit entries, newest first.
    pub latest: Vec<LatestEntry>,
}

#[derive(Debug, Clone)]
pub struct LatestEntry {
    pub delivery_order_id: String,
    pub seq: u64,
    pub entry_type: String,
    pub to_state: String,
    pub actor_kind: String,
    pub occurred_at: DateTime<Utc>,
}

/// An order whose projection fails with an error retrying cannot fix.
#[derive(Debug, Clone)]
pub struct FailingProjection {
    pub delivery_order_id: String,
    pub version: i64,
    pub error: String,
    pub attempts: i64,
    pub since: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

/// The projection's health: the failing orders (the first 20 of `failing_total`) and the
/// anomalies it applied in the last day.
#[derive(Debug, Clone)]
pub struct ProjectionHealth {
    pub failing: Vec<FailingProjection>,
    pub failing_total: i64,
    pub anomalies_last_day: i64,
}

impl ReadModel {
    pub async fn overview(&self) -> Result<Overview, sqlx::Error> {
        let pool = &self.pool;
        let rows = sqlx::query("SELECT state, count(*) AS n FROM delivery_orders GROUP BY state")
            .fetch_all(pool)
            .await?;
        let by_state = rows
            .iter()
            .map(|row| (row.get::<String, _>("state"), row.get::<i64, _>("n")))
            .collect();
        let (confirmed_today, failed_today): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE to_state = $1), count(*) FILTER (WHERE type = ANY($2))
             FROM delivery_order_events WHERE occurred_at >= date_trunc('day', now())",
        )
        .bind(State::DeliveryConfirmed.as_str())
        .bind(graph_facts::failure_events())
        .fetch_one(pool)
        .await?;
        let drivers = sqlx::query(
            "SELECT COALESCE(driver->>'name', 'unnamed driver') AS name,
                    array_agg(id::text ORDER BY updated_at) AS ids
             FROM delivery_orders WHERE state = $1 GROUP BY 1 ORDER BY 1 LIMIT 200",
        )
        .bind(State::PickedUp.as_str())
        .fetch_all(pool)
        .await?;
        let latest = sqlx::query(
            "SELECT delivery_order_id::text AS id, seq, type, to_state, actor_kind, occurred_at
             FROM delivery_order_events ORDER BY occurred_at DESC, seq DESC LIMIT 20",
        )
        .fetch_all(pool)
        .await?;
        Ok(Overview {
            by_state,
            confirmed_today,
            failed_today,
            drivers: drivers
                .iter()
                .map(|r| (r.get("name"), r.get("ids")))
                .collect(),
            latest: latest
                .iter()
                .map(|r| LatestEntry {
                    delivery_order_id: r.get("id"),
                    seq: r.get::<i64, _>("seq") as u64,
                    entry_type: r.get("type"),
                    to_state: r.get("to_state"),
                    actor_kind: r.get("actor_kind"),
                    occurred_at: r.get("occurred_at"),
                })
                .collect(),
        })
    }

    /// `None` when the read model does not answer in time.
    pub async fn projection_health(&self) -> Option<ProjectionHealth> {
        let pool = &self.pool;
        let read = async {
            let failing = sqlx::query(
                "SELECT delivery_order_id, version, error, attempts, first_failed_at, last_failed_at
                 FROM read_model_projection_failures ORDER BY first_failed_at LIMIT 20",
            )
            .fetch_all(pool)
            .await?;
            let failing_total: i64 =
                sqlx::query_scalar("SELECT count(*) FROM read_model_projection_failures")
                    .fetch_one(pool)
                    .await?;
            let anomalies_last_day: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM read_model_anomalies WHERE recorded_at > now() - interval '1 day'",
            )
            .fetch_one(pool)
            .await?;
            Ok::<_, sqlx::Error>(ProjectionHealth {
                failing: failing
                    .iter()
                    .map(|r| FailingProjection {
                        delivery_order_id: r.get("delivery_order_id"),
                        version: r.get("version"),
                        error: r.get("error"),
                        attempts: r.get("attempts"),
                        since: r.get("first_failed_at"),
                        last_failed_at: r.get("last_failed_at"),
                    })
                    .collect(),
                failing_total,
                anomalies_last_day,
            })
        };
        tokio::time::timeout(CHECK_TIMEOUT, read).await.ok()?.ok()
    }

    /// Asks PostgreSQL for nothing, to see that it answers (callers bound the wait).
    pub async fn ping_postgres(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Pings Redis (callers bound the wait).
    pub async fn ping_redis(&self) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .map(drop)
    }

    /// Rows the relay has not published yet, and how long the oldest has waited (ms).
    pub async fn outbox_backlog(&self) -> Result<(i64, Option<f64>), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), (EXTRACT(EPOCH FROM now() - min(created_at)) * 1000)::float8
             FROM read_model_outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Size of the operator queue and how long its oldest order has waited (seconds); an order
    /// waits since it entered its state (as [`ReadModel::operator_queue`] orders it).
    pub async fn operator_queue_size(&self) -> Result<(i64, Option<f64>), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(COALESCE(e.occurred_at, d.updated_at)))::float8
             FROM delivery_orders d
             LEFT JOIN LATERAL (
                 SELECT occurred_at FROM delivery_order_events ev
                 WHERE ev.delivery_order_id = d.id AND ev.to_state = d.state
                 ORDER BY seq DESC LIMIT 1
             ) e ON true
             WHERE d.state = ANY($1)",
        )
        .bind(graph_facts::awaiting_operator())
        .fetch_one(&self.pool)
        .await
    }

    /// The `/api/state` another gateway computed lately, if Redis has it.
    pub async fn shared_state(&self) -> Option<String> {
        let mut redis = self.redis.clone();
        let command = redis::cmd("GET").arg(self.keys.api_state()).to_owned();
        let get = command.query_async::<Option<String>>(&mut redis);
        tokio::time::timeout(CHECK_TIMEOUT, get).await.ok()?.ok()?
    }

    /// Shares a computed `/api/state` with the other gateways for `ttl` (best effort).
    pub async fn share_state(&self, state: &str, ttl: Duration) {
        let mut redis = self.redis.clone();
        let command = redis::cmd("SET")
            .arg(self.keys.api_state())
            .arg(state)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .to_owned();
        let set = command.query_async::<()>(&mut redis);
        if !matches!(tokio::time::timeout(CHECK_TIMEOUT, set).await, Ok(Ok(()))) {
            tracing::debug!("the system state was not shared; other gateways compute their own");
        }
    }
}
