//! The PostgreSQL outbox of read-model changes: every change to publish is a row written in the
//! transaction that makes the change, so Redis gets exactly what PostgreSQL committed (see
//! [`crate::relay`], which publishes them under the names of [`crate::RedisKeys`]).
//!
//! The payload of a status or tracking row is a [`LiveMessage`], what the relay publishes on the
//! `{prefix}delivery-updates` channels, as one tagged type: every message says what it is in
//! `type`; nothing is told apart by a field it lacks.

use delivery_workflows::activities::ProjectedOrder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// PostgreSQL notification channel that wakes the outbox relay.
pub const OUTBOX_CHANNEL: &str = "read_model_outbox";

/// What an outbox row is, and so where the relay publishes it. The relay's Lua script is built
/// from [`OutboxKind::as_str`], so the script and the rows cannot disagree on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A delivery order's status document ([`crate::LiveMessage::Status`]): the status cache
    /// and the live-update channels.
    Status,
    /// A domain event for order management: the `delivery-events` stream.
    DomainEvent,
    /// A location ping ([`crate::LiveMessage::Tracking`]): the tracking key and the channels.
    Tracking,
    /// A delivery of the compatible API: its status cache only.
    CompatStatus,
}

impl OutboxKind {
    pub const ALL: [OutboxKind; 4] = [
        OutboxKind::Status,
        OutboxKind::DomainEvent,
        OutboxKind::Tracking,
        OutboxKind::CompatStatus,
    ];

    /// The name stored in `read_model_outbox.kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Status => "status",
            OutboxKind::DomainEvent => "domain_event",
            OutboxKind::Tracking => "tracking",
            OutboxKind::CompatStatus => "compat_status",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A message on the live-update channels (and the document the relay caches for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// A new version of a delivery order: its status document.
    Status(Box<ProjectedOrder>),
    /// A location ping: tracking data, not a new version.
    Tracking(TrackingUpdate),
}

/// The latest location of a delivery order, at the version it was reported in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingUpdate {
    pub delivery_order_id: String,
    pub customer_id: String,
    /// The partner that sent the ping (the order's partner). Absent from updates published
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    pub version: u64,
    pub location: Value,
    /// RFC 3339.
    pub location_at: String,
}

impl LiveMessage {
    pub fn delivery_order_id(&self) -> &str {
        match self {
            LiveMessage::Status(order) => &order.delivery_order_id,
            LiveMessage::Tracking(update) => &update.delivery_order_id,
        }
    }

    pub fn customer_id(&self) -> &str {
        match self {
            LiveMessage::Status(order) => &order.customer_id,
            LiveMessage::Tracking(update) => &update.customer_id,
        }
    }

    /// The partner that carries the order, when known.
    pub fn partner_id(&self) -> Option<&str> {
        match self {
            LiveMessage::Status(order) => order.partner_id.as_deref(),
            LiveMessage::Tracking(update) => update.partner_id.as_deref(),
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            LiveMessage::Status(order) => order.version,
            LiveMessage::Tracking(update) => update.version,
        }
    }
}

/// One change for the relay to publish, written in the transaction that makes the change.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    /// Unique per change: a row written again (a retried projection) is skipped.
    pub(crate) dedup_key: String,
    pub(crate) delivery_order_id: uuid::Uuid,
    pub(crate) version: i64,
    pub(crate) kind: OutboxKind,
    pub(crate) payload: serde_json::Value,
}

/// Adds `rows` to the outbox inside `tx` and wakes the relay, which sees them once `tx` commits
/// (NOTIFY is delivered on commit).
pub(crate) async fn enqueue(
    tx: &mut sqlx::PgConnection,
    rows: impl IntoIterator<Item = OutboxRow>,
) -> Result<(), sqlx::Error> {
    for row in rows {
        sqlx::query(
            "INSERT INTO read_model_outbox (dedup_key, delivery_order_id, version, kind, payload)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(row.dedup_key)
        .bind(row.delivery_order_id)
        .bind(row.version)
        .bind(row.kind.as_str())
        .bind(sqlx::types::Json(row.payload))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(OUTBOX_CHANNEL)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::OutboxKind;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in OutboxKind::ALL {
            assert_eq!(OutboxKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(OutboxKind::parse("anything else"), None);
    }
}
