//! The gateway (`delivery-api`) as a real process in front of a test stack, and a small HTTP
//! client that speaks to it with minted tokens.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use delivery_api::auth::{Role, TokenKeys};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::processes::{binary, log_file, log_path, wait_http_ok};
use crate::temporal::TemporalServer;

/// The HS256 key of the test gateways.
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The shared secret of the simulator's signed webhooks.
pub const TEST_PARTNER_SECRET: &str = "test-partner-secret";

pub struct GatewayProcess {
    child: Child,
    /// A Temporal client beside the gateway, to wait for what the API does not show.
    temporal: temporalio_client::Client,
    pub url: String,
    pub port: u16,
    http: reqwest::Client,
    keys: TokenKeys,
    env: Vec<(String, String)>,
    /// The second each webhook body was last signed in, so a resend is signed anew as partners
    /// must (the gateway refuses an exact signature it has seen).
    signed: std::sync::Mutex<std::collections::HashMap<Vec<u8>, u64>>,
}

/// One HTTP answer: status, headers, body as JSON (`Value::Null` when empty or not JSON) and
/// the raw text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a problem+json answer with `status` and returns its body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "not problem+json: {} {}",
            self.content_type(),
            self.text
        );
        assert_eq!(self.json["status"], status, "{}", self.text);
        assert!(
            self.json["type"].is_string() && self.json["detail"].is_string(),
            "{}",
            self.text
        );
        &self.json
    }
}

impl GatewayProcess {
    /// Starts the gateway on `port` for `task_queue`; `extra` settings win.
    pub async fn start(
        temporal: &TemporalServer,
        task_queue: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut env: Vec<(String, String)> = crate::payload_key_env();
        env.extend([
            ("API_PORT".into(), port.to_string()),
            ("TEMPORAL_ADDRESS".into(), temporal.url()),
            ("TASK_QUEUE".into(), task_queue.into()),
            (
                "DATABASE_URL".into(),
                crate::database_url().await.to_owned(),
            ),
            ("REDIS_URL".into(), crate::redis_url()),
            ("REDIS_KEY_PREFIX".into(), crate::redis_prefix().await),
            ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
            (
                "PARTNER_WEBHOOK_SECRETS".into(),
                format!("sim={TEST_PARTNER_SECRET}"),
            ),
            ("RATE_LIMIT_PER_SECOND".into(), "10000".into()),
            ("RATE_LIMIT_BURST".into(), "10000".into()),
            ("MIN_VERSION_WAIT_MS".into(), "3000".into()),
            ("RUST_LOG".into(), "info".into()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // A gateway given a certificate serves HTTPS; the tests' client then trusts the test's
        // CA (`GATEWAY_TEST_CA_FILE`, read here and not by the gateway) and nothing else.
        let setting = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let (scheme, http) = match setting("GATEWAY_TEST_CA_FILE") {
            Some(ca) => {
                let pem = std::fs::read(&ca).expect("the test CA");
                let client = reqwest::Client::builder()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
                ("https", client)
            }
            None => ("http", reqwest::Client::builder()),
        };
        let child = Self::spawn(&env, port);
        let mut gateway = Self {
            child,
            temporal: temporal.client().await,
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            http: http
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            keys: TokenKeys::new(TEST_JWT_SECRET.as_bytes()),
            env,
            signed: Default::default(),
        };
        gateway.wait_ready().await;
        gateway
    }

    fn spawn(env: &[(String, String)], port: u16) -> Child {
        Command::new(binary("delivery-api", "DELIVERY_API_BIN"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&format!("gateway-{port}")))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting delivery-api")
    }

    async fn wait_ready(&mut self) {
        wait_http_ok(
            &self.http,
            &format!("{}/healthz", self.url),
            "delivery-api",
            &mut self.child,
        )
        .await;
    }

    /// The process id (for resource figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout (rewritten by a restart).
    pub fn log(&self) -> std::path::PathBuf {
        log_path(&format!("gateway-{}", self.port))
    }

    /// Sends SIGTERM, as Kubernetes does once the pod's preStop hook ran.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "sending SIGTERM");
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops and starts the process with the same settings.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.env, self.port);
        self.wait_ready().await;
    }

    /// A token for `sub` with `roles`, valid for an hour.
    pub fn token(&self, sub: &str, roles: &[Role]) -> String {
        self.keys
            .mint(sub, roles, Duration::from_secs(3600))
            .expect("minting a token")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("gateway reachable")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(reqwest::Method::GET, path, Some(token), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// Sends raw bytes (for malformed bodies).
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.expect("gateway reachable")).await
    }

    /// A partner callback signed with `secret` now, as a partner sends each attempt.
    pub async fn webhook(&self, partner: &str, secret: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        let now = loop {
            let now = unix_now();
            let fresh = {
                let mut signed = self.signed.lock().unwrap();
                signed.insert(bytes.clone(), now) != Some(now)
            };
            if fresh {
                break now;
            }
            // The same body in the same second would carry the same signature: a replay.
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let signature = delivery_webhook_signature::sign(secret.as_bytes(), now, &bytes);
        self.signed_webhook(partner, &signature, bytes).await
    }

    /// A partner callback with exactly this `X-Partner-Signature` (or none).
    pub async fn signed_webhook(&self, partner: &str, signature: &str, body: Vec<u8>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/api/v1/partner-webhooks/{partner}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if !signature.is_empty() {
            request = request.header(delivery_webhook_signature::HEADER, signature);
        }
        answer(request.send().await.expect("gateway reachable")).await
    }
}

/// Seconds since the epoch, the unit of webhook signature timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PaymentSucceeded body with one physical book and one e-book.
pub fn payment_event(payment_id: &str, customer_id: &str) -> Value {
    serde_json::json!({
        "event_id": format!("evt-{payment_id}"),
        "payment_id": payment_id,
        "ordering_id": format!("ord-{payment_id}"),
        "customer_id": customer_id,
        "items": [
            {"sku": "bk-9780441013593", "title": "Dune", "format": "PHYSICAL", "quantity": 1},
            {"sku": "eb-9780441013593", "title": "Dune (e-book)", "format": "EBOOK", "quantity": 1}
        ],
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
            "postal_code": "SW1Y 4JH", "country": "GB", "phone": "+44 20 7946 0000"
        },
        "notes": "leave with the porter",
        "budget": 1500
    })
}

/// A payment id no other test uses.
pub fn new_payment_id() -> String {
    format!("pay-{}", uuid::Uuid::new_v4().simple())
}

impl GatewayProcess {
    /// The gateway's Prometheus exposition now.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .and_then(|r| r.error_for_status())
            .expect("the gateway's /metrics")
            .text()
            .await
            .expect("the metrics body")
    }

