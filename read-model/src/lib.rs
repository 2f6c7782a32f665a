//! The read model of the delivery-order service, and its only owner: the PostgreSQL schema
//! ([`migrate`]), the projection that writes it ([`ReadModelWriter`], called by the worker's
//! activities), the outbox and the relay that publish its changes to Redis ([`OutboxRelay`],
//! under the names of [`RedisKeys`]), and the reads the gateway serves ([`ReadModel`], with the
//! live updates as [`LiveMessage`]s). Callers get named operations; no pool, connection or raw
//! Redis key leaves this crate.

mod audit;
pub mod compat;
mod graph_facts;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod reader;
pub mod relay;
pub mod route;
pub mod system;
pub mod views;
mod webhook_signatures;
pub mod writer;

pub use keys::RedisKeys;
pub use live::LiveFeed;
pub use metrics::ProjectionMetrics;
pub use outbox::{LiveMessage, OutboxKind, TrackingUpdate};
pub use reader::{ReadError, ReadModel, StoredOrder};
pub use relay::{OutboxRelay, RelaySettings};
pub use writer::{ProjectionError, ReadModelWriter};

/// The sqlx migrations of the read model, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Brings the read model's schema up to date on `pool`. Several processes may start at once:
/// sqlx serialises migrations with a lock.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
