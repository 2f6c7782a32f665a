//! `partner-sim`: configuration from `PARTNER_*` variables, serve until Ctrl-C / SIGTERM.

use partner_sim::{SimConfig, Simulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = delivery_platform::telemetry::init("partner-sim");
    let config = SimConfig::from_env()?;
    let callbacks = format!("{:?}", config.callbacks);
    let simulator = Simulator::build(config).await?;
    tracing::info!(url = %simulator.base_url(), callbacks, "partner simulator listening");
    simulator.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("partner simulator stopped");
    telemetry.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
