//! The query side: delivery orders from the Redis status cache, else from PostgreSQL; lists, the
//! audit trail and the operator queue from PostgreSQL. Never from Temporal visibility. Redis is
//! a cache here: when it is down or slow, reads go to PostgreSQL and nothing fails.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use delivery_activities::RedisKeys;
use delivery_activities::outbox::{self, OutboxRow};
use delivery_workflows::{
    Address, DELIVERY_ORDER_V1, EventType, FailureReason, Item, State, StateGraph,
};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

use crate::model::{self, timestamp};

/// Longest a cache read may take before the read goes to PostgreSQL instead.
const CACHE_TIMEOUT: Duration = Duration::from_millis(250);
/// Most rows one list page returns.
pub const MAX_PAGE: u32 = 200;
/// The audit entry type of an order's creation (seq 0), written by the projection.
const CREATE_ENTRY: &str = "CREATE";
/// Most audit entries returned for one delivery order.
const MAX_AUDIT: i64 = 1000;

/// A delivery order as the read model stores it (the Redis status document and the PostgreSQL
/// row have this shape).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderRecord {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    #[serde(default)]
    pub payment_id: Option<String>,
    pub state: State,
    pub version: u64,
    #[serde(default)]
    pub partner_order_number: Option<String>,
    #[serde(default)]
    pub failure_reason: Option<FailureReason>,
    #[serde(default)]
    pub failure_detail: Option<String>,
    #[serde(default)]
    pub replaces_id: Option<String>,
    #[serde(default)]
    pub replaced_by_id: Option<String>,
    pub shipping_address: Address,
    pub items: Vec<Item>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub budget: Option<u64>,
    #[serde(default)]
    pub driver: Option<Value>,
    #[serde(default)]
    pub location: Option<Value>,
    #[serde(default)]
    pub location_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub eta: Option<DateTime<Utc>>,
    pub graph_version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Tracking data kept apart from the status (`delivery-tracking:{id}`).
#[derive(Debug, Clone, Deserialize)]
struct TrackingRecord {
    location: Value,
    location_at: DateTime<Utc>,
}

impl OrderRecord {
    pub fn to_resource(&self) -> model::DeliveryOrder {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        model::DeliveryOrder {
            delivery_order_id: self.delivery_order_id.clone(),
            ordering_id: self.ordering_id.clone(),
            customer_id: self.customer_id.clone(),
            payment_id: self.payment_id.clone(),
            state: self.state.into(),
            version: self.version,
            allowed_events: external_events(graph, self.state),
            partner_order_number: self.partner_order_number.clone(),
            failure_reason: self.failure_reason.map(Into::into),
            failure_detail: self.failure_detail.clone(),
            replaces_id: self.replaces_id.clone(),
            replaced_by_id: self.replaced_by_id.clone(),
            shipping_address: self.shipping_address.clone().into(),
            items: self.items.iter().cloned().map(Into::into).collect(),
            notes: self.notes.clone(),
            budget: self.budget,
            driver: self.driver.clone().map(poem_openapi::types::Any),
            location: self.location.clone().map(poem_openapi::types::Any),
            location_at: self.location_at.as_ref().map(timestamp),
            eta: self.eta.as_ref().map(timestamp),
            graph_version: self.graph_version,
            created_at: timestamp(&self.created_at),
            updated_at: timestamp(&self.updated_at),
        }
    }
}

/// The events a caller may send in `state` (the workflow's own events left out).
pub fn external_events(graph: &StateGraph, state: State) -> Vec<model::EventType> {
    graph
        .external_events(state)
        .into_iter()
        .map(Into::into)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the read model failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the read model holds a row this gateway cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// What a bounded wait for `min_version` found.
pub enum AtLeast {
    Found(Box<OrderRecord>),
    Behind {
        current: Option<u64>,
        waited: Duration,
    },
}

/// Where a list page starts: after this (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        let text = id;
        let id = Uuid::parse_str(text).ok()?;
        (id.hyphenated().to_string() == text).then_some(Self { created_at, id })
    }
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<State>,
    pub ordering_id: Option<String>,
    pub customer_id: Option<String>,
}

pub struct QueueRow {
    pub order: OrderRecord,
    pub kind: String,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub waiting_since: DateTime<Utc>,
}

/// The row as one JSON document, so PostgreSQL and Redis reads parse the same way.
const ORDER_JSON: &str = "json_build_object(
    'delivery_order_id', d.id, 'ordering_id', d.ordering_id, 'customer_id', d.customer_id,
    'payment_id', d.payment_id, 'state', d.state, 'version', d.version,
    'partner_order_number', d.partner_order_number, 'failure_reason', d.failure_reason,
    'failure_detail', d.failure_detail, 'replaces_id', d.replaces_id, 'replaced_by_id', d.replaced_by_id,
    'shipping_address', d.shipping_address, 'items', d.items, 'notes', d.notes, 'budget', d.budget,
    'driver', d.driver, 'location', d.location, 'location_at', d.location_at, 'eta', d.eta,
    'graph_version', d.graph_version, 'created_at', d.created_at, 'updated_at', d.updated_at)::text";

