//! Publishes committed read-model changes from the PostgreSQL outbox to Redis: the status cache
//! `{prefix}delivery:{id}`, tracking data `{prefix}delivery-tracking:{id}`, the live-update channels `{prefix}delivery-updates` and
//! `{prefix}delivery-updates:{id}`, and the `{prefix}delivery-events` stream for order management.
//!
//! Delivery is at least once from the outbox (a row is marked published only after Redis took
//! it) and exactly once in Redis: one Lua script per row records its dedup key and publishes in
//! the same atomic step, so a row sent again publishes nothing. When Redis is down, rows wait in
//! PostgreSQL and go out in order when it returns.

use std::time::Duration;

use redis::aio::ConnectionManager;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

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

/// How long Redis remembers a published row (a row re-sent later than this would publish again).
const DEDUP_TTL_SECS: u64 = 7 * 24 * 3600;
const BATCH: i64 = 200;
/// Longest entries the stream keeps (approximately), so it cannot grow without bound.
const STREAM_MAX_LEN: u64 = 1_000_000;

const PUBLISH_SCRIPT: &str = r#"
-- KEYS: dedup, status, stream, tracking. ARGV: kind, payload, version, channel_all, channel_one, ttl, maxlen, type
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then
  return 0
end
if ARGV[1] == 'tracking' then
  redis.call('SET', KEYS[4], ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[2])
  redis.call('PUBLISH', ARGV[5], ARGV[2])
elseif ARGV[1] == 'status' or ARGV[1] == 'compat_status' then
  local current = redis.call('GET', KEYS[2])
  if (not current) or tonumber(cjson.decode(current)['version']) < tonumber(ARGV[3]) then
    redis.call('SET', KEYS[2], ARGV[2])
  end
  if ARGV[1] == 'status' then
    redis.call('PUBLISH', ARGV[4], ARGV[2])
    redis.call('PUBLISH', ARGV[5], ARGV[2])
  end
else
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'type', ARGV[8], 'payload', ARGV[2])
end
return 1
"#;

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
    fn dedup(&self, key: &str) -> String {
        format!("{}delivery-outbox:{key}", self.prefix)
    }
}

pub struct OutboxRelay {
    pool: PgPool,
    redis: redis::Client,
    keys: RedisKeys,
    script: redis::Script,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, redis: redis::Client, keys: RedisKeys) -> Self {
        Self {
            pool,
            redis,
            keys,
            script: redis::Script::new(PUBLISH_SCRIPT),
        }
    }

    /// Relays until `stop` turns true. Wakes on the projection's NOTIFY, and polls every second
    /// as a fallback (a lost notification or a listener that cannot connect delays, never loses).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut listener = None;
        let mut redis: Option<ConnectionManager> = None;
        let mut failing = false;
        let mut pause = Duration::from_millis(200);
        loop {
            if *stop.borrow() {
                return;
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            if redis.is_none() {
                redis = ConnectionManager::new(self.redis.clone()).await.ok();
            }
            let result = match redis.as_mut() {
                Some(conn) => self.drain(conn).await,
                None => Err(anyhow::anyhow!("Redis is not reachable")),
            };
            match result {
                Ok(_) => {
                    if failing {
                        tracing::info!("outbox relay recovered; Redis caught up");
                    }
                    failing = false;
                    pause = Duration::from_millis(200);
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "outbox relay cannot publish; retrying"
                        );
                    }
                    failing = true;
                    redis = None;
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()).map_err(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woke = notified => if woke.is_err() { listener = None },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(OUTBOX_CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Publishes every pending row, oldest first; returns how many went out.
    pub async fn drain(&self, redis: &mut ConnectionManager) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let sent = self.relay_batch(redis).await?;
            total += sent;
            if sent < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// One batch in one transaction: rows locked (other workers skip them), published, marked.
    async fn relay_batch(&self, redis: &mut ConnectionManager) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, dedup_key, delivery_order_id::text AS order_id, version, kind, payload::text AS payload
             FROM read_model_outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let order_id: String = row.get("order_id");
            let payload: String = row.get("payload");
            let kind: String = row.get("kind");
            let event_type = serde_json::from_str::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let _: i64 = self
                .script
                .key(self.keys.dedup(row.get::<&str, _>("dedup_key")))
                .key(if kind == "compat_status" {
                    self.keys.compat_status(&order_id)
                } else {
                    self.keys.status(&order_id)
                })
                .key(self.keys.stream())
                .key(self.keys.tracking(&order_id))
                .arg(&kind)
                .arg(&payload)
                .arg(row.get::<i64, _>("version"))
                .arg(self.keys.updates())
                .arg(self.keys.updates_of(&order_id))
                .arg(DEDUP_TTL_SECS)
                .arg(STREAM_MAX_LEN)
                .arg(event_type)
                .invoke_async(redis)
                .await?;
            ids.push(row.get::<i64, _>("id"));
        }
        if !ids.is_empty() {
            sqlx::query("UPDATE read_model_outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }
}
