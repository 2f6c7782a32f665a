//! Publishes committed read-model changes from the PostgreSQL outbox to Redis (the names are in
//! [`RedisKeys`]).
//!
//! One publisher at a time, whatever the number of workers: a relay publishes only while it
//! holds a PostgreSQL advisory lock (the lease), taken on a session of its own and held as long
//! as that session lives. Every worker runs a relay; the others stand by and try to take the
//! lease every [`LEASE_POLL`], so when the holder dies (its session ends, kill -9 included) one
//! of them takes over within about that time. The holder publishes rows in outbox order and never
//! skips a row, so each order's changes reach the cache, the channels and the stream in order.
//!
//! Delivery is at least once from the outbox (a row is marked published only after Redis took
//! it) and exactly once in Redis: one Lua script per row records its dedup key and publishes in
//! the same atomic step, so a row sent again (by a holder that died before marking it) publishes
//! nothing. When Redis is down, rows wait in PostgreSQL and go out in order when it returns.
//! Published rows are pruned after the retention period; dedup keys expire after their TTL.

use std::time::{Duration, Instant};

use prometheus::IntGauge;
use redis::aio::ConnectionManager;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

use crate::keys::RedisKeys;
use crate::outbox::{OUTBOX_CHANNEL, OutboxKind};

/// The advisory lock key of the relay lease (one per database: the outbox is per database).
pub const RELAY_LEASE_KEY: i64 = 0x6f75_7462_6f78_0001;
/// How often a standing-by relay tries to take the lease.
pub const LEASE_POLL: Duration = Duration::from_millis(500);
/// How long [`OutboxRelay::drain`] waits for the lease.
pub const DRAIN_PATIENCE: Duration = Duration::from_secs(30);
const BATCH: i64 = 200;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 10_000;
/// Longest entries the stream keeps (approximately), so it cannot grow without bound.
const STREAM_MAX_LEN: u64 = 1_000_000;

/// Sets `key` to `value` unless it holds a document of a newer version: a late write never takes
/// a newer status away. Shared by the relay and the compatible API's cache fill.
pub(crate) const SET_IF_NEWER: &str = r#"
local function set_if_newer(key, value, version)
  local current = redis.call('GET', key)
  if (not current) or tonumber(cjson.decode(current)['version']) < tonumber(version) then
    redis.call('SET', key, value)
  end
end
"#;

/// One outbox row, published atomically with its dedup key. The kind names come from
/// [`OutboxKind`], so the script follows the enum.
fn publish_script() -> String {
    format!(
        r#"{SET_IF_NEWER}
-- KEYS: dedup, status, stream, tracking. ARGV: kind, payload, version, channel_all, channel_one, ttl, maxlen, type
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then
  return 0
end
if ARGV[1] == '{tracking}' then
  redis.call('SET', KEYS[4], ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[2])
  redis.call('PUBLISH', ARGV[5], ARGV[2])
elseif ARGV[1] == '{status}' or ARGV[1] == '{compat_status}' then
  set_if_newer(KEYS[2], ARGV[2], ARGV[3])
  if ARGV[1] == '{status}' then
    redis.call('PUBLISH', ARGV[4], ARGV[2])
    redis.call('PUBLISH', ARGV[5], ARGV[2])
  end
elseif ARGV[1] == '{domain_event}' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'type', ARGV[8], 'payload', ARGV[2])
end
return 1
"#,
        tracking = OutboxKind::Tracking.as_str(),
        status = OutboxKind::Status.as_str(),
        compat_status = OutboxKind::CompatStatus.as_str(),
        domain_event = OutboxKind::DomainEvent.as_str(),
    )
}

/// What the relay keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySettings {
    /// Published outbox rows older than this are pruned.
    pub retention: Duration,
    /// How long Redis remembers a published row (a row re-sent later would publish again).
    pub dedup_ttl: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            dedup_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a pass over the outbox stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox in PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("another relay holds the lease")]
    LeaseHeld,
}

