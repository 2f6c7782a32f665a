//! Worker binary: configuration, logs, metrics, then the Temporal worker until SIGINT/SIGTERM.
//! `delivery-worker rebuild-read-model [--since <RFC 3339 time>]` instead rebuilds the read model
//! from Temporal and exits (`rebuild`, docs/runbooks/restore.md).

use std::time::Duration;

use anyhow::Context;
use delivery_platform::telemetry;
use delivery_worker::graph_version::ensure_deployed_graph_version;
use delivery_worker::metrics_server::MetricsServer;
use delivery_worker::rebuild::{RebuildOptions, rebuild};
use delivery_worker::sdk_metrics;
use delivery_worker::{
    WorkerConfig, build_worker, connect, connect_read_model, outbox_relay, redis_client,
};
use prometheus::Registry;
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = telemetry::init("delivery-worker");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            let result = run().await;
            // The spans of the last tasks leave before the process does.
            telemetry.shutdown().await;
            if let Err(error) = result {
                tracing::error!(error = format!("{error:#}"), "worker stopped");
                std::process::exit(1);
            }
        }
        Some("rebuild-read-model") => match rebuild_read_model(&args[1..]).await {
            Ok(true) => {}
            // Some orders were not rebuilt: they are listed above; the exit status says so to
            // whatever runs the command.
            Ok(false) => std::process::exit(2),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "rebuild-read-model stopped");
                std::process::exit(1);
            }
        },
        Some(other) => {
            eprintln!(
                "unknown command {other:?}: run `delivery-worker` without arguments for the worker, or `delivery-worker rebuild-read-model [--since <RFC 3339 time>]`"
            );
            std::process::exit(64);
        }
    }
    Ok(())
}

/// Rebuilds the read model from Temporal; true when every order was rebuilt.
async fn rebuild_read_model(args: &[String]) -> anyhow::Result<bool> {
    let config = WorkerConfig::from_env()?;
    let options = RebuildOptions::from_args(args, |key| std::env::var(key).ok())?;
    let client = connect(&config, Duration::from_secs(60)).await?;
    let pool = connect_read_model(&config, Duration::from_secs(60)).await?;
    let redis = redis_client(&config)?;
    // The command's relay has no metrics to report to: it publishes once and exits.
    let relay = outbox_relay(&config, pool.clone(), &Registry::new())?;
    let summary = rebuild(&client, pool, relay, redis, &config.task_queue, &options).await?;
    for (workflow_id, error) in &summary.failed {
        eprintln!("not rebuilt: {workflow_id}: {error}");
    }
    // The oldest order says how far back Temporal still held orders: closed ones past the
    // namespace's retention period are gone from it (restore.md).
    let oldest = match &summary.oldest {
        Some((created_at, id)) => format!("oldest order {id} created {created_at}"),
        None => "no order".to_owned(),
    };
    let line = format!(
        "rebuild-read-model: {} orders, {} events, {} compatible-API deliveries, {} without an order, {} outbox rows published here, {} failed, {:.1} seconds; {oldest}",
        summary.orders,
        summary.events,
        summary.compat_deliveries,
        summary.without_order,
        summary.published,
        summary.failed.len(),
        summary.seconds
    );
    tracing::info!(
        orders = summary.orders,
        events = summary.events,
        failed = summary.failed.len(),
        seconds = summary.seconds,
        oldest = summary
            .oldest
            .as_ref()
            .map(|(created_at, _)| created_at.as_str()),
        "read model rebuilt"
    );
    println!("{line}");
    Ok(summary.failed.is_empty())
}

async fn run() -> anyhow::Result<()> {
    let config = WorkerConfig::from_env()?;
    // Before anything connects: a worker built for another graph must not take tasks.
    ensure_deployed_graph_version(config.deployed_graph_version)?;
    let registry = Registry::new_custom(Some("delivery_worker".into()), None)?;
    let (sdk_registry, sdk_meter) = sdk_metrics::sdk_registry()?;
    let runtime_options = RuntimeOptions::builder()
        .telemetry_options(sdk_metrics::telemetry_options(sdk_meter))
        .build()
        .map_err(anyhow::Error::msg)?;
    let runtime =
        Runtime::from_current_tokio(runtime_options).context("starting the Temporal runtime")?;
    let client = connect(&config, Duration::from_secs(60)).await?;
    let read_model = connect_read_model(&config, Duration::from_secs(60)).await?;
    let relay = outbox_relay(&config, read_model.clone(), &registry)?;
    let mut worker = build_worker(&runtime, client, &config, &registry, read_model)?;

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let metrics = MetricsServer::bind(
        &config.metrics_bind,
        config.metrics_port,
        vec![registry, sdk_registry],
    )
    .await
    .with_context(|| format!("binding the metrics port {}", config.metrics_port))?;
    let metrics_addr = metrics.addr();
    let relay_task = tokio::spawn(relay.run(stop_rx.clone()));
    let metrics_task = tokio::spawn(metrics.run_until(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        delivery_platform::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight tasks");
        shutdown();
    });

    tracing::info!(
        task_queue = %config.task_queue,
        namespace = %config.namespace,
        temporal = %config.temporal_address,
        partner = %config.partner.base_url,
        metrics = ?metrics_addr,
        version = config.version.as_ref().map(|v| v.label()).unwrap_or_else(|| "unversioned".into()),
        "worker started"
    );
    let result = worker.run().await.context("worker run");
    let _ = stop_tx.send(true);
    let _ = metrics_task.await;
    let _ = relay_task.await;
    tracing::info!("worker stopped");
    result
}
