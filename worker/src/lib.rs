//! The delivery-order worker as a library: `main` and the integration tests build it the same way.

pub mod config;
pub mod failure_log;
pub mod graph_version;
pub mod metrics_server;
pub mod rebuild;
pub mod sdk_metrics;
pub mod versioning;
pub mod workflow_tasks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use delivery_activities::{
    BatchActivities, CompatActivities, PartnerActivities, PartnerClient, PartnerMetrics,
    ReadModelActivities, ReplacementActivities,
};
use delivery_platform::connect_temporal;
use delivery_read_model::{OutboxRelay, ProjectionMetrics, ReadModelWriter, RedisKeys};
use delivery_workflows::batch::{EventBatchClient, EventBatchWorkflow};
use delivery_workflows::compat::CompatDeliveryWorkflow;
use delivery_workflows::{DeliveryOrderClient, DeliveryOrderWorkflow, TemporalTarget};
use prometheus::Registry;
use sqlx::PgPool;
use temporalio_client::{Client, NamespacedClient};
use temporalio_sdk::interceptors::{ActivityInboundInterceptor, WorkerInterceptor};
use temporalio_sdk::{Runtime, SimplePlugin, Worker, WorkerOptions};

pub use config::WorkerConfig;

/// Connects to Temporal, waiting up to `patience` for a server still starting.
pub async fn connect(config: &WorkerConfig, patience: Duration) -> anyhow::Result<Client> {
    connect_temporal(
        &config.temporal_address,
        config.temporal_tls.as_ref(),
        &config.namespace,
        &config.identity,
        config.payload_keys.clone(),
        patience,
    )
    .await
}

/// Connects to the read model and applies its migrations.
pub async fn connect_read_model(
    config: &WorkerConfig,
    patience: Duration,
) -> anyhow::Result<PgPool> {
    let pool =
        delivery_platform::connect_postgres(config.database_url.expose(), 10, patience).await?;
    delivery_read_model::migrate(&pool)
        .await
        .context("applying the read-model migrations")?;
    Ok(pool)
}

/// The relay that publishes read-model changes to Redis. Redis need not be up yet: the relay
/// retries, and the outbox keeps everything meanwhile. Every worker runs one; only the one
/// holding the lease publishes (`outbox_relay_leader` in `registry` says which).
pub fn outbox_relay(
    config: &WorkerConfig,
    read_model: PgPool,
    registry: &Registry,
) -> anyhow::Result<OutboxRelay> {
    let redis = redis_client(config)?;
    let leader = delivery_read_model::metrics::register_relay_leader(registry)
        .context("registering the relay metrics")?;
    Ok(OutboxRelay::new(
        read_model,
        redis,
        RedisKeys::new(config.redis_key_prefix.clone()),
    )
    .with_settings(config.relay)
    .with_leader_gauge(leader))
}

/// The worker's own interceptors: failed activity attempts and workflow tasks, logged once and
/// counted, and history lengths. A plugin rather than interceptors of the options, because
/// plugins apply after the client's (the OpenTelemetry one when traces are on): these then run
/// inside the activity's span, and their log lines carry its trace id.
fn failure_tracking(registry: &Registry, client: &Client) -> anyhow::Result<SimplePlugin> {
    let activities = failure_log::ActivityFailureLog::register(registry)
        .context("registering activity failure metrics")?;
    let workflow_tasks =
        workflow_tasks::WorkflowTaskWatch::register(registry, client.data_converter().clone())
            .context("registering workflow task metrics")?;
    Ok(SimplePlugin::builder("delivery-failure-tracking")
        .activity_inbound_interceptors(vec![
            Arc::new(activities) as Arc<dyn ActivityInboundInterceptor>
        ])
        .worker_interceptors(vec![Arc::new(workflow_tasks) as Arc<dyn WorkerInterceptor>])
        .build())
}

/// The Redis client of `REDIS_URL` (TLS for `rediss://`, trusting `REDIS_TLS_CA_FILE`).
pub fn redis_client(config: &WorkerConfig) -> anyhow::Result<redis::Client> {
    delivery_platform::redis_client(config.redis_url.expose(), config.redis_tls_ca.as_ref())
        .context("REDIS_URL is not a Redis URL")
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
    let writer = ReadModelWriter::new(read_model).with_metrics(
        ProjectionMetrics::register(registry).context("registering projection metrics")?,
    );
    let partner = PartnerClient::new(config.partner.clone(), metrics)
        .context("building the partner HTTP client")?;
    // Bounded below the activities' 10 s start-to-close: a call to a busy or unreachable
    // server gives up (and the step retries) rather than outliving its attempt.
    let target = TemporalTarget::new(client.clone(), config.task_queue.clone())
        .with_rpc_timeout(Duration::from_secs(8));
    let orders = DeliveryOrderClient::new(target.clone());
    let options = WorkerOptions::new(config.task_queue.clone())
        .register_workflow::<DeliveryOrderWorkflow>()
        .context("registering DeliveryOrderWorkflow")?
        .register_workflow::<CompatDeliveryWorkflow>()
        .context("registering CompatDeliveryWorkflow")?
        .register_workflow::<EventBatchWorkflow>()
        .context("registering EventBatchWorkflow")?
        .worker_plugin(failure_tracking(registry, &client)?)
        .register_activities(PartnerActivities::new(partner))
        .register_activities(CompatActivities::new(writer.clone()))
        .register_activities(BatchActivities::new(
            orders.clone(),
            EventBatchClient::new(target),
            writer.clone(),
        ))
        .register_activities(ReplacementActivities::new(orders))
        .register_activities(ReadModelActivities::new(writer))
        .maybe_deployment_options(config.version.as_ref().map(|v| v.deployment_options()))
        .workflow_task_poller_behavior(config.polling.workflow_pollers.behavior())
        .nonsticky_to_sticky_poll_ratio(config.polling.shared_queue_share)
        .activity_task_poller_behavior(config.polling.activity_pollers.behavior())
        .sticky_queue_schedule_to_start_timeout(config.polling.sticky_timeout)
        .max_cached_workflows(config.polling.max_cached_workflows)
        .build();
    Worker::new(runtime, client, options).context("creating the worker")
}
