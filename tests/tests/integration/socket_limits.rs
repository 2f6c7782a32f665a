//! Live WebSockets cannot be used to exhaust or outlive the gateway: one caller holds at most
//! `WS_MAX_PER_CALLER` sockets and the gateway `WS_MAX_TOTAL`, frames beyond a few KiB end the
//! socket, a client that never answers pings is closed as idle, and a socket closes when its
//! token expires.

use std::time::Duration;

use delivery_api::auth::{Role, TokenKeys};
use delivery_tests::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

/// The gateway's `delivery_api_websocket_connections` now.
async fn sockets_held(api: &GatewayProcess) -> i64 {
    let metrics = reqwest::get(format!("{}/metrics", api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("delivery_api_websocket_connections "))
        .expect("the socket gauge")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_default_per_caller_cap_and_a_small_total_hold_at_the_gateway() {
    // WS_MAX_PER_CALLER left at its default (20).
    let stack = Stack::start_with(StackOptions::quiet().gateway("WS_MAX_TOTAL", "24")).await;
    let api = stack.api();
    let olga = api.token("olga", &[Role::Operator]);

    // One caller opens 25: the first 20 stay open, the other 5 are closed at once with 1013.
    let mut sockets = Vec::new();
    for _ in 0..25 {
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
    assert_eq!(sockets_held(api).await, 20);

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
    assert_eq!(sockets_held(api).await, 24);

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
    assert_eq!(sockets_held(api).await, 24);
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
