//! The REST gateway of the delivery-order service (poem + poem-openapi).
//!
//! Commands go to each delivery order's Temporal workflow; queries read the read model (Redis,
//! then PostgreSQL); partners call back through signed webhooks. Every error is
//! `application/problem+json`.

// `ApiError` carries its problem document inline because poem-openapi's response derive needs
// the payload by value; it is built at most once per refused request, so its size costs nothing
// that matters.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod apply;
pub mod auth;
pub mod caller_slots;
pub mod config;
pub mod connection_limit;
pub mod live;
pub mod metrics;
pub mod middleware;
pub mod model;
pub mod problem;
pub mod read;
pub mod read_deadline;
pub mod ref_id;
pub mod request_id;
pub mod route_table;
pub mod routes;
pub mod state;
pub mod tls;
pub mod typescript;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use delivery_read_model::{ReadModel, RedisKeys};
use delivery_workflows::batch::EventBatchClient;
use delivery_workflows::compat::CompatClient;
use delivery_workflows::{DeliveryOrderClient, TemporalTarget};
use poem::listener::{Acceptor, Listener, TcpListener};

pub use config::ApiConfig;

use crate::live::LiveHub;
use crate::metrics::ApiMetrics;
use crate::state::{AppState, TemporalClients};

/// Connects to Temporal, PostgreSQL (applying migrations) and Redis. Waits up to `patience` for
/// Temporal and PostgreSQL; Redis may come later (reads fall back to PostgreSQL meanwhile).
pub async fn connect(config: ApiConfig, patience: Duration) -> anyhow::Result<Arc<AppState>> {
    let client = delivery_platform::connect_temporal(
        &config.temporal_address,
        config.temporal_tls.as_ref(),
        &config.namespace,
        &format!("delivery-api@{}", std::process::id()),
        config.payload_keys.clone(),
        patience,
    )
    .await?;
    let pool = delivery_platform::connect_postgres(
        config.database_url.expose(),
        config.database_pool_size,
        patience,
    )
    .await?;
    delivery_read_model::migrate(&pool)
        .await
        .context("applying the read-model migrations")?;
    let redis_client =
        delivery_platform::redis_client(config.redis_url.expose(), config.redis_tls_ca.as_ref())
            .context("REDIS_URL is not a Redis URL")?;
    let read_model = ReadModel::new(
        pool,
        redis_client,
        RedisKeys::new(config.redis_key_prefix.clone()),
    )
    .context("creating the Redis connection")?;
    let live = LiveHub::start(&read_model, config.sockets.backlog);
    let target = TemporalTarget::new(client, config.task_queue.clone())
        .with_rpc_timeout(config.temporal_timeout);
    let temporal = TemporalClients {
        orders: DeliveryOrderClient::new(target.clone()),
        compat: CompatClient::new(target.clone()),
        batches: EventBatchClient::new(target),
    };
    let metrics = ApiMetrics::new().context("registering metrics")?;
    Ok(AppState::new(config, temporal, read_model, metrics, live))
}

/// How long in-flight requests may still take once `shutdown` resolved (SIGTERM): the listener
/// is closed at once, requests already read finish, and whatever is still open after this is cut
/// and the process exits. The k8s gateway's `terminationGracePeriodSeconds` covers its preStop
/// sleep plus this (a test in tests/tests/integration/deployment.rs checks it).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves; in-flight requests get up to [`SHUTDOWN_DRAIN`] to finish.
pub async fn serve(
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let address = format!("{}:{}", state.config.bind, state.config.port);
    let acceptor = TcpListener::bind(&address)
        .into_acceptor()
        .await
        .with_context(|| format!("binding {address}"))?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied());
    tracing::info!(
        address = ?local,
        https = state.config.tls.is_some(),
        temporal = %state.config.temporal_address,
        temporal_tls = state.config.temporal_tls.is_some(),
        task_queue = %state.config.task_queue,
        "gateway listening"
    );
    tokio::spawn(state.clone().prune_rate_limits());
    match state.config.tls.clone() {
        Some(tls) => run(tls::TlsAcceptor::new(acceptor, &tls), state, shutdown).await,
        None => run(acceptor, state, shutdown).await,
    }
}

/// Serves what `acceptor` accepts (plain TCP, or TLS over it) behind the connection limit and
/// the read deadlines. They wrap the TLS layer, so they see the decrypted request (and a stalled
/// handshake counts against the first head's deadline).
async fn run<A>(
    acceptor: A,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    A: Acceptor + 'static,
    A::Io: connection_limit::SendBuffer,
{
    let http = state.config.http;
    let acceptor = connection_limit::LimitedAcceptor::new(
        acceptor,
        http.max_connections,
        http.max_per_peer,
        http.read,
        state.metrics.connections.clone(),
        state.config.sockets.send_buffer_bytes,
    );
    poem::Server::new_with_acceptor(acceptor)
        // Closes connections silent for this long (keep-alive, idle or stalled clients); live
        // sockets stay busy with the gateway's pings.
        .idle_timeout(state.config.http.idle_timeout)
        .run_with_graceful_shutdown(app::app(state), shutdown, Some(SHUTDOWN_DRAIN))
        .await
        .context("serving HTTP")
}
