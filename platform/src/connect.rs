//! Connections that wait for a server still starting (as under `make run`, where everything
//! starts at once) instead of dying on the first refusal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use delivery_payload_codec::Keyring;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use url::Url;

use crate::tls::TemporalTls;

/// Connects to Temporal, retrying for up to `patience`; over TLS when `tls` is given. Every
/// payload the client (and a worker built on it) sends is encrypted with the active key of
/// `keys`, and every payload it reads is decrypted.
pub async fn connect_temporal(
    address: &Url,
    tls: Option<&TemporalTls>,
    namespace: &str,
    identity: &str,
    keys: Arc<Keyring>,
    patience: Duration,
) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(200);
    // The gRPC transport only speaks TLS to an https URL, whatever options it is given.
    let mut address = address.clone();
    if tls.is_some() && address.scheme() == "http" {
        address
            .set_scheme("https")
            .map_err(|()| anyhow::anyhow!("TEMPORAL_ADDRESS {address} cannot take https"))?;
    }
    let address = &address;
    let connection = loop {
        let options = ConnectionOptions::new(address.clone())
            .identity(identity.to_owned())
            .maybe_tls_options(tls.map(TemporalTls::options))
            .build();
        match Connection::connect(options).await {
            Ok(connection) => break connection,
            Err(error) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(%error, %address, "Temporal not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("connecting to Temporal at {address}"));
            }
        }
    };
    tracing::info!(
        active_key = keys.active_key_id(),
        keys = ?keys.key_ids(),
        "payloads sent to Temporal are encrypted (AES-256-GCM)"
    );
    let options = ClientOptions::new(namespace.to_owned())
        .data_converter(delivery_payload_codec::data_converter(keys));
    // With traces on, every start, update, signal and query carries the caller's trace context
    // in its Temporal headers; a worker built on this client traces its workflows and
    // activities (the SDK's plugin reaches the worker through the client).
    let options = match crate::telemetry::temporal_plugin() {
        Some(plugin) => options.plugin(plugin).build(),
        None => options.build(),
    };
    Client::new(connection, options).context("creating the Temporal client")
}

/// Longest a single statement may run on the service's connections: a hung query gives its
/// connection back with an error instead of holding it (and a pool slot) for ever. Generous,
/// because the read model's migrations run on the same pool.
pub const STATEMENT_TIMEOUT: &str = "30s";

/// Connects to PostgreSQL, waiting up to `patience` for it. The schema is the read model's
/// (`delivery_read_model::migrate`, which the caller runs next).
pub async fn connect_postgres(
    database_url: &str,
    max_connections: u32,
    patience: Duration,
) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    let options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
    let deadline = tokio::time::Instant::now() + patience;
    let pool = loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
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
    Ok(pool)
}
