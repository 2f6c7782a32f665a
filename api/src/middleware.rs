//! Around every request: ids, a log span, rate limiting per caller, the body size limit,
//! problem+json for every error, metrics.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use poem::http::StatusCode;
use poem::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::Caller;
use crate::problem::{ApiError, from_poem_error};
use crate::request_id::{self, REQUEST_ID};
use crate::route_table::{RouteTable, UNMATCHED};
use crate::state::AppState;

/// Routes probes and scrapers use; never rate limited.
const UNLIMITED: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub async fn around<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let state = req
        .data::<Arc<AppState>>()
        .cloned()
        .expect("the app state is attached outside this middleware");
    let routes = req
        .data::<Arc<RouteTable>>()
        .cloned()
        .expect("the route table is attached outside this middleware");
    let method = req.method().to_string();
    // The template the path matches names the request everywhere: metrics, rate limits, the log
    // span and the trace's span name, so no id or made-up path becomes a series or a span
    // name. A path that matches none is `unmatched`; the log line alone keeps the path itself
    // (cut short), to tell what was asked.
    let path = req.uri().path().to_owned();
    let route = routes.label(&path).to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        %method,
        %route,
        path = tracing::field::Empty,
        request_id = tracing::field::Empty,
        correlation_id = tracing::field::Empty,
        delivery_order_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    // The request's span continues the caller's trace (W3C `traceparent`); its trace id is the
    // request id unless the caller names its own.
    if route == UNMATCHED {
        span.record("path", cut_short(&path, UNMATCHED_PATH_CHARS));
    }
    let caller_trace = request_id::caller_trace(req.headers());
    let _ = span.set_parent(caller_trace.clone());
    let ids = request_id::assign(&req, request_id::trace_id(&span.context(), &caller_trace));
    span.record("request_id", ids.request_id.as_str());
    span.record("correlation_id", ids.correlation_id.as_str());
    req.extensions_mut().insert(ids.clone());
    // Every line of the request names the order it is about (when its path has one).
    if let Some(order) = routes.order_id(&path) {
        span.record("delivery_order_id", order);
    }
    let started = Instant::now();
    let response = request_id::scope(
        ids.request_id.clone(),
        async {
            let caller = crate::auth::check_request(&state.tokens, &mut req);
            if let Some(limited) = rate_limit(&state, &req, &route, caller.as_ref()) {
                return limited;
            }
            if let Err(too_large) = limit_body(&mut req, state.config.max_body_bytes).await {
                return too_large;
            }
            match next.call(req).await {
                Ok(response) => response.into_response(),
                Err(error) => error_response(error),
            }
        }
        .instrument(span.clone()),
    )
    .await;
    let mut response = response;
    let status = response.status();
    span.record("status", status.as_u16());
    state
        .metrics
        .requests
        .with_label_values(&[&method, &route, status.as_str()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    let server_error_kind = if status.is_server_error() {
        let kind = problem_code(&mut response).await;
        state
            .metrics
            .server_errors
            .with_label_values(&[&kind])
            .inc();
        Some(kind)
    } else {
        None
    };
    span.in_scope(|| {
        if let Some(kind) = server_error_kind {
            // The access line; the cause was logged once where the error was raised.
            tracing::warn!(
                status = status.as_u16(),
                kind,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request failed"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request"
            );
        }
    });
    if let Ok(value) = ids.request_id.parse() {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Longest part of an unknown path the log line keeps.
const UNMATCHED_PATH_CHARS: usize = 200;

/// `text` up to `max` characters, with `…` when cut.
fn cut_short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The code of a problem+json answer (the last segment of its `type`), read from the body and
/// put back. An answer in another shape (the compatible API's `{detail}`) is classed by its
/// status: every 503 of the gateway is a dependency that cannot serve; anything else `unknown`.
async fn problem_code(response: &mut Response) -> String {
    let status = response.status();
    let body = response.take_body().into_vec().await.unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|doc| {
            doc.get("type")
                .and_then(|t| t.as_str())
                .and_then(|t| t.rsplit('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            if status == poem::http::StatusCode::SERVICE_UNAVAILABLE {
                "dependency-unavailable".to_owned()
            } else {
                "unknown".to_owned()
            }
        });
    response.set_body(body);
    code
}

/// A response for an error raised by the framework or a handler; already problem+json when it
/// comes from the typed API.
fn error_response(error: poem::Error) -> Response {
    if error.is::<poem_openapi::error::AuthorizationError>() {
        // Raised before the checker runs: no or a malformed Authorization header.
        return ApiError::unauthorized("this needs a bearer token: Authorization: Bearer <JWT>")
            .into_response();
    }
    let text = error.to_string();
    let status = error.status();
    let response = error.into_response();
    // Typed answers (problem+json, or the compatible API's `{detail}`) pass as they are; the
    // framework's own plain-text errors become problems.
    let typed = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| !v.as_bytes().starts_with(b"text/plain"));
    if typed {
        response
    } else {
        from_poem_error(status, &text)
    }
}

fn rate_limit(
    state: &AppState,
    req: &Request,
    route: &str,
    caller: Option<&Caller>,
) -> Option<Response> {
    if UNLIMITED.contains(&route) || is_partner_webhook(req, route) {
        return None;
    }
    charge(state, &caller_key(req, caller))
        .err()
        .map(IntoResponse::into_response)
}

/// A partner webhook is charged by its handler, once it knows who is asking: to the partner after
/// its signature checked out, to the sender's address otherwise. So requests without the secret
/// can never spend a partner's allowance, whichever address they come from (behind a load
/// balancer, every partner and every stranger share one). Only the webhook itself: any other
/// method on its path, or any other path, is charged here like every request.
fn is_partner_webhook(req: &Request, route: &str) -> bool {
    route == crate::route_table::WEBHOOK_ROUTE && req.method() == poem::http::Method::POST
}

/// Takes one request from `key`'s allowance (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`); 429
/// with `Retry-After` once it is spent.
pub(crate) fn charge(state: &AppState, key: &str) -> Result<(), ApiError> {
    state
        .limiter
        .check_key(&key.to_owned())
        .map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::info!(caller = %key, retry_after = seconds, "rate limited");
            ApiError::too_many_requests(seconds.max(1))
        })
}

/// The client's address, as this gateway sees it.
pub(crate) fn peer_ip(req: &Request) -> String {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// Who is asking: the verified token subject, else the client address. An invalid token never
/// picks someone else's bucket.
fn caller_key(req: &Request, caller: Option<&Caller>) -> String {
    match caller {
        Some(caller) => format!("sub:{}", caller.sub),
        None => format!("ip:{}", peer_ip(req)),
    }
}

/// Reads the body up to `max` bytes; a larger one is refused with 413 before it is parsed.
async fn limit_body(req: &mut Request, max: usize) -> Result<(), Response> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut stream = req.take_body().into_bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            from_poem_error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    req.set_body(Body::from(body));
    Ok(())
}

/// 413, closing the connection: the rest of the body is never read, so the connection cannot
/// carry another request.
fn too_large() -> Response {
    let mut response = from_poem_error(StatusCode::PAYLOAD_TOO_LARGE, "");
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    response
}
