//! Every error the gateway answers is `application/problem+json` (RFC 9457): a stable `type`, a
//! `title`, the `status`, a `detail` that says what was wrong, and extension members where a
//! client can act on them (`current_state`, `allowed_events`, `current_version`, ...). Internal
//! error text never reaches a client: it is logged once, with the request id, and the client gets
//! that id to quote.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Map, Value};

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://delivery.example/problems/";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Problem {
    /// A URI naming the kind of problem; stable, safe to switch on.
    #[oai(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What was wrong with this request, in words.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// The request this answers (also in the `X-Request-Id` header and the gateway's logs).
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// Members a client can act on: `current_state`, `allowed_events`, `current_version`, ...
    #[oai(flatten)]
    pub extensions: ProblemExtensions,
}

/// Extension members of a problem; only the ones that apply are present.
#[derive(Debug, Clone, Default, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProblemExtensions {
    #[oai(skip_serializing_if_is_none)]
    pub current_state: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub allowed_events: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    pub current_version: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    pub min_version: Option<u64>,
    /// Who may send the refused event.
    #[oai(skip_serializing_if_is_none)]
    pub allowed_senders: Option<Vec<String>>,
    /// For readiness: which dependency is down and why.
    #[oai(skip_serializing_if_is_none)]
    pub checks: Option<Any<Map<String, Value>>>,
    #[oai(skip_serializing_if_is_none)]
    pub retry_after_seconds: Option<u64>,
    /// The position of the event a batch failed on (0-based).
    #[oai(skip_serializing_if_is_none)]
    pub failed_event_index: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    pub delivery_order_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub batch_id: Option<String>,
    /// The event id the gateway sent to the delivery order (the caller's, or the one it made
    /// up): a retry under this id is answered with the event's outcome, never applied twice.
    #[oai(skip_serializing_if_is_none)]
    pub event_id: Option<String>,
}

/// The errors of the gateway's HTTP boundary.
#[derive(Debug, Clone, ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed: syntax, types, unknown fields, ids in the wrong format.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No or invalid bearer token / webhook signature.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// The caller's roles do not allow this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Unknown, or not visible to this caller.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Not allowed in the current state, or a reused id with different content.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than `MAX_BODY_BYTES` (the connection is closed after this answer).
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// Well-formed, but the content is not valid for this operation.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many requests from this caller.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// A dependency (Temporal, PostgreSQL, Redis) cannot serve the request now.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
    Problem {
        problem_type: format!("{TYPE_BASE}{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: Some(detail.into()),
        request_id: crate::request_id::current(),
        extensions: ProblemExtensions::default(),
    }
}

fn bad_request(error: poem::Error) -> ApiError {
    ApiError::bad_request("malformed-request", error.to_string())
}

