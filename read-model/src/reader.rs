//! The query side: delivery orders from the Redis status cache, else from PostgreSQL; lists, the
//! audit trail and the operator queue from PostgreSQL. Never from Temporal visibility. Redis is
//! a cache here: when it is down or slow, reads go to PostgreSQL and nothing fails.

use std::time::Duration;

use chrono::{DateTime, Utc};
use delivery_workflows::activities::ProjectedOrder;
use delivery_workflows::{EventType, State};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

use crate::keys::RedisKeys;
use crate::outbox::TrackingUpdate;

/// Longest a cache read may take before the read goes to PostgreSQL instead.
const CACHE_TIMEOUT: Duration = Duration::from_millis(250);
/// Most rows one list page returns.
pub const MAX_PAGE: u32 = 200;
/// The audit entry type of an order's creation (seq 0), written by the projection.
const CREATE_ENTRY: &str = "CREATE";
/// Most audit entries returned for one delivery order.
const MAX_AUDIT: i64 = 1000;

/// A delivery order as the read model holds it: the status document, with the latest tracking
/// data (kept apart from the status, in PostgreSQL's row and in `delivery-tracking:{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct StoredOrder {
    #[serde(flatten)]
    pub order: ProjectedOrder,
    #[serde(default)]
    pub location: Option<Value>,
    #[serde(default)]
    pub location_at: Option<DateTime<Utc>>,
}

/// Who or what wrote an audit entry: the creation (seq 0) or an applied event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEntryType {
    Create,
    Event(EventType),
}

/// One entry of a delivery order's audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub seq: u64,
    pub event_id: String,
    pub entry_type: AuditEntryType,
    /// Absent on the creation.
    pub from_state: Option<State>,
    pub to_state: State,
    pub data: Value,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub correlation_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the read model failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the read model holds a row this gateway cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Which reason put an order in the operator queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    DeliveryFailed,
    Disputed,
}

impl QueueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::DeliveryFailed => "DELIVERY_FAILED",
            QueueKind::Disputed => "DISPUTED",
        }
    }
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

/// What a list is filtered by (all given filters apply). Each has an index behind it
/// (migrations 0001 and 0007).
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<State>,
    pub ordering_id: Option<String>,
    pub customer_id: Option<String>,
    pub payment_id: Option<String>,
    pub partner_order_number: Option<String>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
}

pub struct QueueRow {
    pub order: StoredOrder,
    pub kind: QueueKind,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub waiting_since: DateTime<Utc>,
}

/// A `timestamptz` column as the workflows write their times (RFC 3339, UTC, milliseconds,
/// `Z`), so a document read from PostgreSQL has the very text of the cached one.
macro_rules! utc_millis {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}

/// The row as the status document: the fields of [`ProjectedOrder`] (as the cache holds it,
/// field for field; the `read_model` suite compares the two reads in every state), with the
/// tracking data [`StoredOrder`] adds. The partner's `eta` is kept as a time, so it reads in the
/// form above rather than in the partner's own text.
pub(crate) const ORDER_JSON: &str = concat!(
    "json_build_object(
    'delivery_order_id', d.id, 'ordering_id', d.ordering_id, 'customer_id', d.customer_id,
    'partner_id', d.partner_id, 'payment_id', d.payment_id, 'state', d.state, 'version', d.version,
    'partner_order_number', d.partner_order_number, 'failure_reason', d.failure_reason,
    'failure_detail', d.failure_detail, 'replaces_id', d.replaces_id, 'replaced_by_id', d.replaced_by_id,
    'shipping_address', d.shipping_address, 'items', d.items, 'notes', d.notes, 'budget', d.budget,
    'driver', d.driver, 'location', d.location, 'location_at', d.location_at, 'eta', ",
    utc_millis!("d.eta"),
    ", 'graph_version', d.graph_version, 'created_at', ",
    utc_millis!("d.created_at"),
    ", 'updated_at', ",
    utc_millis!("d.updated_at"),
    ",
    'next_deadline', CASE WHEN d.next_deadline_at IS NOT NULL THEN json_build_object(
        'timer', d.next_deadline_kind, 'due_at', ",
    utc_millis!("d.next_deadline_at"),
    ") END,
    'stages', d.stages)::text"
);

