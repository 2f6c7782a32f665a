//! The simulator as a partner: its API, its fault injection, and signed webhook callbacks received
//! by a real HTTP server in the test.

use std::sync::Arc;
use std::time::Duration;

use partner_sim::{CallbackMode, Knobs, SimConfig, Simulator};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Route, Server, handler, http::StatusCode, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "test-secret";

fn knobs() -> Knobs {
    Knobs {
        pickup_delay_ms: 20,
        delivery_delay_ms: 120,
        ping_interval_ms: 30,
        failure_rate: 0.0,
        error_rate: 0.0,
        latency_ms: 0,
        auto_progress: true,
    }
}

struct Running {
    url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn start(callbacks: CallbackMode) -> Running {
    let sim = Simulator::build(SimConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        callbacks,
        knobs: knobs(),
        payload_keys: None,
        callback_retry_for: Duration::from_secs(30),
    })
    .await
    .unwrap();
    let url = sim.base_url();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sim.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Running {
        url,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

/// A webhook receiver: every verified callback body goes into the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    #[handler]
    async fn hook(
        req: &Request,
        body: Vec<u8>,
        Data(tx): Data<&Arc<mpsc::UnboundedSender<Value>>>,
    ) -> StatusCode {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if delivery_webhook_signature::verify(
            SECRET.as_bytes(),
            req.header(delivery_webhook_signature::HEADER),
            &body,
            now,
            delivery_webhook_signature::DEFAULT_TOLERANCE,
        )
        .is_err()
        {
            return StatusCode::UNAUTHORIZED;
        }
        let _ = tx.send(serde_json::from_slice(&body).unwrap());
        StatusCode::NO_CONTENT
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new().at("/hooks", post(hook)).data(Arc::new(tx));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{addr}/hooks"), rx)
}

fn pickup_body(id: &str, postal_code: &str) -> Value {
    json!({
        "delivery_order_id": id,
        "ordering_id": "ord-1",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": postal_code, "country": "GB"},
        "items": [{"sku": "isbn-1", "title": "A Book", "format": "PHYSICAL", "quantity": 1}],
    })
}

impl Running {
    async fn book(&self, id: &str, postal_code: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/pickups", self.url))
            .header("Idempotency-Key", id)
            .json(&pickup_body(id, postal_code))
            .send()
            .await
            .unwrap();
        (
            StatusCode::from_u16(r.status().as_u16()).unwrap(),
            r.json().await.unwrap_or(Value::Null),
        )
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a callback")
        .expect("open channel")
}

#[tokio::test]
async fn a_pickup_is_booked_once_and_reported_through_signed_webhooks() {
    let (hook_url, mut rx) = receiver().await;
    let sim = start(CallbackMode::Webhook {
        url: hook_url,
        secret: SECRET.into(),
    })
    .await;
    let (status, first) = sim.book("d-1", "N1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = sim.book("d-1", "N1").await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &first),
        "idempotent on the key"
    );

    let picked = next(&mut rx).await;
    assert_eq!(picked["type"], "PICKED_UP");
    assert_eq!(
        picked["event_id"],
        format!("{}:picked_up", first["pickup_id"].as_str().unwrap())
    );
    assert!(
        picked["data"]["partner_order_number"]
            .as_str()
            .unwrap()
            .starts_with("PN-")
    );
    let mut kinds = Vec::new();
    loop {
        let callback = next(&mut rx).await;
        kinds.push(callback["type"].as_str().unwrap().to_owned());
        if callback["type"] != "LOCATION" {
            assert_eq!(callback["type"], "DELIVERED");
            assert!(callback["data"]["proof"].is_object());
            break;
        }
    }
    assert!(
        kinds.len() >= 2,
        "location pings before delivery: {kinds:?}"
    );
    let (_, stats) = sim
        .send(reqwest::Method::GET, "/_sim/stats", Value::Null)
        .await;
    assert_eq!(stats["pickups_created"], 1);
    assert_eq!(stats["pickup_requests_by_key"]["d-1"], 2);
    assert!(rx.try_recv().is_err(), "callbacks sent once");
}

#[tokio::test]
async fn scenarios_script_failures_and_refusals() {
    let (hook_url, mut rx) = receiver().await;
    let sim = start(CallbackMode::Webhook {
        url: hook_url,
        secret: SECRET.into(),
    })
    .await;
    let (status, _) = sim
        .send(
            reqwest::Method::PUT,
            "/_sim/scenarios/d-fail",
            json!({"outcome": "fail", "failure_reason": "PACKAGE_LOST", "detail": "gone"}),
        )
        .await;
    assert_eq!(status, 200);
    sim.send(
        reqwest::Method::PUT,
        "/_sim/scenarios/d-reject",
        json!({"outcome": "reject"}),
    )
    .await;

    assert_eq!(sim.book("d-fail", "N1").await.0, StatusCode::CREATED);
    let failed = loop {
        let callback = next(&mut rx).await;
        if callback["type"] == "DELIVERY_FAILED" {
            break callback;
        }
    };
    assert_eq!(
        failed["data"],
        json!({"reason": "PACKAGE_LOST", "detail": "gone"})
    );

    let (status, body) = sim.book("d-reject", "N1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("UNSERVICEABLE_ADDRESS")
        )
    );
    let (status, _) = sim.book("d-zero", "00000").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = sim
        .send(
            reqwest::Method::PUT,
            "/_sim/scenarios/x",
            json!({"outcome": "explode"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_requests_are_told_what_is_wrong() {
    let sim = start(CallbackMode::None).await;
    let r = sim
        .http
        .post(format!("{}/v1/pickups", sim.url))
        .json(&pickup_body("d", "N1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Idempotency-Key");
    let r = sim
        .http
        .post(format!("{}/v1/pickups", sim.url))
        .header("Idempotency-Key", "k")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (status, body) = sim
        .send(
            reqwest::Method::PUT,
            "/_sim/config",
            json!({"pickup_delay_ms": 5, "colour": "red"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (status, body) = sim
        .send(
            reqwest::Method::PUT,
            "/_sim/config",
            json!({"failure_rate": 0.5}),
        )
        .await;
    assert_eq!(
        (
            status,
            body["failure_rate"].as_f64(),
            body["pickup_delay_ms"].as_u64()
        ),
        (200, Some(0.5), Some(20)),
        "partial update"
    );
    let (status, _) = sim
        .send(
            reqwest::Method::PUT,
            "/_sim/config",
            json!({"error_rate": 2.0}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn faults_answer_503_then_the_partner_recovers() {
    let sim = start(CallbackMode::None).await;
    sim.send(
        reqwest::Method::POST,
        "/_sim/faults",
        json!({"fail_next": 2}),
    )
    .await;
    assert_eq!(
        sim.book("d-f", "N1").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        sim.book("d-f", "N1").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(sim.book("d-f", "N1").await.0, StatusCode::CREATED);
    sim.send(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"error_rate": 1.0}),
    )
    .await;
    assert_eq!(
        sim.book("d-g", "N1").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (_, stats) = sim
        .send(reqwest::Method::GET, "/_sim/stats", Value::Null)
        .await;
    assert_eq!(stats["faults_injected"], 3);
}

#[tokio::test]
async fn a_cancelled_pickup_stops_calling_back() {
    let (hook_url, mut rx) = receiver().await;
    let sim = start(CallbackMode::Webhook {
        url: hook_url,
        secret: SECRET.into(),
    })
    .await;
    sim.send(
        reqwest::Method::PUT,
        "/_sim/config",
        json!({"pickup_delay_ms": 300}),
    )
    .await;
    let (_, pickup) = sim.book("d-c", "N1").await;
    let id = pickup["pickup_id"].as_str().unwrap();
    let (status, body) = sim
        .send(
            reqwest::Method::POST,
            &format!("/v1/pickups/{id}/cancel"),
            json!({"reason": "order cancelled"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("CANCELLED")));
    assert!(
        tokio::time::timeout(Duration::from_millis(800), rx.recv())
            .await
            .is_err(),
        "no callback after cancel"
    );
    let (status, _) = sim
        .send(
            reqwest::Method::POST,
            "/v1/pickups/pk_nope/cancel",
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = sim
        .send(
            reqwest::Method::GET,
            &format!("/v1/pickups/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("CANCELLED")));
}