    /// The value of the first sample whose line starts with `name_and_labels` (a metric name, or
    /// a name with the opening of its labels); panics, showing the exposition, when there is none.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find(|line| line.starts_with(name_and_labels))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name_and_labels} not exported:\n{text}"))
    }

    /// A new payment for `customer` through the payment intake: the order's id and the 201 body.
    pub async fn pay(&self, customer: &str) -> (String, Value) {
        let payer = self.token("payments", &[Role::PaymentService]);
        let created = self
            .post(
                "/api/v1/payment-events",
                &payer,
                &payment_event(&new_payment_id(), customer),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json["delivery_order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, created.json)
    }

    /// A paid order for `customer`, once the read model holds it and the simulator (partner
    /// `sim`) accepted its pickup, so partner events may be sent; returns its id.
    pub async fn paid_order(&self, customer: &str) -> String {
        let payer = self.token("payments", &[Role::PaymentService]);
        let (id, _) = self.pay(customer).await;
        let read = self
            .projected(
                &format!("/api/v1/delivery-orders/{id}?min_version=0"),
                &payer,
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.text);
        self.pickup_confirmed(&id).await;
        id
    }

    /// A read with `min_version` that waits for the projection: the gateway waits a bounded
    /// time (MIN_VERSION_WAIT_MS, which some tests make short) and answers 409
    /// projection-behind after it; on a busy machine the projection may take longer, so that
    /// answer is read again rather than taken for the result.
    pub async fn projected(&self, path: &str, token: &str) -> Answer {
        crate::workflows::eventually(&format!("the read model to answer {path}"), || async {
            let read = self.get(path, token).await;
            let behind = read.status == 409 && read.text.contains("projection-behind");
            (!behind).then_some(read)
        })
        .await
    }

    /// Waits until the partner accepted the order's pickup; returns `(partner_id, pickup_id)`.
    pub async fn pickup_confirmed(&self, id: &str) -> (String, String) {
        let order = crate::workflows::handle(&self.temporal, id);
        crate::workflows::eventually(&format!("the pickup of {id} accepted"), || async {
            let view = crate::workflows::query_state(&order).await?;
            let partner = &view.order.partner;
            Some((partner.partner_id.clone()?, partner.pickup_id.clone()?))
        })
        .await
    }
}

/// A WebSocket to the gateway, as the tests open them.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text message on `socket` (other frames skipped); panics unless one comes
/// within `within` on a socket that stays open.
pub async fn next_socket_message(socket: &mut Socket, within: Duration) -> Value {
    use futures::StreamExt;
    loop {
        let frame = tokio::time::timeout(within, socket.next())
            .await
            .unwrap_or_else(|_| panic!("a message within {within:?}"))
            .expect("the socket stays open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("a JSON message");
        }
    }
}
