//! A span per request to the simulator. A caller that sends W3C `traceparent` (the service's
//! partner client does) gets the span as a child of its own, so a delivery's trace reaches the
//! partner. The span is exported when the process exports traces (`OTEL_EXPORTER_OTLP_ENDPOINT`).

use std::sync::Arc;

use opentelemetry_http::HeaderExtractor;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub async fn traced<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(req.headers()))
    });
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!(
        "partner request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        %method,
        %path,
        status = tracing::field::Empty,
    );
    // Without a valid `traceparent` the span starts a trace of its own.
    let _ = span.set_parent(parent);
    let response = match next.call(req).instrument(span.clone()).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    let status = response.status().as_u16();
    span.record("status", status);
    span.in_scope(|| tracing::info!(status, "request"));
    Ok(response)
}
