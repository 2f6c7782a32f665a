//! HTTP client of the delivery partner API (see docs/partner-contract.md).
//!
//! The line between retryable and final is drawn here, where the failure happens: transport
//! errors, timeouts, 408, 429 and 5xx are retryable `PartnerError`s and count against the
//! circuit breaker; any other 4xx is the partner's business answer (an outcome, not an error).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use delivery_workflows::activities::{
    CancelPickupOutcome, CancelPickupRequest, PickupOutcome, PickupRequest,
};
use reqwest::StatusCode;
use serde::Deserialize;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::breaker::{BreakerConfig, CircuitBreaker, CircuitOpen};
use crate::metrics::PartnerMetrics;

#[derive(Debug, Clone)]
pub struct PartnerConfig {
    /// The partner's id: the one its webhooks are signed for (`/partner-webhooks/{id}`) and its
    /// tokens carry as subject. An order binds to it when the partner accepts the pickup.
    pub partner_id: String,
    /// Base URL, e.g. `http://127.0.0.1:8090`.
    pub base_url: String,
    /// Bound on one HTTP call, connect included.
    pub request_timeout: Duration,
    pub breaker: BreakerConfig,
}

impl PartnerConfig {
    pub fn new(partner_id: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            partner_id: partner_id.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            request_timeout: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
        }
    }
}

/// A failed partner call worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    #[error("partner request failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("partner answered {status}: {body}")]
    Server { status: StatusCode, body: String },
    #[error("partner answered {status} with a body that does not parse: {body}")]
    BadAnswer { status: StatusCode, body: String },
    /// 401/403: our credentials or account at the partner, not the order. Retried (it works
    /// again once the credentials are fixed), counted as `auth_error` and alerted on, never
    /// turned into a refusal of the delivery.
    #[error("the partner refused our credentials ({status}): {body}")]
    Unauthorized { status: StatusCode, body: String },
}

pub struct PartnerClient {
    partner_id: String,
    http: reqwest::Client,
    base_url: String,
    breaker: CircuitBreaker,
    metrics: PartnerMetrics,
}

#[derive(Deserialize)]
struct PickupAccepted {
    pickup_id: String,
}

