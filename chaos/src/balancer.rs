//! A TCP load balancer on loopback: each connection goes to the next upstream that accepts it, so
//! a client behind it (the partner simulator's webhooks) sees one address while gateways die and
//! come back, as it would behind a real balancer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(crate) struct Balancer {
    pub(crate) port: u16,
    accept: JoinHandle<()>,
}

impl Balancer {
    pub(crate) async fn start(upstreams: Vec<SocketAddr>) -> anyhow::Result<Self> {
        anyhow::ensure!(!upstreams.is_empty(), "a balancer needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let upstreams = Arc::new(upstreams);
        let next = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstreams, next) = (upstreams.clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for n in 0..upstreams.len() {
                        let upstream = upstreams[(first + n) % upstreams.len()];
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // Every upstream refused: the client sees its connection closed and retries.
                });
            }
        });
        Ok(Self { port, accept })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