#[derive(Clone)]
pub struct ReadModel {
    pool: PgPool,
    redis: ConnectionManager,
    keys: RedisKeys,
}

impl ReadModel {
    pub fn new(pool: PgPool, redis: ConnectionManager, keys: RedisKeys) -> Self {
        Self { pool, redis, keys }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// One delivery order: the cache first, PostgreSQL when the cache misses or is down.
    pub async fn order(&self, id: Uuid) -> Result<Option<OrderRecord>, ReadError> {
        if let Some(cached) = self.cached(id).await {
            return Ok(Some(cached));
        }
        self.stored(id).await
    }

    /// Waits (bounded) until the read model holds `id` at `min_version` or later.
    pub async fn order_at_least(
        &self,
        id: Uuid,
        min_version: u64,
        wait: Duration,
    ) -> Result<AtLeast, ReadError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(cached) = self.cached(id).await.filter(|r| r.version >= min_version) {
                return Ok(AtLeast::Found(Box::new(cached)));
            }
            // PostgreSQL commits before the cache is written, so it may be ahead.
            let stored = self.stored(id).await?;
            match stored {
                Some(record) if record.version >= min_version => {
                    return Ok(AtLeast::Found(Box::new(record)));
                }
                _ if started.elapsed() + pause > wait => {
                    return Ok(AtLeast::Behind {
                        current: stored.map(|r| r.version),
                        waited: started.elapsed(),
                    });
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    async fn cached(&self, id: Uuid) -> Option<OrderRecord> {
        let key = id.to_string();
        let mut redis = self.redis.clone();
        let command = redis::cmd("MGET")
            .arg(self.keys.status(&key))
            .arg(self.keys.tracking(&key))
            .to_owned();
        let read = tokio::time::timeout(
            CACHE_TIMEOUT,
            command.query_async::<(Option<String>, Option<String>)>(&mut redis),
        )
        .await;
        let (status, tracking) = match read {
            Ok(Ok(values)) => values,
            Ok(Err(error)) => {
                tracing::debug!(%error, "status cache unavailable; reading PostgreSQL");
                return None;
            }
            Err(_) => {
                tracing::debug!("status cache too slow; reading PostgreSQL");
                return None;
            }
        };
        let mut record: OrderRecord = match serde_json::from_str(&status?) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, %id, "unreadable status cache entry; reading PostgreSQL");
                return None;
            }
        };
        if let Some(tracking) =
            tracking.and_then(|t| serde_json::from_str::<TrackingRecord>(&t).ok())
        {
            record.location = Some(tracking.location);
            record.location_at = Some(tracking.location_at);
        }
        Some(record)
    }

