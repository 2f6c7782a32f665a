//! Live WebSockets cannot be used to exhaust or outlive the gateway: one caller holds at most
//! `WS_MAX_PER_CALLER` sockets and the gateway `WS_MAX_TOTAL`, frames beyond a few KiB end the
//! socket, a client that never answers pings is closed as idle, a socket closes when its token
//! expires, and a client that stops reading falls behind alone and is told to resync.

use std::time::Duration;

use delivery_api::auth::{Role, TokenKeys};
use delivery_tests::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const EVENTS: &str = "/api/v1/ws/events";

async fn connect(api: &GatewayProcess, token: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}{EVENTS}?access_token={token}", api.port);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake")
        .0
}

/// Reads until the gateway closes the socket; returns the close code and reason (`None` when
/// the connection just ended). Answers pings meanwhile, as every client library does.
async fn closed(socket: &mut Socket, within: Duration) -> Option<(CloseCode, String)> {
    tokio::time::timeout(within, async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the gateway closes the socket in time")
}

/// True while the socket stays open for `period`, reading (and so answering pings) meanwhile.
async fn stays_open(socket: &mut Socket, period: Duration) -> bool {
    tokio::time::timeout(period, async {
        while let Some(frame) = socket.next().await {
            if matches!(frame, Ok(Message::Close(_)) | Err(_)) {
                return;
            }
        }
    })
    .await
    .is_err()
}

#[tokio::test]
async fn one_caller_holds_a_bounded_number_of_sockets_and_gets_them_back() {
    let stack = Stack::start_with(StackOptions::quiet().gateway("WS_MAX_PER_CALLER", "3")).await;
    let api = stack.api();
    let olga = api.token("olga", &[Role::Operator]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(api, &olga).await);
    }
    let mut fourth = connect(api, &olga).await;
    let (code, reason) = closed(&mut fourth, Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(code, CloseCode::Again, "{reason}");
    assert!(reason.contains("3 live sockets"), "{reason}");
    // Another caller is not affected.
    let mut ivan = connect(api, &api.token("ivan", &[Role::Operator])).await;
    assert!(stays_open(&mut ivan, Duration::from_millis(500)).await);
    // A closed socket gives its place back.
    let mut first = held.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let mut again = eventually("a socket place freed", || async {
        let mut socket = connect(api, &olga).await;
        stays_open(&mut socket, Duration::from_millis(300))
            .await
            .then_some(socket)
    })
    .await;
    assert!(stays_open(&mut again, Duration::from_millis(300)).await);
}

/// The gateway's gauge of admitted sockets (the space ends the name: no labels, no suffix).
const SOCKETS_HELD: &str = "delivery_api_websocket_connections ";

#[tokio::test]
async fn the_default_per_caller_cap_and_a_small_total_hold_at_the_gateway() {
    // WS_MAX_PER_CALLER left at its default (20).
    let stack = Stack::start_with(StackOptions::quiet().gateway("WS_MAX_TOTAL", "24")).await;
    let api = stack.api();
    let olga = api.token("olga", &[Role::Operator]);

    // One caller opens 300: the first 20 stay open, the other 280 are closed at once with 1013.
    let mut sockets = Vec::new();
    for _ in 0..300 {
        sockets.push(connect(api, &olga).await);
    }
    let mut refused = sockets.split_off(20);
    for socket in &mut refused {
        let (code, reason) = closed(socket, Duration::from_secs(5))
            .await
            .expect("a close frame");
        assert_eq!(code, CloseCode::Again, "{reason}");
        assert!(reason.contains("20 live sockets"), "{reason}");
    }
    let open = futures::future::join_all(
        sockets
            .iter_mut()
            .map(|s| stays_open(s, Duration::from_millis(500))),
    )
    .await;
    assert!(open.iter().all(|o| *o), "{open:?}");
    assert_eq!(api.metric(SOCKETS_HELD).await, 20.0);

    // Other callers share the rest of the gateway's 24 places, then are refused with 1013 too.
    let ivan = api.token("ivan", &[Role::Operator]);
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut socket = connect(api, &ivan).await;
        assert!(stays_open(&mut socket, Duration::from_millis(300)).await);
        others.push(socket);
    }
    let mut beyond = connect(api, &api.token("petra", &[Role::Customer])).await;
    let (code, reason) = closed(&mut beyond, Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(code, CloseCode::Again, "{reason}");
    assert!(reason.contains("maximum of 24 live sockets"), "{reason}");
    assert_eq!(api.metric(SOCKETS_HELD).await, 24.0);

    // A socket that ends gives its place to whoever asks next.
    let mut gone = sockets.pop().unwrap();
    gone.close(None).await.unwrap();
    drop(gone);
    let petra = api.token("petra", &[Role::Customer]);
    let mut admitted = eventually("a gateway place freed", || async {
        let mut socket = connect(api, &petra).await;
        stays_open(&mut socket, Duration::from_millis(300))
            .await
            .then_some(socket)
    })
    .await;
    assert!(stays_open(&mut admitted, Duration::from_millis(300)).await);
    assert_eq!(api.metric(SOCKETS_HELD).await, 24.0);
}

#[tokio::test]
async fn big_frames_idle_clients_and_expired_tokens_end_the_socket() {
    let stack = Stack::start_with(StackOptions::quiet().gateway("WS_IDLE_TIMEOUT_SECS", "3")).await;
    let api = stack.api();
    let olga = api.token("olga", &[Role::Operator]);

    // Clients only ping: 64 KiB in one message ends the socket.
    let mut big = connect(api, &olga).await;
    big.send(Message::Text("x".repeat(64 * 1024).into()))
        .await
        .unwrap();
    let close = closed(&mut big, Duration::from_secs(5)).await;
    assert!(
        close
            .as_ref()
            .is_none_or(|(code, _)| *code == CloseCode::Size),
        "{close:?}"
    );

    // A client that reads (and so answers the gateway's pings) stays past the idle timeout...
    let mut reader = connect(api, &olga).await;
    assert!(stays_open(&mut reader, Duration::from_secs(5)).await);
    // ...one that never reads never answers, and is closed as idle.
    let mut silent = connect(api, &olga).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The close frame may be lost to the pong the client tries to write on the way to it (the
    // gateway has gone by then); either way the socket is over.
    let close = closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        close
            .as_ref()
            .is_none_or(|(code, _)| *code == CloseCode::Away),
        "{close:?}"
    );

    // A token that expires in 3 s: the socket closes then, with a policy code.
    let short = TokenKeys::new(TEST_JWT_SECRET.as_bytes())
        .mint("olga", &[Role::Operator], Duration::from_secs(3))
        .unwrap();
    let mut expiring = connect(api, &short).await;
    let (code, reason) = closed(&mut expiring, Duration::from_secs(10))
        .await
        .expect("a close frame");
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

/// A socket whose client keeps a small receive buffer (so the gateway's sends block as soon as
/// the client stops reading, rather than after megabytes of kernel buffers).
async fn connect_with_small_buffer(api: &GatewayProcess, token: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], api.port).into())
        .await
        .expect("tcp connect");
    let url = format!("ws://127.0.0.1:{}{EVENTS}?access_token={token}", api.port);
    tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket handshake")
        .0
}