/// The newest outbox row's id (0 for an empty outbox): a tool that wrote the read model (the
/// rebuild) waits for the rows up to it with [`pending_rows`] while a running worker's relay
/// publishes them.
pub async fn last_row_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM read_model_outbox")
        .fetch_one(pool)
        .await
}

/// How many outbox rows up to `up_to_id` wait to be published. Bounded by an id because live
/// traffic keeps adding rows: the count of all of them need never reach 0.
pub async fn pending_rows(pool: &PgPool, up_to_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM read_model_outbox WHERE published_at IS NULL AND id <= $1",
    )
    .bind(up_to_id)
    .fetch_one(pool)
    .await
}

/// The relay's own session and whether it holds the lease on it.
struct Lease {
    session: Option<PgConnection>,
    held: bool,
}

impl Lease {
    /// Holds the lease after this call, if it can: already held, or free and taken now.
    async fn try_hold(&mut self, pool: &PgPool) -> bool {
        if self.held {
            return true;
        }
        if self.session.is_none() {
            self.session = open_session(pool).await.ok();
        }
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LEASE_KEY)
            .fetch_one(&mut *session)
            .await
        {
            Ok(taken) => {
                self.held = taken;
                taken
            }
            Err(_) => {
                self.session = None;
                false
            }
        }
    }

    /// Gives the lease up by ending the session (PostgreSQL releases the lock with it).
    fn drop_session(&mut self) {
        self.session = None;
        self.held = false;
    }
}

/// A session of its own for the lease. TCP keepalives make PostgreSQL notice a holder that
/// vanished without closing its connection (a network partition) within about half a minute,
/// and so release the lease; a holder that exits or is killed releases it at once.
async fn open_session(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut session = PgConnection::connect_with(&pool.connect_options()).await?;
    for setting in [
        "SET tcp_keepalives_idle = 10",
        "SET tcp_keepalives_interval = 5",
        "SET tcp_keepalives_count = 3",
    ] {
        sqlx::query(setting).execute(&mut session).await?;
    }
    Ok(session)
}

