//! One telemetry setup for every process: logs and, when an OTLP endpoint is configured, traces.
//!
//! Logs: `RUST_LOG` filter (default `info`), `LOG_FORMAT=json` for one JSON object a line. A JSON
//! line written inside a traced span also carries `trace_id` and `span_id`.
//!
//! Traces are off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. Then spans go to that endpoint over OTLP/HTTP with protobuf bodies (`/v1/traces` is
//! appended to the generic endpoint), in batches (`OTEL_BSP_*`). The standard variables apply:
//! `OTEL_SERVICE_NAME` (default: the binary's name), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on).
//! W3C Trace Context is the propagator; the Temporal SDK's plugin (`temporal_plugin`) carries it
//! in Temporal headers, through workflows, to activities.

use std::fmt::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use temporalio_sdk::SimplePlugin;
use temporalio_sdk::opentelemetry::{
    OpenTelemetryPlugin, WorkflowIdGenerator, WorkflowSpanProcessor,
};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Variables that turn the exporter on (the standard OTLP ones).
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Crates whose `tracing` spans become OpenTelemetry spans. Spans of libraries (the Temporal
/// SDK's own, sqlx, hyper) stay out of traces: the SDK's plugin traces Temporal itself.
const TRACED_CRATES: [&str; 6] = [
    "delivery_api",
    "delivery_worker",
    "delivery_activities",
    "delivery_platform",
    "delivery_read_model",
    "partner_sim",
];

static TRACING_ON: OnceLock<bool> = OnceLock::new();

/// What `init` set up; `shutdown` exports the spans still waiting in the batch.
#[must_use = "keep it until the process ends and call shutdown to export the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still batched and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The batch processor's own thread does the export and is waited for: off the
            // async workers.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = done {
                eprintln!("exporting the last spans failed: {error}");
            }
        }
    }
}

/// Sets up logs, and traces when an OTLP endpoint is configured. `service` names the process in
/// traces unless `OTEL_SERVICE_NAME` does. A second call (tests building several workers in one
/// process) keeps the first setup.
pub fn init(service: &'static str) -> Telemetry {
    let lookup = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let provider = if exporter_configured(|key| std::env::var(key).ok()) {
        match tracer_provider(service, lookup("OTEL_SERVICE_NAME").is_none()) {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Traces are an aid, not a dependency: the process runs without them.
                eprintln!("traces are off: the OTLP exporter could not be built: {error}");
                None
            }
        }
    } else {
        None
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = lookup("LOG_FORMAT").is_some_and(|f| f == "json");
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_target(false),
            ))
            .boxed()
    } else {
        fmt.boxed()
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("delivery"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                TRACED_CRATES
                    .iter()
                    .any(|name| meta.target().starts_with(name))
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        // A second init keeps the first subscriber, and with it the first exporter.
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry { provider: None };
    }
    if let Some(provider) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    let _ = TRACING_ON.set(provider.is_some());
    Telemetry { provider }
}

/// Whether the environment (read by `var`) names an OTLP endpoint; a blank value names none,
/// so compose's `${OTEL_EXPORTER_OTLP_ENDPOINT:-}` keeps traces off.
fn exporter_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    ENDPOINT_VARIABLES
        .iter()
        .any(|key| var(key).is_some_and(|v| !v.trim().is_empty()))
}

/// Whether this process exports traces (after `init`).
pub fn tracing_on() -> bool {
    TRACING_ON.get().copied().unwrap_or(false)
}

/// The Temporal SDK's OpenTelemetry plugin when traces are on: spans for starts, updates, signals
/// and queries on the client side, for workflow runs, handlers and activity executions on the
/// worker side, with the context carried in the `_tracer-data` Temporal header (the cross-SDK
/// one). It uses the global tracer set by `init`, whose ids inside a workflow come from the
/// workflow's replay-safe randomness.
pub fn temporal_plugin() -> Option<SimplePlugin> {
    tracing_on().then(|| OpenTelemetryPlugin::builder().build())
}

fn tracer_provider(
    service: &'static str,
    name_the_service: bool,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient::new())
        .build()?;
    let mut resource = Resource::builder();
    if name_the_service {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        // Spans a workflow's code opens while it replays were exported when it first ran.
        .with_span_processor(WorkflowSpanProcessor::new(
            BatchSpanProcessor::builder(exporter).build(),
        ))
        // Workflow spans get the same ids when replayed (children point at the first run's).
        .with_id_generator(WorkflowIdGenerator::default())
        .with_resource(resource.build())
        .build())
}

/// The exporter's HTTP client: the service's reqwest, run on the process's Tokio runtime. The
/// batch processor exports from a thread of its own, so each call is spawned onto the runtime
/// and awaited from there.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

impl ExportClient {
    fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let call = async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?.error_for_status()?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut answer = Response::builder()
                .status(status)
                .body(response.bytes().await?)?;
            *answer.headers_mut() = headers;
            Ok::<_, HttpError>(answer)
        };
        match &self.runtime {
            Some(runtime) => runtime.spawn(call).await?,
            None => Err("no Tokio runtime to export spans on".into()),
        }
    }
}

/// The JSON line of the inner format with the current trace and span ids added, when the event
/// happens inside a traced span (the OpenTelemetry context a span activates on entry, or the one
/// the Temporal SDK's plugin runs an activity in).
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_ids(&line, &trace_id, &span_id))
    }
}

/// The trace and span ids of the current OpenTelemetry context, if it holds a valid span.
pub fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// `{...}` + newline → `{...,"trace_id":..,"span_id":..}` + newline. The JSON format writes one
/// object a line (never empty: it always has a timestamp and a level).
fn with_ids(line: &str, trace_id: &str, span_id: &str) -> String {
    let body = line.trim_end_matches('\n');
    let Some(head) = body.strip_suffix('}') else {
        return line.to_owned();
    };
    let mut out = String::with_capacity(line.len() + 80);
    out.push_str(head);
    let _ = write!(
        out,
        ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
    );
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_off_unless_an_endpoint_is_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!exporter_configured(env(&[])));
        assert!(!exporter_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(!exporter_configured(env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(exporter_configured(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4318"
        )])));
        assert!(exporter_configured(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces"
        )])));
    }

    #[test]
    fn ids_go_inside_the_json_object() {
        let line = "{\"timestamp\":\"t\",\"level\":\"INFO\",\"message\":\"m\"}\n";
        let out = with_ids(line, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let doc: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(doc["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(doc["span_id"], "00f067aa0ba902b7");
        assert_eq!(doc["message"], "m");
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn no_ids_outside_a_traced_span() {
        assert_eq!(current_ids(), None);
    }
}
