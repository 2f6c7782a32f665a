//! `/metrics` (Prometheus text) and `/healthz` for the worker process. `/metrics` serves several
//! registries as one exposition: ours (`delivery_worker_*`) and the Temporal SDK's (`temporal_*`).

use std::net::SocketAddr;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, Server, get, handler, http::StatusCode};
use prometheus::{Encoder, Registry, TextEncoder};

/// The registries `/metrics` serves, in order.
#[derive(Clone)]
struct Registries(Vec<Registry>);

#[handler]
fn metrics(Data(registries): Data<&Registries>) -> Response {
    let families: Vec<_> = registries.0.iter().flat_map(Registry::gather).collect();
    let mut body = Vec::new();
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(body),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .finish()
        }
    }
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// A bound metrics server; `addr` is known before it runs (port 0 picks a free one).
pub struct MetricsServer {
    acceptor: poem::listener::TcpAcceptor,
    registries: Registries,
}

impl MetricsServer {
    pub async fn bind(host: &str, port: u16, registries: Vec<Registry>) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(format!("{host}:{port}"))
            .into_acceptor()
            .await?;
        Ok(Self {
            acceptor,
            registries: Registries(registries),
        })
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let app = Route::new()
            .at("/metrics", get(metrics))
            .at("/healthz", get(healthz))
            .data(self.registries);
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, None)
            .await
    }
}