    async fn stored(&self, id: Uuid) -> Result<Option<OrderRecord>, ReadError> {
        let row: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {ORDER_JSON} FROM delivery_orders d WHERE d.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|text| serde_json::from_str(&text)).transpose()?)
    }

    /// The order and its audit trail, agreeing on the version (an event's `seq` is the version
    /// it produced). The trail comes from PostgreSQL; the order from the cache unless the cache
    /// is behind the trail (it is written after PostgreSQL commits), then from PostgreSQL too.
    pub async fn order_with_trail(
        &self,
        id: Uuid,
    ) -> Result<Option<(OrderRecord, Vec<model::AuditEvent>)>, ReadError> {
        let trail = self.audit_trail(id).await?;
        let trail_version = trail.last().map_or(0, |e| e.seq);
        let order = match self.cached(id).await {
            Some(order) if order.version >= trail_version => Some(order),
            _ => self.stored(id).await?,
        };
        match order {
            // A change committed between the two reads: the trail is the one behind now.
            Some(order) if order.version > trail_version => {
                let trail = self.audit_trail(id).await?;
                Ok(Some((order, trail)))
            }
            order => Ok(order.map(|o| (o, trail))),
        }
    }

    /// A page of delivery orders, newest first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: u32,
        after: Option<Cursor>,
    ) -> Result<(Vec<OrderRecord>, Option<Cursor>), ReadError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_JSON} AS doc, d.created_at, d.id FROM delivery_orders d
             WHERE ($1::text IS NULL OR d.state = $1)
               AND ($2::text IS NULL OR d.ordering_id = $2)
               AND ($3::text IS NULL OR d.customer_id = $3)
               AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5))
             ORDER BY d.created_at DESC, d.id DESC LIMIT $6"
        )))
        .bind(filter.state.map(|s| s.as_str()))
        .bind(&filter.ordering_id)
        .bind(&filter.customer_id)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > limit as usize;
        let mut records = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows.into_iter().take(limit as usize) {
            records.push(serde_json::from_str(row.get::<&str, _>("doc"))?);
            last = Some(Cursor {
                created_at: row.get("created_at"),
                id: row.get("id"),
            });
        }
        Ok((records, if more { last } else { None }))
    }

    /// Every delivery order of an ordering, oldest first.
    pub async fn of_ordering(&self, ordering_id: &str) -> Result<Vec<OrderRecord>, ReadError> {
        let docs: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {ORDER_JSON} FROM delivery_orders d WHERE d.ordering_id = $1
             ORDER BY d.created_at, d.id LIMIT 1000"
        )))
        .bind(ordering_id)
        .fetch_all(&self.pool)
        .await?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(Into::into))
            .collect()
    }

    /// The audit trail of one delivery order, in order.
    pub async fn audit_trail(&self, id: Uuid) -> Result<Vec<model::AuditEvent>, ReadError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, type, from_state, to_state, data::text AS data, actor_kind,
                    actor_id, correlation_id, occurred_at
             FROM delivery_order_events WHERE delivery_order_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(id)
        .bind(MAX_AUDIT)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let text = |column: &str| Value::String(row.get(column));
                let event_type = match row.get::<&str, _>("type") {
                    CREATE_ENTRY => model::AuditEntryType::Create,
                    _ => serde_json::from_value::<EventType>(text("type"))?.into(),
                };
                let from_state = row
                    .get::<Option<String>, _>("from_state")
                    .map(|s| serde_json::from_value::<State>(Value::String(s)))
                    .transpose()?;
                let to_state: State = serde_json::from_value(text("to_state"))?;
                Ok(model::AuditEvent {
                    seq: row.get::<i64, _>("seq") as u64,
                    event_id: row.get("event_id"),
                    event_type,
                    from_state: from_state.map(Into::into),
                    to_state: to_state.into(),
                    data: poem_openapi::types::Any(serde_json::from_str(row.get("data"))?),
                    actor: model::Actor {
                        kind: row.get("actor_kind"),
                        id: row.get("actor_id"),
                    },
                    correlation_id: row.get("correlation_id"),
                    occurred_at: timestamp(&row.get::<DateTime<Utc>, _>("occurred_at")),
                })
            })
            .collect()
    }

    /// Delivery orders waiting for an operator, the longest waiting first, with the reason
    /// (the failure, or the customer's dispute) that put each there.
    pub async fn operator_queue(&self, limit: u32) -> Result<Vec<QueueRow>, ReadError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ORDER_JSON} AS doc, e.type AS entered_by, e.data->>'reason' AS dispute_reason,
                    e.data->>'detail' AS dispute_detail, COALESCE(e.occurred_at, d.updated_at) AS waiting_since
             FROM delivery_orders d
             LEFT JOIN LATERAL (
                 SELECT type, data, occurred_at FROM delivery_order_events ev
                 WHERE ev.delivery_order_id = d.id AND ev.to_state = 'PENDING_BY_OPERATOR'
                 ORDER BY seq DESC LIMIT 1
             ) e ON true
             WHERE d.state = 'PENDING_BY_OPERATOR'
             ORDER BY waiting_since, d.id LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let order: OrderRecord = serde_json::from_str(row.get::<&str, _>("doc"))?;
                let disputed = row.get::<Option<&str>, _>("entered_by") == Some("DISPUTED");
                let (kind, code, detail) = if disputed {
                    (
                        "DISPUTED",
                        row.get("dispute_reason"),
                        row.get("dispute_detail"),
                    )
                } else {
                    (
                        "DELIVERY_FAILED",
                        order.failure_reason.map(|r| r.as_str().to_owned()),
                        order.failure_detail.clone(),
                    )
                };
                Ok(QueueRow {
                    kind: kind.to_owned(),
                    code,
                    detail,
                    waiting_since: row.get("waiting_since"),
                    order,
                })
            })
            .collect()
    }

    /// Records a location ping from the partner: tracking data, never a workflow event. Returns
    /// `None` for an unknown order, `Some(false)` when a newer ping is already stored.
    pub async fn record_location(
        &self,
        id: Uuid,
        event_id: &str,
        location: &Value,
        at: DateTime<Utc>,
    ) -> Result<Option<bool>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let updated: Option<(i64, String)> = sqlx::query_as(
            "UPDATE delivery_orders SET location = $2, location_at = $3
             WHERE id = $1 AND (location_at IS NULL OR location_at < $3) RETURNING version, customer_id",
        )
        .bind(id)
        .bind(sqlx::types::Json(location))
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((version, customer_id)) = updated else {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM delivery_orders WHERE id = $1)")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok(exists.then_some(false));
        };
        let payload = serde_json::json!({
            "type": "tracking",
            "delivery_order_id": id.to_string(),
            "customer_id": customer_id,
            "version": version,
            "location": location,
            "location_at": timestamp(&at),
        });
        let row = OutboxRow {
            dedup_key: format!("tracking:{id}:{event_id}"),
            delivery_order_id: id,
            version,
            kind: "tracking",
            payload,
        };
        outbox::enqueue(&mut tx, [row]).await?;
        tx.commit().await?;
        Ok(Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_763_830_000_123_456).unwrap(),
            id: Uuid::parse_str("0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e").unwrap(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x",
            "1.2",
            "abc.0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e",
            "1;DROP",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
