//! A delivery-partner simulator: accepts pickups (idempotent on `Idempotency-Key`), then calls the
//! service back as a real partner would, with configurable delays, failures and outages. The
//! contract is `docs/partner-contract.md`.

pub mod api;
pub mod callbacks;
pub mod config;
pub mod state;
pub mod traced;

use std::net::SocketAddr;
use std::sync::Arc;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Server};
use tokio::sync::watch;

pub use config::{CallbackMode, Knobs, SimConfig};

pub struct Simulator {
    acceptor: TcpAcceptor,
    app: Arc<api::App>,
    stop: watch::Sender<bool>,
}

impl Simulator {
    /// Binds the listener; nothing is served until [`Simulator::run_until_stopped`].
    pub async fn build(config: SimConfig) -> anyhow::Result<Self> {
        let acceptor = TcpListener::bind(format!("{}:{}", config.bind, config.port))
            .into_acceptor()
            .await?;
        let (stop, stop_rx) = watch::channel(false);
        let app = Arc::new(api::App {
            state: Arc::new(state::SimState::new(config.knobs)),
            sink: Arc::new(callbacks::Sink::new(
                config.callbacks,
                config.payload_keys,
                config.callback_retry_for,
            )),
            stop: stop_rx,
        });
        Ok(Self {
            acceptor,
            app,
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .expect("a TCP listener has a socket address")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Serves until `shutdown` resolves, then stops every pickup still in progress.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let routes = api::routes().data(self.app.clone()).around(traced::traced);
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(routes, shutdown, None)
            .await;
        let _ = self.stop.send(true);
        result
    }
}