#[derive(Deserialize)]
struct PartnerProblem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl PartnerClient {
    pub fn new(config: PartnerConfig, metrics: PartnerMetrics) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(3)))
            .build()?;
        Ok(Self {
            http,
            partner_id: config.partner_id,
            base_url: config.base_url,
            breaker: CircuitBreaker::new(config.breaker),
            metrics,
        })
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// `POST /v1/pickups`, idempotent on the delivery order id.
    pub async fn request_pickup(
        &self,
        request: &PickupRequest,
    ) -> Result<PickupOutcome, PartnerError> {
        let url = format!("{}/v1/pickups", self.base_url);
        let call = self
            .http
            .post(url)
            .header("Idempotency-Key", &request.delivery_order_id)
            .json(request);
        let (status, body) = self.send("request_pickup", call).await?;
        if status.is_success() {
            let accepted: PickupAccepted =
                serde_json::from_str(&body).map_err(|_| PartnerError::BadAnswer {
                    status,
                    body: partner_said(&body),
                })?;
            if let Err(message) = usable_pickup_id(&accepted.pickup_id) {
                // Accepted under an id we could never name it by again (to cancel it, or to
                // match the partner's callbacks): as good as a refusal, and said so.
                self.count("request_pickup", "rejected");
                return Ok(PickupOutcome::Rejected {
                    code: "INVALID_PICKUP_ID".into(),
                    message,
                });
            }
            self.count("request_pickup", "ok");
            return Ok(PickupOutcome::Accepted {
                pickup_id: accepted.pickup_id,
                partner_id: Some(self.partner_id.clone()),
            });
        }
        let problem: PartnerProblem = serde_json::from_str(&body).unwrap_or(PartnerProblem {
            code: None,
            message: None,
        });
        self.count("request_pickup", "rejected");
        Ok(PickupOutcome::Rejected {
            code: problem
                .code
                .unwrap_or_else(|| format!("HTTP_{}", status.as_u16())),
            message: problem
                .message
                .map(|m| clip(&m))
                .unwrap_or_else(|| partner_said(&body)),
        })
    }

    /// `POST /v1/pickups/{id}/cancel`.
    pub async fn cancel_pickup(
        &self,
        request: &CancelPickupRequest,
    ) -> Result<CancelPickupOutcome, PartnerError> {
        let call = self
            .http
            .post(cancel_url(&self.base_url, &request.pickup_id))
            .json(&serde_json::json!({ "reason": request.reason }));
        let (status, body) = self.send("cancel_pickup", call).await?;
        let outcome = match status {
            s if s.is_success() => CancelPickupOutcome::Cancelled,
            StatusCode::NOT_FOUND => CancelPickupOutcome::Unknown,
            StatusCode::CONFLICT => CancelPickupOutcome::AlreadyCompleted,
            status => {
                self.count("cancel_pickup", "error");
                return Err(PartnerError::BadAnswer {
                    status,
                    body: partner_said(&body),
                });
            }
        };
        self.count("cancel_pickup", "ok");
        Ok(outcome)
    }

    /// Sends through the breaker; returns status and body of any non-retryable answer.
    async fn send(
        &self,
        operation: &'static str,
        call: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, String), PartnerError> {
        // Held across the call: if this future is dropped mid-call, the permit gives the
        // breaker its trial back.
        let _permit = match self.breaker.acquire() {
            Ok(permit) => permit,
            Err(open) => {
                self.count(operation, "circuit_open");
                return Err(open.into());
            }
        };
        let started = Instant::now();
        // A client span for the call (a child of the activity's span when traces are on), its
        // context sent as W3C `traceparent` so the partner can continue the trace.
        let span = tracing::info_span!(
            "partner call",
            otel.name = %format!("partner {operation}"),
            otel.kind = "client",
            operation,
            status = tracing::field::Empty,
        );
        let call = with_trace_context(call, &span);
        let result = async {
            let response = call.send().await.map_err(PartnerError::Transport)?;
            tracing::Span::current().record("status", response.status().as_u16());
            let status = response.status();
            let body = response.text().await.map_err(PartnerError::Transport)?;
            if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                return Err(PartnerError::Server {
                    status,
                    body: partner_said(&body),
                });
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(PartnerError::Unauthorized {
                    status,
                    body: partner_said(&body),
                });
            }
            Ok((status, body))
        }
        .instrument(span)
        .await;
        self.metrics
            .latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.breaker.on_success(),
            // The partner is up and answering: no reason to open the circuit for everyone.
            Err(PartnerError::Unauthorized { .. }) => {
                self.breaker.on_success();
                self.count(operation, "auth_error");
            }
            Err(_) => {
                self.breaker.on_failure();
                self.count(operation, "error");
            }
        }
        self.metrics
            .circuit_open
            .set(i64::from(self.breaker.is_open()));
        result
    }

    fn count(&self, operation: &str, outcome: &str) {
        self.metrics
            .requests
            .with_label_values(&[operation, outcome])
            .inc();
    }
}

/// The request with the span's trace context in its headers (`traceparent`; nothing when traces
/// are off, as the global propagator is then a no-op).
fn with_trace_context(
    call: reqwest::RequestBuilder,
    span: &tracing::Span,
) -> reqwest::RequestBuilder {
    let mut headers = HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers)
    });
    headers
        .into_iter()
        .fold(call, |call, (name, value)| call.header(name, value))
}

