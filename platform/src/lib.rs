//! What every process of the delivery-order service shares: configuration read from the
//! environment, connections to Temporal, PostgreSQL and Redis (over TLS when configured) that wait for a server still starting,
//! logging, and the shutdown signal.

pub mod connect;
pub mod env;
pub mod telemetry;
pub mod tls;

pub use connect::{connect_postgres, connect_temporal};
pub use env::{ConfigError, Env, Secret};
pub use tls::{PemFile, TemporalTls, redis_client};

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
