//! The run's HTTP client of the public API, as a careful client behaves: requests spread over both
//! gateways, a refused connection tried on the other one, a 503 / 429 / 5xx / lost answer retried
//! with the same body (and so the same `event_id` or `Idempotency-Key`) after `Retry-After`,
//! within a bounded patience. Every attempt is written to the ledger with its outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use delivery_api::auth::{Role, TokenKeys};
use delivery_tests::TEST_JWT_SECRET;
use reqwest::Method;
use serde_json::Value;

use crate::ledger::{Ledger, Outcome};

/// What a call came to.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// 2xx, with its body.
    Done(Value),
    /// A 4xx the request itself caused (409 invalid transition, 404, ...): its status.
    Refused(u16),
    /// No final answer within the patience.
    GaveUp,
}

impl Answer {
    pub(crate) fn done(&self) -> Option<&Value> {
        match self {
            Answer::Done(body) => Some(body),
            _ => None,
        }
    }
}

pub(crate) struct Api {
    pub(crate) urls: Vec<String>,
    http: reqwest::Client,
    keys: TokenKeys,
    next: AtomicUsize,
    pub(crate) ledger: Arc<Ledger>,
}

impl Api {
    pub(crate) fn new(urls: Vec<String>, ledger: Arc<Ledger>) -> Self {
        Self {
            urls,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            keys: TokenKeys::new(TEST_JWT_SECRET.as_bytes()),
            next: AtomicUsize::new(0),
            ledger,
        }
    }

    pub(crate) fn token(&self, sub: &str, role: Role) -> String {
        self.keys
            .mint(sub, &[role], Duration::from_secs(4 * 3600))
            .expect("minting a token")
    }

    /// The gateway the next request goes to.
    pub(crate) fn pick(&self) -> &str {
        &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()]
    }

    /// One attempt on one gateway: its outcome, body and `Retry-After`.
    async fn once(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (Outcome, Value, Option<Duration>) {
        let method_name = method.to_string();
        let mut request = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (outcome, body, retry_after) = match request.send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match response.text().await {
                    Ok(text) => (
                        Outcome::Status {
                            code,
                            retry_after: retry_after.is_some(),
                        },
                        serde_json::from_str(&text).unwrap_or(Value::Null),
                        retry_after,
                    ),
                    Err(_) => (Outcome::NoAnswer, Value::Null, None),
                }
            }
            Err(_) => (Outcome::NoAnswer, Value::Null, None),
        };
        self.ledger.request(endpoint(&method_name, path), outcome);
        (outcome, body, retry_after)
    }

    /// A request retried (same body) until it gets a final answer or `patience` runs out.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        patience: Duration,
    ) -> Answer {
        let started = Instant::now();
        loop {
            let base = self.pick().to_owned();
            let (outcome, answer, retry_after) = self
                .once(&base, method.clone(), path, token, body, headers)
                .await;
            let wait = match outcome {
                Outcome::Status { code, .. } if (200..300).contains(&code) => {
                    return Answer::Done(answer);
                }
                Outcome::Status { code, .. } if (400..500).contains(&code) && code != 429 => {
                    return Answer::Refused(code);
                }
                Outcome::Status { .. } => retry_after
                    .unwrap_or(Duration::from_millis(500))
                    .min(Duration::from_secs(2)),
                // The other gateway at once: this one may be gone.
                Outcome::NoAnswer => Duration::from_millis(100),
            };
            if started.elapsed() + wait > patience {
                return Answer::GaveUp;
            }
            tokio::time::sleep(wait).await;
        }
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        patience: Duration,
    ) -> Answer {
        self.call(Method::POST, path, token, Some(body), &[], patience)
            .await
    }

    /// A read, tried once on the next gateway (and once more on the other when unanswered).
    pub(crate) async fn get(&self, path: &str, token: &str) -> Option<Value> {
        for _ in 0..2 {
            let base = self.pick().to_owned();
            let (outcome, body, _) = self.once(&base, Method::GET, path, token, None, &[]).await;
            match outcome {
                Outcome::Status { code, .. } if (200..300).contains(&code) => return Some(body),
                Outcome::NoAnswer => continue,
                _ => return None,
            }
        }
        None
    }
}

/// `method path` with ids (UUIDs) replaced by `{id}` and the query left out.
fn endpoint(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let template: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if uuid::Uuid::parse_str(segment).is_ok() {
                "{id}"
            } else {
                segment
            }
        })
        .collect();
    format!("{method} {}", template.join("/"))
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_name_the_route_not_the_order() {
        assert_eq!(
            endpoint(
                "POST",
                "/api/v1/delivery-orders/0b1c2d3e-4f50-4617-8899-aabbccddeeff/events"
            ),
            "POST /api/v1/delivery-orders/{id}/events"
        );
        assert_eq!(
            endpoint(
                "GET",
                "/api/v1/delivery-orders/0b1c2d3e-4f50-4617-8899-aabbccddeeff?min_version=0"
            ),
            "GET /api/v1/delivery-orders/{id}"
        );
    }
}
