//! WebSocket watchers, as the web UI watches: one order's socket (`/ws/delivery-orders/{id}`) and
//! the dashboard's (`/ws/events`). Each checks what the promise says: versions only go up, and a
//! skipped version is announced by a `resync`; a socket that drops (its gateway was killed) is
//! opened again, on either gateway, and starts from a fresh snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use delivery_api::auth::Role;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Api;
use crate::ledger::{SocketProblem, WatchEnd};
use crate::states::is_terminal;

/// Set once the checks begin: watchers record where they are and end.
static STOP: AtomicBool = AtomicBool::new(false);

pub(crate) fn stop_all() {
    STOP.store(true, Ordering::SeqCst);
}

fn socket_url(api: &Api, path: &str, token: &str) -> String {
    let base = api.pick().replacen("http://", "ws://", 1);
    format!("{base}{path}?access_token={token}")
}

/// What one socket said next: a message, or that it is gone.
async fn next_message(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Value> {
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
        match next {
            Err(_) if STOP.load(Ordering::SeqCst) => return None,
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// After a skipped version, the client reads the order (as the web UI does): the read must hold
/// at least the version the socket showed.
async fn reread(api: &Api, token: &str, id: &str, shown: u64) {
    let Some(order) = api
        .get(&format!("/api/v1/delivery-orders/{id}"), token)
        .await
    else {
        return; // no answer now (a gateway or PostgreSQL is down): nothing to compare
    };
    if let Some(read) = order["version"].as_u64()
        && read < shown
    {
        api.ledger
            .socket_finding(id, SocketProblem::StaleAfterGap { got: shown, read });
    }
}

/// Watches one order until it shows a terminal state or the checks begin.
pub(crate) async fn watch_order(api: Arc<Api>, id: String) {
    let token = api.token("chaos-watcher", Role::Operator);
    let mut last: Option<u64> = None;
    let mut saw_terminal = false;
    'sessions: while !STOP.load(Ordering::SeqCst) {
        let url = socket_url(&api, &format!("/api/v1/ws/delivery-orders/{id}"), &token);
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut resync_pending = false;
        let mut baseline = false;
        while let Some(message) = next_message(&mut socket).await {
            let order = &message["delivery_order"];
            let version = order["version"].as_u64();
            match (message["type"].as_str(), version) {
                (Some("snapshot"), Some(v)) => {
                    if let Some(seen) = last
                        && v < seen
                    {
                        api.ledger.socket_finding(
                            &id,
                            SocketProblem::Backwards {
                                after: seen,
                                got: v,
                            },
                        );
                    }
                    last = Some(v);
                    baseline = true;
                    resync_pending = false;
                }
                (Some("update"), Some(v)) => {
                    if let Some(seen) = last {
                        if v == seen {
                            api.ledger
                                .socket_finding(&id, SocketProblem::Repeated { version: v });
                        } else if v < seen {
                            api.ledger.socket_finding(
                                &id,
                                SocketProblem::Backwards {
                                    after: seen,
                                    got: v,
                                },
                            );
                        } else if v > seen + 1 && baseline && !resync_pending {
                            // One update may carry several versions (a projection of several
                            // events): the client rereads, and the read must show as much.
                            reread(&api, &token, &id, v).await;
                        }
                    }
                    last = Some(last.map_or(v, |seen| seen.max(v)));
                }
                (Some("resync"), _) => resync_pending = true,
                _ => {}
            }
            if order["state"].as_str().is_some_and(is_terminal) {
                saw_terminal = true;
                break 'sessions;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.ledger.watch_end(
        &id,
        WatchEnd {
            last_version: last,
            saw_terminal,
        },
    );
}

/// The dashboard's socket of every change: per order, versions only go up and a gap comes after
/// a `resync` (which makes every order's next version a fresh start).
pub(crate) async fn watch_everything(api: Arc<Api>) {
    let token = api.token("chaos-dashboard", Role::Operator);
    while !STOP.load(Ordering::SeqCst) {
        let url = socket_url(&api, "/api/v1/ws/events", &token);
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        // A new socket knows nothing yet: every order starts afresh.
        let mut last: HashMap<String, u64> = HashMap::new();
        while let Some(message) = next_message(&mut socket).await {
            match message["type"].as_str() {
                Some("resync") => last.clear(),
                Some("update") => {
                    let order = &message["delivery_order"];
                    let (Some(id), Some(v)) = (
                        order["delivery_order_id"].as_str(),
                        order["version"].as_u64(),
                    ) else {
                        continue;
                    };
                    if let Some(&seen) = last.get(id) {
                        if v == seen {
                            api.ledger
                                .socket_finding(id, SocketProblem::Repeated { version: v });
                        } else if v < seen {
                            api.ledger.socket_finding(
                                id,
                                SocketProblem::Backwards {
                                    after: seen,
                                    got: v,
                                },
                            );
                        } else if v > seen + 1 {
                            reread(&api, &token, id, v).await;
                        }
                    }
                    let entry = last.entry(id.to_owned()).or_insert(v);
                    *entry = (*entry).max(v);
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
