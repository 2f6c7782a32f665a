//! What operators look at beside the queue: orders whose deadline is near, and the charts of
//! the last 24 hours (SQL aggregates over the read model and its audit trail).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::reader::{ORDER_JSON, ReadError, ReadModel, StoredOrder};

/// Longest a shared-cache call may take before the gateway computes on its own.
const CACHE_TIMEOUT: Duration = Duration::from_millis(250);

/// An order whose next deadline falls within the asked window (or has passed while its timer
/// has not fired yet, e.g. while a batch holds the order).
pub struct AtRiskRow {
    pub order: StoredOrder,
    /// The graph's timer: `pickup_deadline`, `delivery_deadline`, `auto_confirm`.
    pub timer: String,
    pub due_at: DateTime<Utc>,
    /// Seconds from now until `due_at` (negative once past), by PostgreSQL's clock.
    pub seconds_left: f64,
}

/// How many orders entered one state in one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourCount {
    /// The start of the hour (RFC 3339, UTC).
    pub hour: String,
    pub state: String,
    pub count: i64,
}

/// How long orders stayed in one stage, over the stays that ended in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDuration {
    pub stage: String,
    pub count: i64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
}

/// How many deliveries failed for one reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: i64,
}

/// The charts of the operations dashboard, as computed at `generated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charts {
    pub generated_at: String,
    /// The 24 hours covered, oldest first (RFC 3339 starts of the hours, the current one last).
    pub hours: Vec<String>,
    pub entered: Vec<HourCount>,
    pub stage_durations: Vec<StageDuration>,
    pub failures_by_reason: Vec<ReasonCount>,
}

impl ReadModel {
    /// The statement of [`Self::at_risk`] (binds: the window in seconds, the limit); with
    /// `explain`, behind `EXPLAIN` (the `operator_views` suite checks it uses its index).
    pub fn at_risk_statement(explain: bool) -> String {
        format!(
            "{}SELECT {ORDER_JSON} AS doc, d.next_deadline_kind, d.next_deadline_at,
                    EXTRACT(EPOCH FROM d.next_deadline_at - now())::float8 AS seconds_left
             FROM delivery_orders d
             WHERE d.next_deadline_at IS NOT NULL
               AND d.next_deadline_at <= now() + $1 * interval '1 second'
             ORDER BY d.next_deadline_at, d.id LIMIT $2",
            if explain { "EXPLAIN " } else { "" }
        )
    }

    /// Orders with a deadline no later than `within` from now, soonest first.
    pub async fn at_risk(&self, within: Duration, limit: u32) -> Result<Vec<AtRiskRow>, ReadError> {
        let rows = sqlx::query(AssertSqlSafe(Self::at_risk_statement(false)))
            .bind(within.as_secs_f64())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AtRiskRow {
                    order: serde_json::from_str(row.get::<&str, _>("doc"))?,
                    timer: row.get("next_deadline_kind"),
                    due_at: row.get("next_deadline_at"),
                    seconds_left: row.get("seconds_left"),
                })
            })
            .collect()
    }

    /// How many orders have a deadline no later than `within` from now, by timer.
    pub async fn at_risk_counts(&self, within: Duration) -> Result<Vec<(String, i64)>, ReadError> {
        Ok(sqlx::query_as(
            "SELECT next_deadline_kind, count(*) FROM delivery_orders
             WHERE next_deadline_at IS NOT NULL
               AND next_deadline_at <= now() + $1 * interval '1 second'
             GROUP BY 1",
        )
        .bind(within.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The charts of the last 24 hours, from the audit trail: orders entering each state per
    /// hour, the time spent in each stage (p50, p95) and the failures by reason.
    pub async fn charts(&self) -> Result<Charts, ReadError> {
        let mut tx = self.pool.begin().await?;
        // One snapshot for the three aggregates and the clock they share.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let first_hour: DateTime<Utc> =
            sqlx::query_scalar("SELECT date_trunc('hour', now()) - interval '23 hours'")
                .fetch_one(&mut *tx)
                .await?;
        let entered = sqlx::query(
            "SELECT date_trunc('hour', occurred_at) AS hour, to_state, count(*) AS n
             FROM delivery_order_events WHERE occurred_at >= $1
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(first_hour)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| HourCount {
            hour: rfc3339(&row.get("hour")),
            state: row.get("to_state"),
            count: row.get("n"),
        })
        .collect();
        // A stay in a stage runs from the entry that entered it (seq - 1) to the one that left it.
        let stage_durations = sqlx::query(
            "SELECT e.from_state AS stage, count(*) AS n,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM e.occurred_at - p.occurred_at))::float8 AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM e.occurred_at - p.occurred_at))::float8 AS p95
             FROM delivery_order_events e
             JOIN delivery_order_events p
               ON p.delivery_order_id = e.delivery_order_id AND p.seq = e.seq - 1
             WHERE e.occurred_at >= $1 - interval '24 hours' AND e.from_state IS NOT NULL
             GROUP BY e.from_state ORDER BY e.from_state",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| StageDuration {
            stage: row.get("stage"),
            count: row.get("n"),
            p50_seconds: row.get::<f64, _>("p50").max(0.0),
            p95_seconds: row.get::<f64, _>("p95").max(0.0),
        })
        .collect();
        let failures_by_reason = sqlx::query(
            "SELECT COALESCE(data->>'reason', 'UNKNOWN') AS reason, count(*) AS n
             FROM delivery_order_events
             WHERE type = ANY($2) AND occurred_at >= $1 - interval '24 hours'
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(now)
        .bind(crate::graph_facts::failure_events())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| ReasonCount {
            reason: row.get("reason"),
            count: row.get("n"),
        })
        .collect();
        tx.commit().await?;
        Ok(Charts {
            generated_at: rfc3339(&now),
            hours: (0..24)
                .map(|h| rfc3339(&(first_hour + chrono::Duration::hours(h))))
                .collect(),
            entered,
            stage_durations,
            failures_by_reason,
        })
    }

    /// The charts another gateway computed lately, if the shared cache has them.
    pub async fn shared_charts(&self) -> Option<Charts> {
        let mut redis = self.redis.clone();
        let command = redis::cmd("GET").arg(self.keys.charts()).to_owned();
        let text = tokio::time::timeout(
            CACHE_TIMEOUT,
            command.query_async::<Option<String>>(&mut redis),
        )
        .await
        .ok()?
        .ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Shares computed charts with every gateway for `ttl` (best effort: without Redis each
    /// gateway computes its own).
    pub async fn share_charts(&self, charts: &Charts, ttl: Duration) {
        let Ok(text) = serde_json::to_string(charts) else {
            return;
        };
        let mut redis = self.redis.clone();
        let command = redis::cmd("SET")
            .arg(self.keys.charts())
            .arg(text)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .to_owned();
        let set = command.query_async::<()>(&mut redis);
        if !matches!(tokio::time::timeout(CACHE_TIMEOUT, set).await, Ok(Ok(()))) {
            tracing::debug!("the charts were not shared; other gateways compute their own");
        }
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
