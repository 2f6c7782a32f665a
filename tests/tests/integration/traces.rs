//! Traces end to end: the gateway, the worker and the partner simulator export their spans over
//! OTLP/HTTP (protobuf) to a receiver in this test, and one delivery, from payment to
//! confirmation, must come back as one trace per request with an unbroken parent chain: the
//! gateway's request span → the Temporal start or update → the workflow's run, handlers and
//! activities → the partner call → the partner's own span. The trace id is the request id of
//! every answer (problem+json included) and is on the JSON log lines written inside the spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use delivery_api::auth::Role;
use delivery_tests::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, Server, handler, post};
use prost::Message;
use serde_json::{Value, json};

/// One span as the receiver got it; ids in lowercase hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Store = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with an `ExportTraceServiceRequest`.
struct Receiver {
    url: String,
    spans: Store,
    task: tokio::task::JoinHandle<()>,
}

#[handler]
async fn export(body: Vec<u8>, Data(store): Data<&Store>) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) else {
        return Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .finish();
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    store.lock().expect("store").extend(received);
    Response::builder()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    async fn start() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("receiver port");
        let addr = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("a socket address");
        let spans = Store::default();
        let app = Route::new()
            .at("/v1/traces", post(export))
            .data(spans.clone());
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Self {
            url: format!("http://{addr}"),
            spans,
            task,
        }
    }

    fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .expect("store")
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One link of a chain: a span of `service` named `name`, below the previous link.
struct Link(&'static str, String);

/// The spans of `chain`, the first a child of `root_parent` (`""`: a root span), each other a
/// descendant of the one before (through spans of the same trace). `None` while some have not
/// arrived. Retried activities leave several attempts: any one the rest hangs below will do.
fn find_chain(spans: &[Received], root_parent: &str, chain: &[Link]) -> Option<Vec<Received>> {
    let by_id: HashMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let descends = |span: &Received, ancestor: &str| {
        let mut parent = span.parent_span_id.as_str();
        for _ in 0..64 {
            if parent == ancestor {
                return true;
            }
            match by_id.get(parent) {
                Some(next) => parent = next.parent_span_id.as_str(),
                None => return false,
            }
        }
        false
    };
    fn extend(
        spans: &[Received],
        descends: &dyn Fn(&Received, &str) -> bool,
        above: Option<&Received>,
        root_parent: &str,
        chain: &[Link],
    ) -> Option<Vec<Received>> {
        let Some((Link(service, name), rest)) = chain.split_first() else {
            return Some(Vec::new());
        };
        spans
            .iter()
            .filter(|s| s.service == *service && s.name == *name)
            .filter(|s| match above {
                None => s.parent_span_id == root_parent,
                Some(above) => descends(s, &above.span_id),
            })
            .find_map(|s| {
                let mut found = vec![s.clone()];
                found.extend(extend(spans, descends, Some(s), root_parent, rest)?);
                Some(found)
            })
    }
    extend(spans, &descends, None, root_parent, chain)
}

/// Waits until `chain` is complete in `trace`; panics listing what arrived.
async fn wait_chain(
    receiver: &Receiver,
    trace_id: &str,
    root_parent: &str,
    chain: &[Link],
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans = receiver.trace(trace_id);
        if let Some(found) = find_chain(&spans, root_parent, chain) {
            return found;
        }
        if tokio::time::Instant::now() > deadline {
            let wanted: Vec<String> = chain.iter().map(|l| format!("{} {}", l.0, l.1)).collect();
            panic!(
                "trace {trace_id} has no chain {wanted:#?}\nbelow {root_parent:?}; it has:\n{spans:#?}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn traced_stack(receiver: &Receiver) -> StackOptions {
    let mut options = StackOptions::default().with_gateway();
    for (key, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()),
        // Batches leave every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("LOG_FORMAT", "json"),
    ] {
        options = options
            .sim(key, value)
            .worker(key, value)
            .gateway(key, value);
    }
    options
}

fn random_hex(bytes: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..bytes * 2].to_owned()
}

#[tokio::test]
async fn one_delivery_is_one_trace_per_request_from_the_gateway_to_the_partner() {
    let receiver = Receiver::start().await;
    let stack = Stack::start_with(traced_stack(&receiver)).await;
    let api = stack.api();
    // The first pickup request fails: an activity failure inside the trace, logged with it.
    stack.sim.fail_next(1).await;

    // The payment service calls with a trace of its own: the gateway continues it.
    let caller_trace = random_hex(16);
    let caller_span = random_hex(8);
    let payer = api.token("payments", &[Role::PaymentService]);
    let paid = api
        .send(
            reqwest::Method::POST,
            "/api/v1/payment-events",
            Some(&payer),
            Some(&payment_event(&new_payment_id(), "cust-traced")),
            &[(
                "traceparent",
                &format!("00-{caller_trace}-{caller_span}-01"),
            )],
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(
        paid.headers["x-request-id"],
        caller_trace.as_str(),
        "the request id is the caller's trace id"
    );
    let id = paid.json["delivery_order_id"].as_str().unwrap().to_owned();

    let ops = api.token("olga", &[Role::Operator]);
    api.wait_state(&ops, &id, "DELIVERED").await;
    let customer = api.token("cust-traced", &[Role::Customer]);
    let events = format!("/api/v1/delivery-orders/{id}/events");
    let confirmed = api
        .post(&events, &customer, &json!({"type": "CONFIRMED"}))
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    // No traceparent: the gateway's span starts the trace, and its id is the request id.
    let confirm_trace = confirmed.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(confirm_trace.len(), 32, "a trace id: {confirm_trace}");

    // An error answer: its problem's request_id is its trace id.
    let again = api
        .post(&events, &customer, &json!({"type": "CONFIRMED"}))
        .await;
    let problem = again.problem(409);
    let error_trace = problem["request_id"].as_str().unwrap().to_owned();

    // Payment: gateway → start → workflow run → activity → partner call → partner.
    let payment = wait_chain(
        &receiver,
        &caller_trace,
        &caller_span,
        &[
            Link("delivery-api", "POST /api/v1/payment-events".into()),
            Link("delivery-api", "StartWorkflow:DeliveryOrderWorkflow".into()),
            Link(
                "delivery-worker",
                "RunWorkflow:DeliveryOrderWorkflow".into(),
            ),
            Link("delivery-worker", "StartActivity:request_pickup".into()),
            Link("delivery-worker", "RunActivity:request_pickup".into()),
            Link("delivery-worker", "partner request_pickup".into()),
            Link("partner-sim", "POST /v1/pickups".into()),
        ],
    )
    .await;
    for pair in payment.windows(2) {
        assert!(!pair[1].parent_span_id.is_empty(), "{pair:#?}");
    }
    // Confirmation: gateway → update → the workflow's validator and handler.
    let confirmation = wait_chain(
        &receiver,
        &confirm_trace,
        "",
        &[
            Link(
                "delivery-api",
                "POST /api/v1/delivery-orders/{id}/events".into(),
            ),
            Link("delivery-api", "StartWorkflowUpdate:apply_event".into()),
            Link("delivery-worker", "HandleUpdate:apply_event".into()),
        ],
    )
    .await;
    wait_chain(
        &receiver,
        &confirm_trace,
        &confirmation[1].span_id,
        &[Link("delivery-worker", "ValidateUpdate:apply_event".into())],
    )
    .await;
    // The refused repeat is a trace of its own, named by the problem.
    wait_chain(
        &receiver,
        &error_trace,
        "",
        &[
            Link(
                "delivery-api",
                "POST /api/v1/delivery-orders/{id}/events".into(),
            ),
            Link("delivery-api", "StartWorkflowUpdate:apply_event".into()),
        ],
    )
    .await;
    assert_ne!(error_trace, confirm_trace, "one trace per request");

    // Logs: every line of the gateway's requests carries its trace id; the worker's line about
    // the failed pickup attempt carries the payment's trace, the order and the cause.
    let gateway_lines = json_log_lines(&api.log());
    for trace in [&caller_trace, &confirm_trace, &error_trace] {
        let lines: Vec<&Value> = gateway_lines
            .iter()
            .filter(|l| l["span"]["request_id"] == trace.as_str())
            .collect();
        assert!(!lines.is_empty(), "no gateway line of request {trace}");
        for line in lines {
            assert_eq!(line["trace_id"], trace.as_str(), "{line}");
        }
    }
    let failed = eventually("the failed pickup attempt in the worker's log", || async {
        json_log_lines(&stack.worker.log)
            .into_iter()
            .find(|l| l["message"] == "activity failed" && l["delivery_order_id"] == id.as_str())
    })
    .await;
    assert_eq!(failed["trace_id"], caller_trace.as_str(), "{failed}");
    assert_eq!(failed["activity_type"], "request_pickup", "{failed}");
    assert!(
        failed["cause"].as_str().is_some_and(|c| c.contains("503")),
        "{failed}"
    );

    // A made-up path names its span by the `unmatched` route, not by the path: no caller can
    // mint span names (the log line keeps the path).
    let made_up = uuid::Uuid::new_v4().to_string();
    let nowhere = api.get(&format!("/nope/{made_up}"), &ops).await;
    nowhere.problem(404);
    let nowhere_trace = nowhere.headers["x-request-id"].to_str().unwrap().to_owned();
    wait_chain(
        &receiver,
        &nowhere_trace,
        "",
        &[Link("delivery-api", "GET unmatched".into())],
    )
    .await;
    assert!(
        receiver
            .trace(&nowhere_trace)
            .iter()
            .all(|s| !s.name.contains(&made_up)),
        "{:#?}",
        receiver.trace(&nowhere_trace)
    );
    let logged = eventually("the unknown path's log line", || async {
        json_log_lines(&api.log()).into_iter().find(|l| {
            l["span"]["request_id"] == nowhere_trace.as_str() && l["message"] == "request"
        })
    })
    .await;
    assert_eq!(logged["span"]["route"], "unmatched", "{logged}");
    assert_eq!(
        logged["span"]["path"],
        format!("/nope/{made_up}"),
        "{logged}"
    );
}