/// Deletes published rows older than `retention`, a bounded batch at a time; returns how many.
pub async fn prune_published(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM read_model_outbox WHERE id IN (
                 SELECT id FROM read_model_outbox
                 WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)
                 LIMIT $2)",
        )
        .bind(retention.as_secs_f64())
        .bind(PRUNE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

pub struct OutboxRelay {
    pool: PgPool,
    redis: redis::Client,
    keys: RedisKeys,
    script: redis::Script,
    settings: RelaySettings,
    /// 1 while this relay holds the lease (publishes), 0 while it stands by.
    leader: Option<IntGauge>,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, redis: redis::Client, keys: RedisKeys) -> Self {
        Self {
            pool,
            redis,
            keys,
            script: redis::Script::new(&publish_script()),
            settings: RelaySettings::default(),
            leader: None,
        }
    }

    pub fn with_settings(mut self, settings: RelaySettings) -> Self {
        self.settings = settings;
        self
    }

    /// Shows in `gauge` whether this relay holds the lease.
    pub fn with_leader_gauge(mut self, gauge: IntGauge) -> Self {
        self.leader = Some(gauge);
        self
    }

    fn set_leader(&self, leading: bool) {
        if let Some(gauge) = &self.leader {
            gauge.set(i64::from(leading));
        }
    }

    /// Relays until `stop` turns true: stands by until it holds the lease, then publishes,
    /// woken by the projection's NOTIFY and polling every second as a fallback (a lost
    /// notification delays, never loses). Prunes published rows now and then while it leads.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut lease = Lease {
            session: None,
            held: false,
        };
        let mut listener: Option<PgListener> = None;
        let mut redis: Option<ConnectionManager> = None;
        let mut failing = false;
        let mut pause = Duration::from_millis(200);
        let mut last_prune: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if !lease.held {
                if lease.try_hold(&self.pool).await {
                    tracing::info!("outbox relay lease taken: this worker publishes to Redis");
                    self.set_leader(true);
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_POLL) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            if redis.is_none() {
                redis = ConnectionManager::new(self.redis.clone()).await.ok();
            }
            let session = lease
                .session
                .as_mut()
                .expect("a held lease has its session");
            let result = match redis.as_mut() {
                Some(conn) => self.drain_on(session, conn).await,
                None => Err(RelayError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "Redis is not reachable",
                )))),
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
                        tracing::warn!(%error, "outbox relay cannot publish; retrying");
                    }
                    failing = true;
                    match error {
                        RelayError::Redis(_) | RelayError::LeaseHeld => redis = None,
                        // The session may be gone: give the lease up and take it again (or
                        // let another relay take it) on a fresh session.
                        RelayError::Database(_) => {
                            lease.drop_session();
                            listener = None;
                            self.set_leader(false);
                            tracing::warn!("outbox relay lease given up after a database error");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match prune_published(&self.pool, self.settings.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned published outbox rows"),
                    Err(error) => tracing::warn!(%error, "pruning the outbox failed; next time"),
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

    /// Takes the lease (waiting up to [`DRAIN_PATIENCE`] for another holder to let go),
    /// publishes every pending row, oldest first, and lets the lease go; returns how many rows
    /// went out. For tools and tests: a running relay does this by itself.
    pub async fn drain(&self, redis: &mut ConnectionManager) -> Result<usize, RelayError> {
        let mut lease = Lease {
            session: None,
            held: false,
        };
        let started = Instant::now();
        while !lease.try_hold(&self.pool).await {
            if started.elapsed() >= DRAIN_PATIENCE {
                return Err(RelayError::LeaseHeld);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        let session = lease
            .session
            .as_mut()
            .expect("a held lease has its session");
        let sent = self.drain_on(session, redis).await?;
        if let Some(session) = lease.session.take() {
            // Closing the session releases the lease.
            session.close().await?;
        }
        Ok(sent)
    }

    /// Publishes every pending row, oldest first, on the lease's session.
    async fn drain_on(
        &self,
        session: &mut PgConnection,
        redis: &mut ConnectionManager,
    ) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let sent = self.relay_batch(session, redis).await?;
            total += sent;
            if sent < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// One batch in one transaction: the oldest pending rows, published in order, marked. The
    /// rows are locked and never skipped: should anything else hold one, the batch waits for it
    /// rather than publish a later change of the same order first.
    async fn relay_batch(
        &self,
        session: &mut PgConnection,
        redis: &mut ConnectionManager,
    ) -> Result<usize, RelayError> {
        let mut tx = session.begin().await?;
        let rows = sqlx::query(
            "SELECT id, dedup_key, delivery_order_id::text AS order_id, version, kind, payload::text AS payload
             FROM read_model_outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let order_id: String = row.get("order_id");
            let payload: String = row.get("payload");
            let kind: String = row.get("kind");
            let Some(kind) = OutboxKind::parse(&kind) else {
                // Only this crate writes the outbox; a row of a kind it does not know has no
                // place in Redis, and holding it back would stop every row after it.
                tracing::error!(
                    kind,
                    id = row.get::<i64, _>("id"),
                    "outbox row of an unknown kind; not published"
                );
                ids.push(row.get::<i64, _>("id"));
                continue;
            };
            let event_type = serde_json::from_str::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let _: i64 = self
                .script
                .key(self.keys.dedup(row.get::<&str, _>("dedup_key")))
                .key(if kind == OutboxKind::CompatStatus {
                    self.keys.compat_status(&order_id)
                } else {
                    self.keys.status(&order_id)
                })
                .key(self.keys.stream())
                .key(self.keys.tracking(&order_id))
                .arg(kind.as_str())
                .arg(&payload)
                .arg(row.get::<i64, _>("version"))
                .arg(self.keys.updates())
                .arg(self.keys.updates_of(&order_id))
                .arg(self.settings.dedup_ttl.as_secs().max(1))
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

#[cfg(test)]
mod tests {
    use super::{OutboxKind, publish_script};

    #[test]
    fn the_publish_script_has_a_branch_for_every_outbox_kind() {
        let script = publish_script();
        for kind in OutboxKind::ALL {
            assert!(
                script.contains(&format!("ARGV[1] == '{}'", kind.as_str())),
                "no branch for {kind:?} in\n{script}"
            );
        }
    }
}