impl ApiError {
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::BadRequest(Json(problem(StatusCode::BAD_REQUEST, code, detail)))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(
            Json(problem(StatusCode::UNAUTHORIZED, "unauthorized", detail)),
            Some("Bearer".into()),
        )
    }

    pub fn bad_signature(detail: impl Into<String>) -> Self {
        Self::Unauthorized(
            Json(problem(StatusCode::UNAUTHORIZED, "bad-signature", detail)),
            None,
        )
    }

    /// A partner callback whose exact signature was accepted before: a capture being replayed
    /// (a partner that retries signs again, with a new timestamp).
    pub fn replayed_webhook() -> Self {
        Self::Unauthorized(
            Json(problem(
                StatusCode::UNAUTHORIZED,
                "replayed-webhook",
                "this signature was already used; sign each attempt anew",
            )),
            None,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(Json(problem(StatusCode::FORBIDDEN, "forbidden", detail)))
    }

    pub fn forbidden_sender(detail: impl Into<String>, senders: Vec<String>) -> Self {
        let mut p = problem(StatusCode::FORBIDDEN, "forbidden-actor", detail);
        p.extensions.allowed_senders = Some(senders);
        Self::Forbidden(Json(p))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(Json(problem(StatusCode::NOT_FOUND, "not-found", detail)))
    }

    pub fn delivery_order_not_found(id: &str) -> Self {
        Self::not_found(format!("no delivery order {id}"))
    }

    pub fn invalid_transition(
        detail: impl Into<String>,
        current_state: &str,
        allowed: Vec<String>,
    ) -> Self {
        let mut p = problem(StatusCode::CONFLICT, "invalid-transition", detail);
        p.extensions.current_state = Some(current_state.to_owned());
        p.extensions.allowed_events = Some(allowed);
        Self::Conflict(Json(p))
    }

    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::Conflict(Json(problem(StatusCode::CONFLICT, code, detail)))
    }

    pub fn projection_behind(min_version: u64, current: Option<u64>, waited_ms: u128) -> Self {
        let where_it_is = match current {
            Some(v) => format!("it is at version {v}"),
            None => "it does not hold this delivery order yet".to_owned(),
        };
        let mut p = problem(
            StatusCode::CONFLICT,
            "projection-behind",
            format!(
                "the read model has not reached version {min_version} after waiting {waited_ms} ms; {where_it_is}. Retry later."
            ),
        );
        p.extensions.min_version = Some(min_version);
        p.extensions.current_version = current;
        p.extensions.retry_after_seconds = Some(1);
        Self::Conflict(Json(p))
    }

    pub fn batch_rolled_back(index: usize, order: &str, batch_id: &str, reason: &str) -> Self {
        let mut p = problem(
            StatusCode::CONFLICT,
            "batch-rolled-back",
            format!(
                "event {index} of the batch cannot apply to delivery order {order}: {reason}; nothing was applied"
            ),
        );
        p.extensions.failed_event_index = Some(index as u64);
        p.extensions.delivery_order_id = Some(order.to_owned());
        p.extensions.batch_id = Some(batch_id.to_owned());
        Self::Conflict(Json(p))
    }

    /// An answer the workflow engine did not give in time for a command that may still take
    /// effect (Temporal keeps an admitted update and applies it once a worker takes the order's
    /// next task): names `event_id` and says how a retry converges on it.
    pub fn undecided_event(event_id: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, event_id, "the workflow engine did not answer an event in time");
        let mut p = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            format!(
                "the workflow engine did not answer in time; the event may still be applied. \
                 Retry with event_id {event_id}: a retry is answered with the event's outcome \
                 and never applies it twice"
            ),
        );
        p.extensions.event_id = Some(event_id.to_owned());
        p.extensions.retry_after_seconds = Some(1);
        Self::Unavailable(Json(p), 1)
    }

    /// A batch the workflow engine did not finish in time: it may still commit or roll back.
    /// Names the batch; with an `Idempotency-Key` a retry joins it and gets its outcome, without
    /// one a retry would start another batch, so the answer says to read the orders instead.
    pub fn undecided_batch(batch_id: &str, joinable: bool, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, batch_id, "the batch did not finish in time");
        let next = if joinable {
            "retry with the same Idempotency-Key: the retry joins this batch and answers its outcome"
        } else {
            "this request carried no Idempotency-Key, so a retry starts another batch; read the \
             delivery orders to learn this one's outcome, and send an Idempotency-Key next time"
        };
        let mut p = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            format!(
                "the batch did not finish in time; it may still commit or roll back as a whole. {next}"
            ),
        );
        p.extensions.batch_id = Some(batch_id.to_owned());
        p.extensions.retry_after_seconds = Some(1);
        Self::Unavailable(Json(p), 1)
    }

    /// Names the delivery order a failed creation is about: a retry of the same request (same
    /// `payment_id` or `Idempotency-Key`) finds the order if the first attempt started it.
    pub fn for_order(mut self, delivery_order_id: &str) -> Self {
        let Json(p) = self.document_mut();
        p.extensions.delivery_order_id = Some(delivery_order_id.to_owned());
        self
    }

    /// Names the batch event a refusal is about.
    pub fn with_event_index(mut self, index: usize) -> Self {
        let Json(p) = self.document_mut();
        p.extensions.failed_event_index = Some(index as u64);
        p.detail = p.detail.take().map(|d| format!("event {index}: {d}"));
        self
    }

    fn document_mut(&mut self) -> &mut Json<Problem> {
        let (Self::BadRequest(p)
        | Self::Unauthorized(p, _)
        | Self::Forbidden(p)
        | Self::NotFound(p)
        | Self::Conflict(p)
        | Self::PayloadTooLarge(p)
        | Self::UnsupportedMediaType(p)
        | Self::Unprocessable(p)
        | Self::TooManyRequests(p, _)
        | Self::Unavailable(p, _)) = self;
        p
    }

    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Self {
        Self::Unprocessable(Json(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            detail,
        )))
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        Self::rate_limited(
            format!("too many requests from this caller; retry in {retry_after} s"),
            retry_after,
        )
    }

    /// The caller has too much of one kind of work going on (waiting reads, sockets).
    pub fn too_busy(detail: impl Into<String>) -> Self {
        Self::rate_limited(detail, 1)
    }

    fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut p = problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail);
        p.extensions.retry_after_seconds = Some(retry_after);
        Self::TooManyRequests(Json(p), retry_after)
    }

    /// A passing condition of the order (a batch holds it, the partner has not confirmed the
    /// pickup yet): retry after `retry_after` seconds. Nothing failed, so nothing is logged.
    pub fn retry_later(code: &str, detail: impl Into<String>, retry_after: u64) -> Self {
        let mut p = problem(StatusCode::SERVICE_UNAVAILABLE, code, detail);
        p.extensions.retry_after_seconds = Some(retry_after);
        Self::Unavailable(Json(p), retry_after)
    }

    /// A dependency failed. `cause` is logged here, once; the client sees only `what`.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "{what}");
        Self::Unavailable(
            Json(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency-unavailable",
                format!("{what}; retry shortly"),
            )),
            1,
        )
    }

    pub fn not_ready(checks: Map<String, Value>) -> Self {
        let down: Vec<&str> = checks
            .iter()
            .filter(|(_, v)| v.get("ok") != Some(&Value::Bool(true)))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut p = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("not ready: {} down", down.join(", ")),
        );
        p.extensions.checks = Some(Any(checks));
        Self::Unavailable(Json(p), 5)
    }

    /// The problem body, whatever the status.
    fn body(&self) -> &Problem {
        let (Self::BadRequest(p)
        | Self::Unauthorized(p, _)
        | Self::Forbidden(p)
        | Self::NotFound(p)
        | Self::Conflict(p)
        | Self::PayloadTooLarge(p)
        | Self::UnsupportedMediaType(p)
        | Self::Unprocessable(p)
        | Self::TooManyRequests(p, _)
        | Self::Unavailable(p, _)) = self;
        &p.0
    }

    /// The problem's stable code: the last segment of its `type` (`invalid-transition`, ...).
    pub fn code(&self) -> &str {
        let p = self.body();
        p.problem_type
            .strip_prefix(TYPE_BASE)
            .unwrap_or(&p.problem_type)
    }

    pub fn status(&self) -> u16 {
        self.body().status
    }
}

