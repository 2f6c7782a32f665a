//! The delivery-order worker as a library: `main` and the integration tests build it the same way.

pub mod config;
pub mod metrics_server;
pub mod telemetry;

use std::time::Duration;

use anyhow::Context;
use delivery_activities::{
    MIGRATOR, OutboxRelay, PartnerActivities, PartnerClient, PartnerMetrics, ReadModelActivities,
    RedisKeys,
};
use delivery_workflows::DeliveryOrderWorkflow;
use prometheus::Registry;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

pub use config::WorkerConfig;

/// Connects to Temporal, retrying for up to `patience` so a worker started together with the
/// server (as `make run` does) waits for it instead of dying.
pub async fn connect(config: &WorkerConfig, patience: Duration) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(200);
    let connection = loop {
        let options = ConnectionOptions::new(config.temporal_address.clone())
            .identity(config.identity.clone())
            .build();
        match Connection::connect(options).await {
            Ok(connection) => break connection,
            Err(error) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(%error, address = %config.temporal_address, "Temporal not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("connecting to Temporal at {}", config.temporal_address)
                });
            }
        }
    };
    Client::new(
        connection,
        ClientOptions::new(config.namespace.clone()).build(),
    )
    .context("creating the Temporal client")
}

/// Connects to the read model and brings its schema up to date, waiting up to `patience` for
/// PostgreSQL. Several workers may start at once: sqlx serialises migrations with a lock.
pub async fn connect_read_model(
    config: &WorkerConfig,
    patience: Duration,
) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + patience;
    let pool = loop {
        let attempt = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(config.database_url.expose())
            .await;
        match attempt {
            Ok(pool) => break pool,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "PostgreSQL not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context("connecting to PostgreSQL (DATABASE_URL)"),
        }
    };
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the read-model migrations")?;
    Ok(pool)
}

/// The relay that publishes read-model changes to Redis. Redis need not be up yet: the relay
/// retries, and the outbox keeps everything meanwhile.
pub fn outbox_relay(config: &WorkerConfig, read_model: PgPool) -> anyhow::Result<OutboxRelay> {
    let redis =
        redis::Client::open(config.redis_url.expose()).context("REDIS_URL is not a Redis URL")?;
    Ok(OutboxRelay::new(
        read_model,
        redis,
        RedisKeys {
            prefix: config.redis_key_prefix.clone(),
        },
    ))
}

/// A worker with the delivery-order workflow and its activities registered.
pub fn build_worker(
    runtime: &Runtime,
    client: Client,
    config: &WorkerConfig,
    registry: &Registry,
    read_model: PgPool,
) -> anyhow::Result<Worker> {
    let metrics = PartnerMetrics::register(registry).context("registering partner metrics")?;
    let partner = PartnerClient::new(config.partner.clone(), metrics)
        .context("building the partner HTTP client")?;
    let options = WorkerOptions::new(config.task_queue.clone())
        .register_workflow::<DeliveryOrderWorkflow>()
        .context("registering DeliveryOrderWorkflow")?
        .register_activities(PartnerActivities::new(partner))
        .register_activities(ReadModelActivities::new(read_model))
        .build();
    Worker::new(runtime, client, options).context("creating the worker")
}