/// The read model as the gateway uses it: queries, the tracking data partners send, the shared
/// `/api/state`, the compatible API's statuses and the live updates.
#[derive(Clone)]
pub struct ReadModel {
    pub(crate) pool: PgPool,
    /// Commands with short timeouts: a slow Redis sends reads to PostgreSQL.
    pub(crate) redis: ConnectionManager,
    /// For the live-update subscription, which needs a connection of its own.
    pub(crate) redis_client: redis::Client,
    pub(crate) keys: RedisKeys,
}

impl ReadModel {
    /// Redis need not be up: its connection is made on first use, and reads fall back to
    /// PostgreSQL meanwhile.
    pub fn new(
        pool: PgPool,
        redis_client: redis::Client,
        keys: RedisKeys,
    ) -> Result<Self, redis::RedisError> {
        let redis = ConnectionManager::new_lazy_with_config(
            redis_client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CACHE_TIMEOUT))
                .set_response_timeout(Some(CACHE_TIMEOUT))
                .set_number_of_retries(1),
        )?;
        Ok(Self {
            pool,
            redis,
            redis_client,
            keys,
        })
    }

    /// One delivery order: the cache first, PostgreSQL when the cache misses or is down.
    pub async fn order(&self, id: Uuid) -> Result<Option<StoredOrder>, ReadError> {
        if let Some(cached) = self.cached(id).await {
            return Ok(Some(cached));
        }
        self.stored(id).await
    }

    /// The order if the read model holds it at `min_version` or later, else what it holds now
    /// (`None`: nothing). One look, no waiting: the gateway waits for the live update that
    /// announces the version.
    pub async fn order_if_at_least(
        &self,
        id: Uuid,
        min_version: u64,
    ) -> Result<Result<StoredOrder, Option<StoredOrder>>, ReadError> {
        if let Some(cached) = self
            .cached(id)
            .await
            .filter(|r| r.order.version >= min_version)
        {
            return Ok(Ok(cached));
        }
        // PostgreSQL commits before the cache is written, so it may be ahead.
        Ok(match self.stored(id).await? {
            Some(record) if record.order.version >= min_version => Ok(record),
            other => Err(other),
        })
    }

    /// The order as the Redis status cache holds it (with the tracking key's data); `None` when
    /// the cache misses, is down or holds what this build cannot read. [`Self::order`] reads this
    /// first.
    pub async fn cached(&self, id: Uuid) -> Option<StoredOrder> {
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
        let order: ProjectedOrder = match serde_json::from_str(&status?) {
            Ok(order) => order,
            Err(error) => {
                tracing::warn!(%error, %id, "unreadable status cache entry; reading PostgreSQL");
                return None;
            }
        };
        let tracking = tracking.and_then(|t| serde_json::from_str::<TrackingUpdate>(&t).ok());
        Some(StoredOrder {
            order,
            location: tracking.as_ref().map(|t| t.location.clone()),
            location_at: tracking.and_then(|t| t.location_at.parse().ok()),
        })
    }

    /// The order as its PostgreSQL row holds it, the same document as [`Self::cached`]; what
    /// [`Self::order`] falls back to.
    pub async fn stored(&self, id: Uuid) -> Result<Option<StoredOrder>, ReadError> {
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
    ) -> Result<Option<(StoredOrder, Vec<AuditEntry>)>, ReadError> {
        let trail = self.audit_trail(id).await?;
        let trail_version = trail.last().map_or(0, |e| e.seq);
        let order = match self.cached(id).await {
            Some(order) if order.order.version >= trail_version => Some(order),
            _ => self.stored(id).await?,
        };
        match order {
            // A change committed between the two reads: the trail is the one behind now.
            Some(order) if order.order.version > trail_version => {
                let trail = self.audit_trail(id).await?;
                Ok(Some((order, trail)))
            }
            order => Ok(order.map(|o| (o, trail))),
        }
    }

    /// A page of delivery orders, newest first (the statement is [`Self::list_statement`]).
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: u32,
        after: Option<Cursor>,
    ) -> Result<(Vec<StoredOrder>, Option<Cursor>), ReadError> {
        let rows = Self::list_statement(false, filter, limit, after)
            .build()
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

    /// The statement of a list page (one row more than `limit`, to tell whether another page
    /// follows). Only the given filters go into it, so each is planned with its index rather
    /// than a generic plan that must allow for all. With `explain`, the same text behind
    /// `EXPLAIN`: the `operator_views` suite checks that every filter is served by an index.
    pub fn list_statement(
        explain: bool,
        filter: &ListFilter,
        limit: u32,
        after: Option<Cursor>,
    ) -> sqlx::QueryBuilder<sqlx::Postgres> {
        let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "{}SELECT {ORDER_JSON} AS doc, d.created_at, d.id FROM delivery_orders d WHERE true",
            if explain { "EXPLAIN " } else { "" }
        ));
        if let Some(state) = filter.state {
            query.push(" AND d.state = ").push_bind(state.as_str());
        }
        for (column, value) in [
            ("ordering_id", &filter.ordering_id),
            ("customer_id", &filter.customer_id),
            ("payment_id", &filter.payment_id),
            ("partner_order_number", &filter.partner_order_number),
        ] {
            if let Some(value) = value {
                query
                    .push(format_args!(" AND d.{column} = "))
                    .push_bind(value.clone());
            }
        }
        if let Some(from) = filter.created_from {
            query.push(" AND d.created_at >= ").push_bind(from);
        }
        if let Some(to) = filter.created_to {
            query.push(" AND d.created_at < ").push_bind(to);
        }
        if let Some(after) = after {
            query
                .push(" AND (d.created_at, d.id) < (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        query
            .push(" ORDER BY d.created_at DESC, d.id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        query
    }

    /// Every delivery order of an ordering, oldest first.
    pub async fn of_ordering(&self, ordering_id: &str) -> Result<Vec<StoredOrder>, ReadError> {
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
    pub async fn audit_trail(&self, id: Uuid) -> Result<Vec<AuditEntry>, ReadError> {
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
                let entry_type = match row.get::<&str, _>("type") {
                    CREATE_ENTRY => AuditEntryType::Create,
                    _ => AuditEntryType::Event(serde_json::from_value(text("type"))?),
                };
                let from_state = row
                    .get::<Option<String>, _>("from_state")
                    .map(|s| serde_json::from_value::<State>(Value::String(s)))
                    .transpose()?;
                Ok(AuditEntry {
                    seq: row.get::<i64, _>("seq") as u64,
                    event_id: row.get("event_id"),
                    entry_type,
                    from_state,
                    to_state: serde_json::from_value(text("to_state"))?,
                    data: serde_json::from_str(row.get("data"))?,
                    actor_kind: row.get("actor_kind"),
                    actor_id: row.get("actor_id"),
                    correlation_id: row.get("correlation_id"),
                    occurred_at: row.get("occurred_at"),
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
                 WHERE ev.delivery_order_id = d.id AND ev.to_state = d.state
                 ORDER BY seq DESC LIMIT 1
             ) e ON true
             WHERE d.state = ANY($2)
             ORDER BY waiting_since, d.id LIMIT $1"
        )))
        .bind(i64::from(limit))
        .bind(crate::graph_facts::awaiting_operator())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let order: StoredOrder = serde_json::from_str(row.get::<&str, _>("doc"))?;
                let disputed =
                    row.get::<Option<&str>, _>("entered_by") == Some(EventType::Disputed.as_str());
                let (kind, code, detail) = if disputed {
                    (
                        QueueKind::Disputed,
                        row.get("dispute_reason"),
                        row.get("dispute_detail"),
                    )
                } else {
                    (
                        QueueKind::DeliveryFailed,
                        order.order.failure_reason.map(|r| r.as_str().to_owned()),
                        order.order.failure_detail.clone(),
                    )
                };
                Ok(QueueRow {
                    kind,
                    code,
                    detail,
                    waiting_since: row.get("waiting_since"),
                    order,
                })
            })
            .collect()
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
