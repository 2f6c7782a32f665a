//! Slow clients cannot hold the gateway: connections that trickle a request head a byte a
//! second, bodies that never complete and idle keep-alive connections are cut (by the read
//! deadlines and the idle timeout) while everybody else is served as usual, and every place they
//! held comes back — over HTTP/1.1 and HTTP/2 alike.

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_tests::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const TRICKLING_HEADS: usize = 20;
const TRICKLING_BODIES: usize = 10;
const IDLE_KEEP_ALIVE: usize = 10;
/// Longest any slow client is kept trickling before the test calls it a failure.
const MOST_TRICKLES: usize = 30;

/// A quiet stack whose gateway gives a request head and a body `secs` each.
fn read_deadlines(secs: u32) -> StackOptions {
    StackOptions::quiet()
        .gateway("HTTP_HEADER_TIMEOUT_SECS", &secs.to_string())
        .gateway("HTTP_BODY_TIMEOUT_SECS", &secs.to_string())
}

/// Connections the gateway cut by the header deadline and by the body deadline, so far.
async fn deadline_cuts(api: &GatewayProcess) -> (f64, f64) {
    let cuts = |phase| format!("delivery_api_http_read_deadline_closes_total{{phase=\"{phase}\"}}");
    (
        api.metric(&cuts("header")).await,
        api.metric(&cuts("body")).await,
    )
}

/// Sends `opening`, then one byte of `trickle` a second, reading meanwhile; returns how many
/// trickled bytes went out before the gateway closed the connection (`None`: it never did).
async fn trickle(port: u16, opening: Vec<u8>, trickle: u8) -> Option<usize> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(&opening).await.ok()?;
    let mut buf = [0u8; 1024];
    for sent in 0..MOST_TRICKLES {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(sent),
                // An answer may come before the close (a body cut short); keep reading.
                Ok(_) => continue,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if socket.write_all(&[trickle]).await.is_err() {
                    return Some(sent);
                }
            }
        }
    }
    None
}

/// One whole request on a connection left open afterwards; returns when the gateway closes it.
async fn idle_after_one_request(port: u16) -> Option<String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(MOST_TRICKLES as u64), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed
        .ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

/// Reads the socket until `finish`, then sends a ping and waits for its pong; false if the
/// socket closed first.
async fn still_answers_at_the_end(
    mut socket: Socket,
    mut finish: tokio::sync::oneshot::Receiver<()>,
) -> bool {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        tokio::select! {
            _ = &mut finish => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
        }
    }
    if socket
        .send(Message::Ping(b"still here".to_vec().into()))
        .await
        .is_err()
    {
        return false;
    }
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Pong(data) = frame
                && &data[..] == b"still here"
            {
                return true;
            }
        }
        false
    })
    .await;
    pong.unwrap_or(false)
}

