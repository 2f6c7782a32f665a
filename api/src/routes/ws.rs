//! WebSocket push: `/api/v1/ws/delivery-orders/{id}` sends a snapshot of one delivery order,
//! then every change of it; `/api/v1/ws/events` streams every change (customers: their own) for
//! dashboards. Browsers cannot set headers on a WebSocket, so the token may come in the
//! `access_token` query parameter. Every message carries `version`: a client that sees a gap
//! asks again or waits for the `resync` message the gateway sends when it fell behind.
//!
//! Every socket is bounded: a caller holds at most `WS_MAX_PER_CALLER` sockets and the gateway
//! `WS_MAX_TOTAL` (beyond either, the socket is closed at once with 1013 "try again later");
//! inbound frames are capped at a few KiB (clients only ping and close); the gateway pings and
//! closes a socket whose client stayed silent for `WS_IDLE_TIMEOUT_SECS` (1001); and the socket
//! is closed when its token expires (1008), so a revoked caller does not listen for ever. A
//! client that reads too slowly is never buffered for without bound: once it is `WS_BACKLOG`
//! changes behind it gets a `resync` (with how many it missed) instead of them, and a send it
//! does not take within `WS_SEND_TIMEOUT_SECS` closes the socket.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::web::{Data, Path, Query};
use poem::{IntoResponse, Request, handler};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::auth::{Caller, Role};
use crate::caller_slots::{Slot, SlotRefused};
use crate::config::{MAX_INBOUND_WS_BYTES, SocketLimits};
use crate::live::{Live, SocketMessage};
use crate::problem::ApiError;
use crate::routes::delivery_order_id;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    access_token: Option<String>,
}

/// A caller allowed to open a socket, and until when.
struct Admitted {
    caller: Caller,
    expires_at: u64,
}

fn authenticate(state: &AppState, req: &Request, query: &WsQuery) -> Result<Admitted, ApiError> {
    let header = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = query.access_token.clone().or(header).ok_or_else(|| {
        ApiError::unauthorized(
            "this needs a token: ?access_token=<JWT> or Authorization: Bearer <JWT>",
        )
    })?;
    let (caller, expires_at) = state
        .tokens
        .verify_until(&token)
        .map_err(ApiError::unauthorized)?;
    Ok(Admitted { caller, expires_at })
}

fn bounded(ws: WebSocket) -> WebSocket {
    ws.config(
        WebSocketConfig::default()
            .max_message_size(Some(MAX_INBOUND_WS_BYTES))
            .max_frame_size(Some(MAX_INBOUND_WS_BYTES)),
    )
}

#[handler]
pub(crate) async fn delivery_order(
    req: &Request,
    Path(id): Path<String>,
    Query(query): Query<WsQuery>,
    Data(state): Data<&Arc<AppState>>,
    ws: WebSocket,
) -> Result<impl IntoResponse, ApiError> {
    let admitted = authenticate(state, req, &query)?;
    let uuid = delivery_order_id(&id)?;
    // Subscribe before the snapshot is read, so no change falls between the two.
    let updates = state.live.subscribe();
    let order = state
        .read_model
        .order(uuid)
        .await
        .map_err(|e| ApiError::unavailable("the read model is unavailable", &e))?
        .filter(|o| admitted.caller.may_see((&o.order).into()))
        .ok_or_else(|| ApiError::delivery_order_not_found(&id))?;
    let slot = state.sockets.take(&admitted.caller.sub);
    let state = Arc::clone(state);
    Ok(bounded(ws).on_upgrade(move |socket| async move {
        let session = Session::open(socket, slot, admitted.expires_at, state.config.sockets).await;
        if let Some(session) = session {
            let feed = OneOrder {
                state,
                sent_version: order.order.version,
                id,
            };
            session
                .run(Some(SocketMessage::snapshot(&order).text()), feed, updates)
                .await;
        }
    }))
}

#[handler]
pub(crate) async fn events(
    req: &Request,
    Query(query): Query<WsQuery>,
    Data(state): Data<&Arc<AppState>>,
    ws: WebSocket,
) -> Result<impl IntoResponse, ApiError> {
    let admitted = authenticate(state, req, &query)?;
    admitted.caller.require(&[
        Role::Customer,
        Role::Operator,
        Role::Admin,
        Role::OrderManagement,
    ])?;
    let updates = state.live.subscribe();
    let slot = state.sockets.take(&admitted.caller.sub);
    let limits = state.config.sockets;
    Ok(bounded(ws).on_upgrade(move |socket| async move {
        if let Some(session) = Session::open(socket, slot, admitted.expires_at, limits).await {
            let feed = AllOrders {
                caller: admitted.caller,
            };
            session.run(None, feed, updates).await;
        }
    }))
}

/// What one kind of socket sends for a live change.
trait Feed {
    /// The messages to send for `update` (none, one, or a resync and a snapshot); `Err(())`
    /// when the live updates ended and the socket should close.
    async fn messages(&mut self, update: Result<Live, RecvError>) -> Result<Vec<String>, ()>;
}

