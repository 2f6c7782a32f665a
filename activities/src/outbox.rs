//! The PostgreSQL outbox of read-model changes, and the Redis names they are published under
//! (see [`crate::relay`]): the status cache `{prefix}delivery:{id}`, tracking data
//! `{prefix}delivery-tracking:{id}`, the live-update channels `{prefix}delivery-updates` and
//! `{prefix}delivery-updates:{id}`, and the `{prefix}delivery-events` stream for order management.

use crate::read_model::OUTBOX_CHANNEL;

/// One change for the relay to publish, written in the transaction that makes the change.
#[derive(Debug)]
pub struct OutboxRow {
    /// Unique per change: a row written again (a retried projection) is skipped.
    pub dedup_key: String,
    pub delivery_order_id: uuid::Uuid,
    pub version: i64,
    /// `status`, `domain_event`, `tracking` or `compat_status`.
    pub kind: &'static str,
    pub payload: serde_json::Value,
}

/// Adds `rows` to the outbox inside `tx` and wakes the relay, which sees them once `tx` commits
/// (NOTIFY is delivered on commit).
pub async fn enqueue(
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
        .bind(row.kind)
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

/// Redis key names under one prefix (tests isolate themselves with a unique prefix).
#[derive(Debug, Clone)]
pub struct RedisKeys {
    pub prefix: String,
}

impl RedisKeys {
    pub fn status(&self, delivery_order_id: &str) -> String {
        format!("{}delivery:{delivery_order_id}", self.prefix)
    }
    pub fn stream(&self) -> String {
        format!("{}delivery-events", self.prefix)
    }
    /// Status of a delivery of the compatible API (`GET /deliveries/{pk}/status`).
    pub fn compat_status(&self, delivery_id: &str) -> String {
        format!("{}compat-delivery:{delivery_id}", self.prefix)
    }
    /// Latest tracking data (location) of a delivery order, written apart from its status.
    pub fn tracking(&self, delivery_order_id: &str) -> String {
        format!("{}delivery-tracking:{delivery_order_id}", self.prefix)
    }
    pub fn updates(&self) -> String {
        format!("{}delivery-updates", self.prefix)
    }
    pub fn updates_of(&self, delivery_order_id: &str) -> String {
        format!("{}delivery-updates:{delivery_order_id}", self.prefix)
    }
    /// The key that remembers a published outbox row (it expires after the dedup TTL).
    pub fn dedup(&self, key: &str) -> String {
        format!("{}delivery-outbox:{key}", self.prefix)
    }
}
