//! `partner-sim`: configuration from `PARTNER_*` variables, serve until Ctrl-C / SIGTERM.

use partner_sim::{SimConfig, Simulator};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let config = SimConfig::from_env()?;
    let callbacks = format!("{:?}", config.callbacks);
    let simulator = Simulator::build(config).await?;
    tracing::info!(url = %simulator.base_url(), callbacks, "partner simulator listening");
    simulator.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("partner simulator stopped");
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