/// One order: its changes after the snapshot, and a fresh snapshot after a gap.
struct OneOrder {
    state: Arc<AppState>,
    id: String,
    sent_version: u64,
}

impl Feed for OneOrder {
    async fn messages(&mut self, update: Result<Live, RecvError>) -> Result<Vec<String>, ()> {
        Ok(match update {
            Ok(Live::Change(change)) if change.delivery_order_id == self.id => {
                if change.is_status && change.version <= self.sent_version {
                    return Ok(Vec::new()); // already in the snapshot
                }
                if change.is_status {
                    self.sent_version = change.version;
                }
                vec![change.message.clone()]
            }
            Ok(Live::Change(_)) => Vec::new(),
            Ok(Live::Resubscribed) | Err(RecvError::Lagged(_)) => {
                // Something may be missed: send the order as it stands, after a resync.
                let id = uuid::Uuid::parse_str(&self.id).unwrap_or_default();
                let Ok(Some(order)) = self.state.read_model.order(id).await else {
                    return Ok(Vec::new());
                };
                self.sent_version = order.order.version;
                let resync = SocketMessage::resync(None, None);
                vec![resync.text(), SocketMessage::snapshot(&order).text()]
            }
            Err(RecvError::Closed) => return Err(()),
        })
    }
}

/// Every order the caller may see.
struct AllOrders {
    caller: Caller,
}

impl Feed for AllOrders {
    async fn messages(&mut self, update: Result<Live, RecvError>) -> Result<Vec<String>, ()> {
        Ok(match update {
            Ok(Live::Change(change)) => {
                if !self.caller.may_see(change.parties()) {
                    return Ok(Vec::new());
                }
                vec![change.message.clone()]
            }
            Ok(Live::Resubscribed) => vec![
                SocketMessage::resync(
                    Some("live updates were interrupted; reread what you show"),
                    None,
                )
                .text(),
            ],
            Err(RecvError::Lagged(missed)) => {
                vec![SocketMessage::resync(None, Some(missed)).text()]
            }
            Err(RecvError::Closed) => return Err(()),
        })
    }
}

/// An open socket with its slot, its token's expiry and its idle watch.
struct Session {
    sink: SplitSink<WebSocketStream, Message>,
    incoming: futures::stream::SplitStream<WebSocketStream>,
    _slot: Slot,
    expires_at: Instant,
    idle_timeout: Duration,
    /// A send the client does not take within this long closes the socket: it would only fall
    /// further behind (`WS_SEND_TIMEOUT_SECS`).
    send_timeout: Duration,
}

impl Session {
    /// The session, or `None` after closing the socket at once because a limit refused it.
    async fn open(
        socket: WebSocketStream,
        slot: Result<Slot, SlotRefused>,
        expires_at_unix: u64,
        limits: SocketLimits,
    ) -> Option<Self> {
        let (mut sink, incoming) = socket.split();
        let slot = match slot {
            Ok(slot) => slot,
            Err(refused) => {
                let _ = sink
                    .send(Message::close_with(CloseCode::Again, refused.to_string()))
                    .await;
                return None;
            }
        };
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Some(Self {
            sink,
            incoming,
            _slot: slot,
            expires_at: Instant::now()
                + Duration::from_secs(expires_at_unix.saturating_sub(now_unix)),
            idle_timeout: limits.idle_timeout,
            send_timeout: limits.send_timeout,
        })
    }

    async fn run(
        mut self,
        first: Option<String>,
        mut feed: impl Feed,
        mut updates: tokio::sync::broadcast::Receiver<Live>,
    ) {
        if let Some(first) = first
            && !self.send(first).await
        {
            return;
        }
        let mut ping = tokio::time::interval(self.idle_timeout / 3);
        ping.tick().await; // the first tick is immediate
        let mut heard_at = Instant::now();
        let expiry = tokio::time::sleep_until(self.expires_at);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                update = updates.recv() => match feed.messages(update).await {
                    Ok(messages) => {
                        for message in messages {
                            if !self.send(message).await {
                                return;
                            }
                        }
                    }
                    Err(()) => return,
                },
                frame = self.incoming.next() => match frame {
                    // Anything the client sends, pongs included, shows it is there; oversized
                    // frames end the stream with an error.
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => heard_at = Instant::now(),
                },
                _ = ping.tick() => {
                    if heard_at.elapsed() >= self.idle_timeout {
                        self.close(CloseCode::Away, "no answer to pings: idle").await;
                        return;
                    }
                    if !self.send_frame(Message::Ping(Vec::new())).await {
                        return;
                    }
                }
                _ = &mut expiry => {
                    self.close(CloseCode::Policy, "the token expired; reconnect with a new one").await;
                    return;
                }
            }
        }
    }

    async fn send(&mut self, text: String) -> bool {
        self.send_frame(Message::Text(text)).await
    }

    async fn send_frame(&mut self, message: Message) -> bool {
        matches!(
            tokio::time::timeout(self.send_timeout, self.sink.send(message)).await,
            Ok(Ok(()))
        )
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = self
            .send_frame(Message::close_with(code, reason.to_owned()))
            .await;
    }
}