/// A problem response for errors raised outside the typed API (unknown route, wrong method,
/// body too large, a panic caught by the server): same shape, never internal text.
pub fn from_poem_error(status: StatusCode, message: &str) -> poem::Response {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this method is not allowed on this resource".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            "the request body is larger than this gateway accepts".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "send the body as application/json".to_owned(),
        ),
        s if s.is_client_error() => ("malformed-request", message.to_owned()),
        _ => {
            tracing::error!(error = %message, "request failed");
            (
                "internal-error",
                "the request failed; quote the request id when reporting it".to_owned(),
            )
        }
    };
    problem_response(status, code, detail)
}

/// A problem response with this status, code and detail, for plain (non-OpenAPI) endpoints.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: impl Into<String>,
) -> poem::Response {
    let body = problem(status, code, detail);
    poem::Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(serde_json::to_vec(&problem_json(&body)).unwrap_or_default())
}

fn problem_json(p: &Problem) -> Value {
    use poem_openapi::types::ToJSON;
    p.to_json().unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecided_batch_names_itself_and_says_how_to_learn_its_outcome() {
        let mut joinable = ApiError::undecided_batch("b-1", true, &"timed out");
        let Json(p) = joinable.document_mut();
        assert_eq!(p.status, 503);
        assert_eq!(p.extensions.batch_id.as_deref(), Some("b-1"));
        let detail = p.detail.clone().unwrap_or_default();
        assert!(detail.contains("may still commit"), "{detail}");
        assert!(detail.contains("same Idempotency-Key"), "{detail}");

        let mut keyless = ApiError::undecided_batch("b-2", false, &"timed out");
        let Json(p) = keyless.document_mut();
        let detail = p.detail.clone().unwrap_or_default();
        assert!(detail.contains("no Idempotency-Key"), "{detail}");
        assert!(detail.contains("read the delivery orders"), "{detail}");
        assert!(matches!(keyless, ApiError::Unavailable(_, 1)));
    }
}
