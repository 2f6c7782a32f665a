//! WebSocket push: `/api/v1/ws/delivery-orders/{id}` sends a snapshot of one delivery order,
//! then every change of it; `/api/v1/ws/events` streams every change (customers: their own) for
//! dashboards. Browsers cannot set headers on a WebSocket, so the token may come in the
//! `access_token` query parameter. Every message carries `version`: a client that sees a gap
//! asks again or waits for the `resync` message the gateway sends when it fell behind.

use std::sync::Arc;
use std::time::Duration;

use delivery_read_model::StoredOrder;
use futures::{SinkExt, StreamExt};
use poem::web::websocket::{Message, WebSocket, WebSocketStream};
use poem::web::{Data, Path, Query};
use poem::{IntoResponse, Request, handler};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Caller, Role};
use crate::live::{Live, SocketMessage};
use crate::problem::ApiError;
use crate::routes::delivery_order_id;
use crate::state::AppState;

/// A socket that cannot take a message within this long is closed: it would only fall further
/// behind.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    access_token: Option<String>,
}

fn authenticate(state: &AppState, req: &Request, query: &WsQuery) -> Result<Caller, ApiError> {
    let header = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = query.access_token.clone().or(header).ok_or_else(|| {
        ApiError::unauthorized(
            "this needs a token: ?access_token=<JWT> or Authorization: Bearer <JWT>",
        )
    })?;
    state.tokens.verify(&token).map_err(ApiError::unauthorized)
}

#[handler]
pub(crate) async fn delivery_order(
    req: &Request,
    Path(id): Path<String>,
    Query(query): Query<WsQuery>,
    Data(state): Data<&Arc<AppState>>,
    ws: WebSocket,
) -> Result<impl IntoResponse, ApiError> {
    let caller = authenticate(state, req, &query)?;
    let uuid = delivery_order_id(&id)?;
    // Subscribe before the snapshot is read, so no change falls between the two.
    let updates = state.live.subscribe();
    let order = state
        .read_model
        .order(uuid)
        .await
        .map_err(|e| ApiError::unavailable("the read model is unavailable", &e))?
        .filter(|o| caller.may_see(&o.order.customer_id))
        .ok_or_else(|| ApiError::delivery_order_not_found(&id))?;
    let state = Arc::clone(state);
    Ok(ws.on_upgrade(move |socket| async move {
        watch_one(state, socket, id, order, updates).await;
    }))
}

#[handler]
pub(crate) async fn events(
    req: &Request,
    Query(query): Query<WsQuery>,
    Data(state): Data<&Arc<AppState>>,
    ws: WebSocket,
) -> Result<impl IntoResponse, ApiError> {
    let caller = authenticate(state, req, &query)?;
    caller.require(&[
        Role::Customer,
        Role::Operator,
        Role::Admin,
        Role::OrderManagement,
    ])?;
    let updates = state.live.subscribe();
    Ok(ws.on_upgrade(move |socket| async move {
        watch_all(socket, caller, updates).await;
    }))
}

async fn watch_one(
    state: Arc<AppState>,
    socket: WebSocketStream,
    id: String,
    snapshot: StoredOrder,
    mut updates: tokio::sync::broadcast::Receiver<Live>,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut sent_version = snapshot.order.version;
    if !send(&mut sink, SocketMessage::snapshot(&snapshot).text()).await {
        return;
    }
    loop {
        tokio::select! {
            update = updates.recv() => {
                let message = match update {
                    Ok(Live::Change(change)) if change.delivery_order_id == id => {
                        if change.is_status && change.version <= sent_version {
                            continue; // already in the snapshot
                        }
                        if change.is_status {
                            sent_version = change.version;
                        }
                        change.message.clone()
                    }
                    Ok(Live::Change(_)) => continue,
                    Ok(Live::Resubscribed) | Err(RecvError::Lagged(_)) => {
                        // Something may be missed: send the order as it stands.
                        let Ok(Some(order)) = state.read_model.order(snapshot_id(&id)).await else { continue };
                        sent_version = order.order.version;
                        let resync = SocketMessage::Resync { reason: None, missed: None };
                        let _ = send(&mut sink, resync.text()).await;
                        SocketMessage::snapshot(&order).text()
                    }
                    Err(RecvError::Closed) => break,
                };
                if !send(&mut sink, message).await {
                    break;
                }
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn watch_all(
    socket: WebSocketStream,
    caller: Caller,
    mut updates: tokio::sync::broadcast::Receiver<Live>,
) {
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            update = updates.recv() => {
                let message = match update {
                    Ok(Live::Change(change)) => {
                        if caller.is_customer_only() && change.customer_id != caller.sub {
                            continue;
                        }
                        change.message.clone()
                    }
                    Ok(Live::Resubscribed) => SocketMessage::Resync {
                        reason: Some("live updates were interrupted; reread what you show"),
                        missed: None,
                    }
                    .text(),
                    Err(RecvError::Lagged(missed)) => SocketMessage::Resync {
                        reason: None,
                        missed: Some(missed),
                    }
                    .text(),
                    Err(RecvError::Closed) => break,
                };
                if !send(&mut sink, message).await {
                    break;
                }
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn snapshot_id(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

async fn send<S>(sink: &mut S, message: String) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(message))).await,
        Ok(Ok(()))
    )
}
