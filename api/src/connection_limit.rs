//! At most `HTTP_MAX_CONNECTIONS` open connections per gateway: an acceptor that waits for a free
//! place before it accepts, and a connection type that gives the place back when it closes. Past
//! the limit new clients wait in the kernel's backlog instead of exhausting file descriptors and
//! memory. With `HTTP_MAX_CONNECTIONS_PER_PEER` set, one address may hold at most that many of
//! the places: its further connections are closed as soon as they are accepted, so a single
//! client cannot take every place (off by default, as behind a load balancer all clients share
//! its addresses). Idle clients are cut by the server's idle timeout, and clients that trickle a request
//! by the read deadlines each connection keeps (`read_deadline`), which frees their places. A
//! connection upgraded to a WebSocket gets a small kernel send buffer (`WS_SEND_BUFFER_BYTES`),
//! so a client that stops reading blocks the gateway's sends after that much rather than after
//! the megabytes the kernel would otherwise buffer for it: the socket then falls behind the live
//! updates and is resynced or closed (`routes::ws`).

use std::collections::HashMap;
use std::io::Result as IoResult;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::read_deadline::{ReadDeadlines, RequestFraming};

/// What the connections report: how many are open, how many a read deadline cut, and how many
/// were closed on arrival because their peer held its share.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub deadline_cuts: IntCounterVec,
    pub refused_per_peer: IntCounter,
}

/// The connections each peer address holds, when they are capped.
#[derive(Debug)]
struct PeerCounts {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerCounts {
    /// A place for one more connection of `peer`, unless it holds `cap` already.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<PeerPlace> {
        let mut held = self.held.lock().expect("peer counts lock");
        let count = held.entry(peer).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            counts: Arc::clone(self),
            peer,
        })
    }
}

/// One connection's share of its peer's places, given back when the connection closes (the
/// address forgotten with its last connection, so the map holds only peers connected now).
#[derive(Debug)]
struct PeerPlace {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock().expect("peer counts lock");
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// A connection whose kernel send buffer can be capped.
pub trait SendBuffer {
    fn cap_send_buffer(&self, bytes: usize) -> IoResult<()>;
}

impl SendBuffer for tokio::net::TcpStream {
    fn cap_send_buffer(&self, bytes: usize) -> IoResult<()> {
        socket2::SockRef::from(self).set_send_buffer_size(bytes)
    }
}

pub struct LimitedAcceptor<A> {
    inner: A,
    places: Arc<Semaphore>,
    per_peer: Option<Arc<PeerCounts>>,
    deadlines: ReadDeadlines,
    metrics: ConnectionMetrics,
    websocket_send_buffer: usize,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(
        inner: A,
        max_connections: usize,
        max_per_peer: Option<usize>,
        deadlines: ReadDeadlines,
        metrics: ConnectionMetrics,
        websocket_send_buffer: usize,
    ) -> Self {
        Self {
            inner,
            places: Arc::new(Semaphore::new(max_connections)),
            per_peer: max_per_peer.map(|cap| {
                Arc::new(PeerCounts {
                    cap,
                    held: Mutex::new(HashMap::new()),
                })
            }),
            deadlines,
            metrics,
            websocket_send_buffer,
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A>
where
    A::Io: SendBuffer,
{
    type Io = Counted<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let place = Arc::clone(&self.places)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (io, local, remote, scheme, peer_place) = loop {
            let (io, local, remote, scheme) = self.inner.accept().await?;
            let (Some(counts), Some(peer)) = (&self.per_peer, remote.as_socket_addr()) else {
                break (io, local, remote, scheme, None);
            };
            match counts.take(peer.ip().to_canonical()) {
                Some(place) => break (io, local, remote, scheme, Some(place)),
                // Closed unanswered: the peer already holds its share of the places.
                None => {
                    self.metrics.refused_per_peer.inc();
                    drop(io);
                }
            }
        };
        let now = Instant::now();
        self.metrics.open.inc();
        Ok((
            Counted {
                io,
                _place: place,
                _peer_place: peer_place,
                framing: RequestFraming::new(self.deadlines, now),
                timer: Box::pin(tokio::time::sleep_until(now)),
                metrics: self.metrics.clone(),
                was_cut: false,
                websocket_send_buffer: self.websocket_send_buffer,
            },
            local,
            remote,
            scheme,
        ))
    }
}

/// A connection holding one place until it is dropped, whose reads end in an error once the
/// request being read is past its deadline.
pub struct Counted<T> {
    io: T,
    _place: OwnedSemaphorePermit,
    _peer_place: Option<PeerPlace>,
    framing: RequestFraming,
    /// Wakes a read waiting past the deadline; reset whenever the deadline moves.
    timer: Pin<Box<Sleep>>,
    metrics: ConnectionMetrics,
    /// Whether a deadline has cut this connection (counted once, however often it is read).
    was_cut: bool,
    /// The kernel send buffer a WebSocket gets.
    websocket_send_buffer: usize,
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        let this = &mut *self;
        let deadline = this.framing.deadline();
        if let Some((at, cut)) = deadline
            && Instant::now() >= at
        {
            return Poll::Ready(Err(this.cut(cut)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.framing.read(&buf.filled()[before..], Instant::now());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some((at, cut)) = deadline {
                    if this.timer.deadline() != at {
                        this.timer.as_mut().reset(at);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.cut(cut)));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T> Counted<T> {
    /// The error that ends a connection whose request came too slowly (hyper closes it).
    fn cut(&mut self, cut: crate::read_deadline::Cut) -> std::io::Error {
        if !std::mem::replace(&mut self.was_cut, true) {
            self.metrics
                .deadline_cuts
                .with_label_values(&[cut.label()])
                .inc();
        }
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("request {} not read in time", cut.label()),
        )
    }
}

impl<T: SendBuffer> Counted<T> {
    /// Notes the answer the server starts writing; a `101` makes this a WebSocket, whose send
    /// buffer is capped.
    fn answering(&mut self, bytes: &[u8]) {
        if self.framing.wrote(bytes)
            && let Err(error) = self.io.cap_send_buffer(self.websocket_send_buffer)
        {
            tracing::warn!(%error, "capping a WebSocket's send buffer failed");
        }
    }
}

impl<T: AsyncWrite + SendBuffer + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<IoResult<usize>> {
        self.answering(buf);
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.framing.sent(&buf[..n], Instant::now());
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<IoResult<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.answering(first);
        }
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            let now = Instant::now();
            for buf in bufs {
                let taken = n.min(buf.len());
                self.framing.sent(&buf[..taken], now);
                n -= taken;
                if n == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
