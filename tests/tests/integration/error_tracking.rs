//! Error tracking against the real processes: a 5xx answer, a failed activity attempt and a
//! failed workflow are each logged once (JSON lines) with their cause and the delivery order,
//! and counted by kind on `/metrics`.

use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::Value;
use temporalio_client::WorkflowGetResultOptions;

/// The value of the series `name{labels}` in a Prometheus text exposition (0 when absent: a
/// labelled counter appears with its first increment).
async fn sample(url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let body = reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scraping {url}: {e}"))
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let Some(rest) = series.strip_prefix(name) else {
                return false;
            };
            let inner = rest.trim_start_matches('{').trim_end_matches('}');
            if !rest.is_empty() && !rest.starts_with('{') {
                return false;
            }
            labels
                .iter()
                .all(|(k, v)| inner.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse().expect("a number"))
        .unwrap_or(0.0)
}

fn error_lines<'a>(lines: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id && l["level"] == "ERROR")
        .collect()
}

#[tokio::test]
async fn a_server_error_is_logged_once_with_its_order_and_cause_and_counted_by_kind() {
    let (pg_proxy, pg_url) = TcpProxy::in_front_of(database_url().await, 5432).await;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("DATABASE_URL", &pg_url)
            .gateway("LOG_FORMAT", "json"),
    )
    .await;
    let api = stack.api();
    let metrics = format!("{}/metrics", api.url);
    let id = api.paid_order("cust-errors").await;
    let operator = api.token("olga", &[Role::Operator]);
    let kind = [("kind", "dependency-unavailable")];
    let before = sample(&metrics, "delivery_api_server_errors_total", &kind).await;

    pg_proxy.cut();
    let trail = api
        .get(&format!("/api/v1/delivery-orders/{id}/events"), &operator)
        .await;
    let request_id = trail.problem(503)["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned();
    pg_proxy.restore();

    let after = sample(&metrics, "delivery_api_server_errors_total", &kind).await;
    assert_eq!(after - before, 1.0, "one 5xx counted by its kind");
    let lines = json_log_lines(&api.log());
    let errors = error_lines(&lines, &request_id);
    assert_eq!(errors.len(), 1, "logged once: {errors:#?}");
    let line = errors[0];
    assert_eq!(line["span"]["delivery_order_id"], id.as_str(), "{line}");
    assert!(
        line["cause"].as_str().is_some_and(|c| !c.is_empty()),
        "with its cause: {line}"
    );
    // The access line names the kind, without repeating the cause.
    let access = lines
        .iter()
        .find(|l| {
            l["span"]["request_id"] == request_id.as_str() && l["message"] == "request failed"
        })
        .unwrap_or_else(|| panic!("an access line for {request_id}"));
    assert_eq!(access["kind"], "dependency-unavailable", "{access}");
    assert!(access.get("cause").is_none(), "{access}");

    // The compatible API answers in its own `{detail}` shape: its 503 is counted by the same
    // kind, and its lines name the delivery its body or path named.
    let before = sample(&metrics, "delivery_api_server_errors_total", &kind).await;
    let delivery = uuid::Uuid::new_v4().to_string();
    pg_proxy.cut();
    let status = api
        .get(&format!("/deliveries/{delivery}/status"), &operator)
        .await;
    pg_proxy.restore();
    assert_eq!(status.status, 503, "{}", status.text);
    let request_id = status.headers["x-request-id"].to_str().unwrap().to_owned();
    let after = sample(&metrics, "delivery_api_server_errors_total", &kind).await;
    assert_eq!(
        after - before,
        1.0,
        "the compatible API's 503 counted by its kind"
    );
    let lines = json_log_lines(&api.log());
    let errors = error_lines(&lines, &request_id);
    assert_eq!(errors.len(), 1, "logged once: {errors:#?}");
    assert_eq!(
        errors[0]["span"]["delivery_order_id"],
        delivery.as_str(),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn a_failed_activity_attempt_is_logged_once_with_its_order_and_cause_and_counted() {
    let stack = Stack::start_with(StackOptions::quiet().worker("LOG_FORMAT", "json")).await;
    let metrics = &stack.worker.metrics_url;
    let labels = [("activity_type", "request_pickup"), ("kind", "retryable")];
    let before = sample(metrics, "delivery_worker_activity_failures_total", &labels).await;
    // The partner answers the first pickup request with 503; the retry books it.
    stack.sim.fail_next(1).await;
    let (id, order) = stack.new_order().await;
    wait_for(&order, "the pickup accepted", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;

    let after = sample(metrics, "delivery_worker_activity_failures_total", &labels).await;
    assert_eq!(
        after - before,
        1.0,
        "one failed attempt counted by its kind"
    );
    let failed: Vec<Value> = json_log_lines(&stack.worker.log)
        .into_iter()
        .filter(|l| l["delivery_order_id"] == id.as_str() && l["level"] != "INFO")
        .collect();
    assert_eq!(failed.len(), 1, "logged once: {failed:#?}");
    let line = &failed[0];
    assert_eq!(line["message"], "activity failed", "{line}");
    assert_eq!(line["activity_type"], "request_pickup", "{line}");
    assert_eq!(line["attempt"], 1, "{line}");
    assert!(
        line["cause"]
            .as_str()
            .is_some_and(|c| c.contains("503") && c.contains("simulated partner outage")),
        "the cause chain down to the partner's answer: {line}"
    );
}

#[tokio::test]
async fn a_failed_workflow_is_logged_with_its_order_and_cause_and_counted() {
    let stack = Stack::start_with(StackOptions::quiet().worker("LOG_FORMAT", "json")).await;
    let metrics = &stack.worker.metrics_url;
    let labels = [
        ("workflow_type", "DeliveryOrderWorkflow"),
        ("kind", "workflow_failed"),
    ];
    let before = sample(metrics, "delivery_worker_workflow_failures_total", &labels).await;
    let id = new_order_id();
    let mut input = order_input(&id, far_deadlines());
    input.items.clear();
    let order = start_order(&stack.client, &stack.task_queue, input).await;
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect_err("an order without items fails");

    let after = eventually("the failure counted", || async {
        let after = sample(metrics, "delivery_worker_workflow_failures_total", &labels).await;
        (after > before).then_some(after)
    })
    .await;
    assert_eq!(after - before, 1.0);
    let failed: Vec<Value> = json_log_lines(&stack.worker.log)
        .into_iter()
        .filter(|l| l["delivery_order_id"] == id.as_str() && l["level"] == "ERROR")
        .collect();
    assert_eq!(failed.len(), 1, "logged once: {failed:#?}");
    assert_eq!(failed[0]["message"], "workflow failed", "{}", failed[0]);
    assert_eq!(failed[0]["kind"], "workflow_failed", "{}", failed[0]);
    assert!(
        failed[0]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("INVALID_INPUT")),
        "{}",
        failed[0]
    );
}
