//! Request and correlation ids. Every request gets an id, answered in `X-Request-Id`, put on the
//! request's log span and in every problem document:
//! - the caller's `X-Request-Id` when it is well-formed (the caller's own id wins);
//! - else the request's trace id (32 lowercase hex digits): the trace the request's span belongs
//!   to when traces are exported, which continues the caller's W3C `traceparent` when it sent
//!   one; with traces off, the `traceparent`'s trace id all the same;
//! - else a new random id of the same form.
//!
//! So, unless a caller names its own id, the `request_id` of a problem is the trace id to look
//! up in the trace backend and in the JSON logs (`trace_id`). The correlation id
//! (`X-Correlation-Id`, else the request id) goes with each event into the workflow and the audit
//! log.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use poem::Request;
use poem::http::HeaderMap;

pub const REQUEST_ID: &str = "x-request-id";
pub const CORRELATION_ID: &str = "x-correlation-id";

/// The ids of the request being served, kept in its extensions.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub correlation_id: String,
}

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task serves, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` as part of request `id`.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

fn header_id(req: &Request, name: &str) -> Option<String> {
    req.header(name)
        .filter(|v| delivery_workflows::validation::check_ref_id(name, v).is_ok())
        .map(str::to_owned)
}

/// The trace context a caller sent in W3C `traceparent` (empty when it sent none, or a
/// malformed one).
pub fn caller_trace(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// The request's trace id: its span's when the span is traced, else the caller's.
pub fn trace_id(span: &opentelemetry::Context, caller: &opentelemetry::Context) -> Option<String> {
    [span, caller].into_iter().find_map(|context| {
        let span = context.span();
        let ids = span.span_context();
        ids.is_valid().then(|| ids.trace_id().to_string())
    })
}

/// The request's ids; `trace_id` is the request's trace id when it has one.
pub fn assign(req: &Request, trace_id: Option<String>) -> RequestIds {
    let request_id = header_id(req, REQUEST_ID)
        .or(trace_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let correlation_id = header_id(req, CORRELATION_ID).unwrap_or_else(|| request_id.clone());
    RequestIds {
        request_id,
        correlation_id,
    }
}

/// The correlation id the caller sent, if it sent a well-formed one.
pub fn explicit_correlation_id(req: &Request) -> Option<String> {
    header_id(req, CORRELATION_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.finish()
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_callers_trace_id_is_the_request_id() {
        let req = request(&[("traceparent", TRACEPARENT)]);
        let caller = caller_trace(req.headers());
        let trace = trace_id(&opentelemetry::Context::new(), &caller);
        assert_eq!(trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let ids = assign(&req, trace);
        assert_eq!(ids.request_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ids.correlation_id, ids.request_id);
    }

    #[test]
    fn a_callers_request_id_wins_over_the_trace_id() {
        let req = request(&[("traceparent", TRACEPARENT), (REQUEST_ID, "req-7")]);
        let trace = trace_id(&opentelemetry::Context::new(), &caller_trace(req.headers()));
        assert_eq!(assign(&req, trace).request_id, "req-7");
    }

    #[test]
    fn without_a_trace_the_id_has_the_form_of_one() {
        let req = request(&[("traceparent", "00-not-a-trace")]);
        let trace = trace_id(&opentelemetry::Context::new(), &caller_trace(req.headers()));
        assert_eq!(trace, None);
        let id = assign(&req, trace).request_id;
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