/// `POST /v1/pickups/{id}/cancel` at `base_url`. The pickup id comes from the partner: one
/// escaped path segment, never a path of its own.
fn cancel_url(base_url: &str, pickup_id: &str) -> String {
    format!(
        "{base_url}/v1/pickups/{}/cancel",
        url::form_urlencoded::byte_serialize(pickup_id.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    )
}

/// Partner bodies end up in errors and history: keep them short.
/// A pickup id the partner gave is kept and sent back as one URL path segment: the same
/// characters as any reference, and not a dot segment (`.`/`..`), which a URL resolves away
/// (escaping does not help: `%2E%2E` is resolved too).
fn usable_pickup_id(id: &str) -> Result<(), String> {
    delivery_workflows::validation::check_ref_id("pickup_id", id)?;
    if id.bytes().all(|b| b == b'.') {
        return Err(format!("pickup_id may not be a dot segment, got {id:?}"));
    }
    Ok(())
}

/// What of a partner's error body may be kept: its `{code, message}` as the partner contract
/// words them, else only its size. Error messages of activities are stored in clear in the
/// order's workflow history, so a body that echoes the request (the recipient's address and
/// phone) or is some proxy's HTML page is never quoted.
fn partner_said(body: &str) -> String {
    let problem = serde_json::from_str::<PartnerProblem>(body).ok();
    match problem {
        Some(PartnerProblem {
            code: Some(code),
            message,
        }) => clip(&match message {
            Some(message) => format!("{code}: {message}"),
            None => code,
        }),
        Some(PartnerProblem {
            code: None,
            message: Some(message),
        }) => clip(&message),
        _ => format!("a body of {} bytes, not shown", body.len()),
    }
}

fn clip(body: &str) -> String {
    const MAX: usize = 500;
    if body.len() <= MAX {
        body.to_owned()
    } else {
        let cut = (0..=MAX)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &body[..cut])
    }
}

#[cfg(test)]
mod tests {
    use super::{cancel_url, partner_said, usable_pickup_id};

    #[test]
    fn only_the_contracts_words_of_an_error_body_are_kept() {
        assert_eq!(
            partner_said(r#"{"code":"OUTAGE","message":"simulated partner outage"}"#),
            "OUTAGE: simulated partner outage"
        );
        assert_eq!(partner_said(r#"{"message":"try later"}"#), "try later");
        for echoed in [
            r#"{"error":"bad","request":{"shipping_address":{"line1":"1 Rue de Rivoli","phone":"+33 6 12"}}}"#,
            "<html><body>502 Bad Gateway for 1 Rue de Rivoli</body></html>",
            "",
        ] {
            let kept = partner_said(echoed);
            assert!(!kept.contains("Rivoli") && !kept.contains("+33"), "{kept}");
            assert_eq!(kept, format!("a body of {} bytes, not shown", echoed.len()));
        }
    }

    #[test]
    fn a_pickup_id_is_one_escaped_segment_of_the_cancel_url() {
        for (pickup_id, path) in [
            ("PK-1", "/v1/pickups/PK-1/cancel"),
            (
                "../../_sim/faults",
                "/v1/pickups/..%2F..%2F_sim%2Ffaults/cancel",
            ),
            ("pk 1/../x", "/v1/pickups/pk%201%2F..%2Fx/cancel"),
            (
                "pk?status=500#f",
                "/v1/pickups/pk%3Fstatus%3D500%23f/cancel",
            ),
        ] {
            let url = cancel_url("http://partner.test:9", pickup_id);
            // As the HTTP client will send it, after its own parsing and normalisation.
            let parsed = url::Url::parse(&url).expect("a valid URL");
            assert_eq!(parsed.path(), path, "{pickup_id}");
            assert_eq!(parsed.query(), None, "{pickup_id}");
            assert_eq!(parsed.fragment(), None, "{pickup_id}");
        }
    }

    #[test]
    fn pickup_ids_are_single_path_segments() {
        for good in ["PK-1", "sim:0196a3b0", "a.b_c-d", "..x"] {
            assert!(usable_pickup_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a/b",
            "../cancel",
            "a b",
            "x?y=1",
            "%2E%2E",
        ] {
            assert!(usable_pickup_id(bad).is_err(), "{bad:?}");
        }
        assert!(usable_pickup_id(&"x".repeat(129)).is_err());
    }
}