/// The next JSON message, within `within` (`None`: none came, or the socket ended).
async fn next_json(socket: &mut Socket, within: Duration) -> Option<serde_json::Value> {
    tokio::time::timeout(within, async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_resynced_while_the_others_get_every_change() {
    const BACKLOG: usize = 64;
    const PINGS: usize = 600;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("WS_BACKLOG", &BACKLOG.to_string())
            // A few dozen pings fill the stalled socket's buffers (the default holds hundreds).
            .gateway("WS_SEND_BUFFER_BYTES", "8192")
            // Long enough that the stalled client is resynced, not closed, when it reads again.
            .gateway("WS_SEND_TIMEOUT_SECS", "60"),
    )
    .await;
    let api = stack.api();
    let id = api.paid_order("cust-slow").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let picked = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &serde_json::json!({"event_id": "slow-pu", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": {"partner_order_number": "PN-SLOW"}}),
        )
        .await;
    assert_eq!(picked.status, 200, "{}", picked.text);
    let olga = api.token("olga", &[Role::Operator]);
    let mut reader = connect(api, &olga).await;
    let mut stalled = connect_with_small_buffer(api, &api.token("ivan", &[Role::Operator])).await;
    // Both sockets follow the live updates before the flood starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The reader reads as the pings are sent; the stalled client reads nothing meanwhile.
    let reading = async {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < PINGS {
            let message = next_json(&mut reader, Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("the reader got {} of {PINGS} pings", seen.len()));
            assert_ne!(message["type"], "resync", "the reader never falls behind");
            if message["type"] == "tracking" && message["delivery_order_id"] == id.as_str() {
                seen.insert(message["location_at"].as_str().unwrap().to_owned());
            }
        }
        seen.len()
    };
    let sending = async {
        for n in 0..PINGS {
            let answer = api
                .webhook(
                    "sim",
                    TEST_PARTNER_SECRET,
                    &serde_json::json!({"event_id": format!("slow-loc-{n}"), "type": "LOCATION",
                        "delivery_order_id": id, "pickup_id": pickup_id,
                        "data": {"lat": 51.5 + n as f64 * 1e-4, "lon": -0.12}}),
                )
                .await;
            assert_eq!(
                answer.json["outcome"], "tracking_updated",
                "{}",
                answer.text
            );
        }
    };
    let (received, ()) = tokio::join!(reading, sending);
    assert_eq!(received, PINGS, "the reader got every change");

    // Reading again, the stalled client first gets what its buffers held, then a resync that
    // says how much it missed: it was not buffered for without bound.
    let mut pings_before = 0;
    let resync = loop {
        let message = next_json(&mut stalled, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the stalled client got {pings_before} pings and no resync"));
        match message["type"].as_str() {
            Some("resync") => break message,
            Some("tracking") => pings_before += 1,
            _ => {}
        }
    };
    let missed = resync["missed"].as_u64().expect("how many were missed");
    assert!(missed > 0, "{resync}");
    assert!(pings_before < PINGS, "{pings_before}");
    // It is still served: after the resync it follows the live updates again.
    let last = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &serde_json::json!({"event_id": "slow-loc-last", "type": "LOCATION",
                "delivery_order_id": id, "pickup_id": pickup_id,
                "data": {"lat": 52.0, "lon": -0.12}}),
        )
        .await;
    assert_eq!(last.json["outcome"], "tracking_updated", "{}", last.text);
    let followed = loop {
        let message = next_json(&mut stalled, Duration::from_secs(10))
            .await
            .expect("the resynced client follows the updates");
        if message["type"] == "tracking" && message["location"]["lat"] == serde_json::json!(52.0) {
            break message;
        }
    };
    assert_eq!(followed["delivery_order_id"], id.as_str());
}