#[tokio::test]
async fn trickling_and_idle_clients_are_cut_while_others_are_served() {
    let stack = Stack::start_with(
        read_deadlines(3)
            .gateway("HTTP_MAX_CONNECTIONS", "50")
            .gateway("HTTP_IDLE_TIMEOUT_SECS", "4")
            .gateway("WS_IDLE_TIMEOUT_SECS", "6"),
    )
    .await;
    let api = stack.api();
    let port = api.port;
    let payer = api.token("payments", &[Role::PaymentService]);
    let olga = api.token("olga", &[Role::Operator]);
    let (id, _) = api.pay("cust-slow-1").await;
    eventually("the read model to hold the order", || async {
        let read = api
            .get(&format!("/api/v1/delivery-orders/{id}"), &olga)
            .await;
        (read.status == 200).then_some(())
    })
    .await;

    let mut slow = JoinSet::new();
    for i in 0..TRICKLING_HEADS {
        // A request head that never ends: one more header byte every second.
        let opening =
            format!("GET /api/v1/delivery-orders/{id} HTTP/1.1\r\nHost: g\r\nX-Slow-{i}: ");
        slow.spawn(async move { ("head", trickle(port, opening.into_bytes(), b'a').await) });
    }
    for i in 0..TRICKLING_BODIES {
        // A whole head promising a body that arrives a byte a second and would take 17 minutes;
        // half of them also ask for an upgrade, which must not excuse the body.
        let upgrade = if i % 2 == 1 { "Upgrade: slow\r\n" } else { "" };
        let opening = format!(
            "POST /api/v1/payment-events HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {payer}\r\n\
             Content-Type: application/json\r\n{upgrade}Content-Length: 1000\r\n\r\n{{\"payment_id\": \""
        );
        slow.spawn(async move { ("body", trickle(port, opening.into_bytes(), b'x').await) });
    }
    let mut idle = JoinSet::new();
    for _ in 0..IDLE_KEEP_ALIVE {
        idle.spawn(idle_after_one_request(port));
    }

    // A live socket is no slow client: once upgraded it is left to its own limits. It reads (and
    // so answers the gateway's pings) all along, and at the end answers a ping of ours.
    let (socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/v1/ws/events?access_token={olga}"
    ))
    .await
    .expect("a websocket beside the slow clients");
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    let live_socket = tokio::spawn(still_answers_at_the_end(socket, finished));

    // Meanwhile ordinary callers get ordinary answers, on fresh connections each time.
    let served = async {
        let mut answers = 0;
        while !slow.is_empty() {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let health = client.get(format!("{}/healthz", api.url)).send().await;
            assert_eq!(health.expect("healthz answered").status(), 200);
            let read = client
                .get(format!("{}/api/v1/delivery-orders/{id}", api.url))
                .bearer_auth(&olga)
                .send()
                .await
                .expect("a read answered");
            assert_eq!(read.status(), 200);
            let body: serde_json::Value = read.json().await.unwrap();
            assert_eq!(body["delivery_order_id"], id.as_str());
            answers += 1;
            // Collect the slow clients that were cut meanwhile.
            while let Some(done) = slow.try_join_next() {
                let (kind, trickled) = done.unwrap();
                let trickled = trickled.unwrap_or_else(|| {
                    panic!("a trickling {kind} was never cut ({MOST_TRICKLES} s)")
                });
                // Cut by its deadline, not after the whole (never-ending) request.
                assert!(trickled < MOST_TRICKLES, "{kind}: {trickled}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        answers
    };
    let answers = served.await;
    assert!(answers > 0);
    while let Some(done) = idle.join_next().await {
        let answer = done
            .unwrap()
            .expect("an idle keep-alive connection is closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    // The socket, older than the header deadline, still works.
    finish.send(()).unwrap();
    assert!(
        live_socket.await.unwrap(),
        "the live socket answers after the slow clients are gone"
    );

    // Each trickler was cut by the deadline of what it trickled...
    let (heads, bodies) = deadline_cuts(api).await;
    assert!(heads >= TRICKLING_HEADS as f64, "{heads}");
    assert!(bodies >= TRICKLING_BODIES as f64, "{bodies}");
    // ...and every place came back: only the socket and the scrape's own connection are open.
    eventually("the slow clients' connections freed", || async {
        let open = api.metric("delivery_api_http_connections_open").await;
        (open <= 2.0).then_some(())
    })
    .await;
    // Nothing stuck: as many new connections as the limit allows are served at once.
    let at_once = futures::future::join_all((0..45).map(|_| async {
        reqwest::Client::new()
            .get(format!("{}/healthz", api.url))
            .send()
            .await
            .map(|r| r.status().as_u16())
    }))
    .await;
    assert!(at_once.iter().all(|s| matches!(s, Ok(200))), "{at_once:?}");
}

#[tokio::test]
async fn a_request_trickled_within_its_deadlines_is_served() {
    let stack = Stack::start_with(read_deadlines(5)).await;
    let api = stack.api();
    let olga = api.token("olga", &[Role::Operator]);
    let mut socket = TcpStream::connect(("127.0.0.1", api.port)).await.unwrap();
    // The head in three pieces a little apart, well inside its 5 s.
    for piece in [
        "GET /api/v1/operator/queue HTTP/1.1\r\n".to_owned(),
        "Host: gateway\r\nConnection: close\r\n".to_owned(),
        format!("Authorization: Bearer {olga}\r\n\r\n"),
    ] {
        socket.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A keep-alive connection from `source` that has been answered once (so the gateway holds it),
/// or `None` when the gateway closed it unanswered.
async fn held_connection(port: u16, source: [u8; 4]) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the gateway neither answered nor closed in 5 s")
        .ok()?;
    String::from_utf8_lossy(&buf[..n])
        .starts_with("HTTP/1.1 200")
        .then_some(stream)
}

/// With `HTTP_MAX_CONNECTIONS_PER_PEER`, one address holds at most its share: its next
/// connection is closed unanswered and counted, another address is served meanwhile, and the
/// share comes back when one of its connections closes.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    const SHARE: usize = 3;
    // An address of its own: the harness's clients (from 127.0.0.1) may keep pooled connections.
    const CLIENT: [u8; 4] = [127, 0, 0, 3];
    let stack = Stack::start_with(
        StackOptions::quiet().gateway("HTTP_MAX_CONNECTIONS_PER_PEER", &SHARE.to_string()),
    )
    .await;
    let api = stack.api();
    let mut held = Vec::new();
    for _ in 0..SHARE {
        held.push(
            held_connection(api.port, CLIENT)
                .await
                .expect("within its share"),
        );
    }
    assert!(
        held_connection(api.port, CLIENT).await.is_none(),
        "a connection beyond the share was answered"
    );
    // Another address is served meanwhile, and sees the refusal counted.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let metrics = other
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .expect("another address is served")
        .text()
        .await
        .unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("delivery_api_http_connections_refused_per_peer_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(refused, Some(1.0), "{metrics}");
    // One connection closes: its share is usable again.
    drop(held.pop());
    eventually("the closed connection's share usable again", || async {
        held_connection(api.port, CLIENT).await.map(drop)
    })
    .await;
}

/// An HTTP/2 connection to the gateway (prior knowledge, as over TLS with ALPN `h2`): the
/// request sender and the connection's task, which ends when the connection does.
async fn http2_connection(
    port: u16,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    (client, tokio::spawn(connection))
}

/// `GET /healthz` on its own HTTP/2 connection: its status.
async fn http2_health(port: u16) -> u16 {
    let (client, connection) = http2_connection(port).await;
    let mut client = client.ready().await.unwrap();
    let request = poem::http::Request::get(format!("http://127.0.0.1:{port}/healthz"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let status = response.await.expect("an HTTP/2 answer").status().as_u16();
    connection.abort();
    status
}

/// A payment event over HTTP/2 whose body comes a byte a second; returns how many bytes went
/// out before the gateway closed the connection (`None`: it never did).
async fn http2_trickled_body(port: u16, payer: String) -> Option<usize> {
    let (client, connection) = http2_connection(port).await;
    let mut client = client.ready().await.unwrap();
    let request =
        poem::http::Request::post(format!("http://127.0.0.1:{port}/api/v1/payment-events"))
            .header("authorization", format!("Bearer {payer}"))
            .header("content-type", "application/json")
            .header("content-length", "1000")
            .body(())
            .unwrap();
    let (_response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"{\"payment_id\": \""), false)
        .ok()?;
    for sent in 0..MOST_TRICKLES {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if connection.is_finished() {
            return Some(sent);
        }
        body.reserve_capacity(1);
        if body
            .send_data(bytes::Bytes::from_static(b"x"), false)
            .is_err()
        {
            return Some(sent);
        }
    }
    None
}

/// An HTTP/2 frame header: `length`, `kind`, `flags`, `stream`.
fn http2_frame_header(length: u32, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut header = length.to_be_bytes()[1..].to_vec();
    header.extend([kind, flags]);
    header.extend(stream.to_be_bytes());
    header
}

/// HTTP/2 multiplexes requests on one connection, so a stalled stream must not hold it: a head
/// (a `HEADERS` frame) trickled a byte a second and a body that never completes are cut by the
/// same deadlines as over HTTP/1.1, while other HTTP/2 connections are served.
#[tokio::test]
async fn http2_streams_trickling_a_head_or_a_body_are_cut_while_others_are_served() {
    const HEADS: usize = 5;
    const BODIES: usize = 5;
    let stack = Stack::start_with(read_deadlines(3)).await;
    let api = stack.api();
    let port = api.port;
    assert_eq!(http2_health(port).await, 200, "the gateway speaks HTTP/2");
    let payer = api.token("payments", &[Role::PaymentService]);

    let mut slow = JoinSet::new();
    for _ in 0..HEADS {
        // The preface, the client's (empty) SETTINGS, and a HEADERS frame on stream 1 that
        // announces 200 bytes of header block and sends them a byte a second.
        let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        opening.extend(http2_frame_header(0, 0x4, 0, 0));
        opening.extend(http2_frame_header(200, 0x1, 0x4, 1));
        slow.spawn(async move { ("head", trickle(port, opening, 0x82).await) });
    }
    for _ in 0..BODIES {
        let payer = payer.clone();
        slow.spawn(async move { ("body", http2_trickled_body(port, payer).await) });
    }
    let mut answers = 0;
    while !slow.is_empty() {
        assert_eq!(
            http2_health(port).await,
            200,
            "served beside the slow streams"
        );
        answers += 1;
        while let Some(done) = slow.try_join_next() {
            let (kind, trickled) = done.unwrap();
            let trickled = trickled
                .unwrap_or_else(|| panic!("an HTTP/2 {kind} was never cut ({MOST_TRICKLES} s)"));
            // Cut by its deadline (3 s), not by a protocol error at its first byte.
            assert!((2..MOST_TRICKLES).contains(&trickled), "{kind}: {trickled}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answers > 0);
    let (heads, bodies) = deadline_cuts(api).await;
    assert_eq!(heads, HEADS as f64);
    assert_eq!(bodies, BODIES as f64);
}
