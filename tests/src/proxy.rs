//! A TCP proxy a test can cut or stall: stands between a process and PostgreSQL, Redis or
//! Temporal so an outage (connections refused) or a hang (connections open, nothing answered)
//! can be simulated without touching the real server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// While true, every connection is held open and nothing is forwarded either way.
    stalled: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("bound").port();
        let up = Arc::new(AtomicBool::new(true));
        let (stalled, _) = watch::channel(false);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, connections, stalled) = (up.clone(), connections.clone(), stalled.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped at once: the server looks down
                    }
                    let mut stall = stalled.subscribe();
                    let task = tokio::spawn(async move {
                        let forward = async {
                            if let Ok(mut server) = TcpStream::connect(upstream).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        };
                        tokio::select! {
                            () = forward => {}
                            // Both ends stay open (held by this task until the proxy drops or
                            // cuts it) and nothing more passes: the server looks hung.
                            () = async { drop(stall.wait_for(|stalled| *stalled).await) } => {
                                std::future::pending::<()>().await
                            }
                        }
                    });
                    connections.lock().expect("lock").push(task);
                }
            }
        });
        Self {
            port,
            up,
            stalled,
            connections,
            accept,
        }
    }

    /// A proxy in front of the server a `scheme://host:port/...` URL names, and the same URL
    /// pointed at the proxy.
    pub async fn in_front_of(url: &str, default_port: u16) -> (Self, String) {
        let mut url = url::Url::parse(url).expect("a URL");
        let host = url.host_str().expect("a host").to_owned();
        let upstream: SocketAddr = format!("{host}:{}", url.port().unwrap_or(default_port))
            .parse()
            .expect("an IP address and port");
        let proxy = Self::start(upstream).await;
        url.set_host(Some("127.0.0.1")).expect("settable host");
        url.set_port(Some(proxy.port)).expect("settable port");
        (proxy, url.to_string())
    }

    /// Cuts every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Lets new connections through again (a stall ends with it).
    pub fn restore(&self) {
        self.stalled.send_replace(false);
        self.up.store(true, Ordering::SeqCst);
    }

    /// Holds every connection, open ones and new ones, open without passing a byte either way:
    /// a server that accepts and never answers. [`Self::cut`] ends them.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
