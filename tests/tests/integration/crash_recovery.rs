//! `kill -9` of the worker in the middle of a delivery: events keep arriving while it is down,
//! a timer fires meanwhile, and a restarted worker finishes the delivery with no side effect twice.

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_workflows::{ActorKind, EventType, State};
use serde_json::json;
use temporalio_client::{WorkflowDescribeOptions, WorkflowGetResultOptions};
use temporalio_common::protos::temporal::api::enums::v1::{PendingActivityState, TimeoutType};
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;

#[tokio::test]
async fn a_killed_worker_is_replaced_and_the_delivery_finishes_correctly() {
    let mut stack = Stack::quiet().await;
    let id = new_order_id();
    let hour = Duration::from_secs(3600);
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(hour, hour, Duration::from_secs(2))),
    )
    .await;
    wait_for(&order, "pickup accepted", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;

    stack.worker.kill_hard();
    // While no worker runs: partner events arrive, and the auto-confirm timer (2 s) elapses.
    signal(
        &order,
        "picked_up",
        json!({"event_id": "pu-1", "partner_order_number": "PN-K9"}),
    )
    .await;
    signal(
        &order,
        "delivered",
        json!({"event_id": "de-1", "proof": {"signed_by": "Ada"}}),
    )
    .await;
    signal(
        &order,
        "picked_up",
        json!({"event_id": "pu-1", "partner_order_number": "PN-K9"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    stack.worker.restart().await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    let steps: Vec<_> = result
        .order
        .events
        .iter()
        .map(|e| (e.event_type, e.actor.kind))
        .collect();
    assert_eq!(
        steps,
        vec![
            (EventType::PickedUp, ActorKind::Partner),
            (EventType::Delivered, ActorKind::Partner),
            (EventType::Confirmed, ActorKind::System),
        ]
    );
    assert_eq!(result.order.state, State::DeliveryConfirmed);
    let stats = stack.sim.stats().await;
    assert_eq!(
        stats["pickups_created"], 1,
        "the pickup was booked once: {stats}"
    );
}

#[tokio::test]
async fn a_worker_killed_before_the_pickup_request_books_it_exactly_once_after_restart() {
    let mut stack = Stack::quiet().await;
    stack.worker.kill_hard();
    let (_, order) = stack.new_order().await;
    signal(&order, "cancel", json!({"reason": "duplicate order", "event_id": "cx-1", "actor": {"kind": "order_management", "id": "oms"}})).await;
    stack.worker.restart().await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(result.order.state, State::Cancelled);
    assert_eq!(
        result.order.cancel_reason.as_deref(),
        Some("duplicate order")
    );
    let stats = stack.sim.stats().await;
    assert!(
        stats["pickups_created"].as_u64().unwrap_or(0) <= 1,
        "{stats}"
    );
}

/// A worker killed while the partner is still answering its pickup request: the request
/// heartbeats, so the server gives the orphaned attempt up once the heartbeats stop (not at the
/// end of its 30 s limit) and the restarted worker asks again under the same key — one booking.
#[tokio::test]
async fn a_worker_killed_during_the_pickup_request_is_given_up_by_its_missing_heartbeats() {
    let mut stack = Stack::quiet().await;
    // The partner takes its time: the request is still waiting when the worker dies.
    stack.sim.configure(json!({"latency_ms": 8000})).await;
    let (_, order) = stack.new_order().await;
    let order_ref = &order;
    eventually("the pickup request under way", || async move {
        let description = order_ref
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()?;
        description
            .raw_description
            .pending_activities
            .iter()
            .any(|a| {
                a.activity_type.as_ref().map(|t| t.name.as_str()) == Some("request_pickup")
                    && a.state == PendingActivityState::Started as i32
            })
            .then_some(())
    })
    .await;
    stack.worker.kill_hard();
    stack.sim.configure(json!({"latency_ms": 0})).await;
    stack.worker.restart().await;

    wait_for(&order, "pickup accepted", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;
    let starts = activity_starts(&order, "request_pickup").await;
    let last = starts.last().expect("the request started");
    assert!(last.attempt >= 2, "{starts:?}");
    let timeout = last
        .last_failure
        .as_ref()
        .and_then(|f| match &f.failure_info {
            Some(FailureInfo::TimeoutFailureInfo(info)) => Some(info.timeout_type),
            _ => None,
        });
    assert_eq!(
        timeout,
        Some(TimeoutType::Heartbeat as i32),
        "the orphaned attempt ended by its missing heartbeats: {starts:?}"
    );
    let stats = stack.sim.stats().await;
    assert_eq!(stats["pickups_created"], 1, "one booking: {stats}");
}

#[tokio::test]
async fn the_worker_shuts_down_cleanly_on_sigterm_and_a_new_one_takes_over() {
    let mut stack = Stack::quiet().await;
    let (_, order) = stack.new_order().await;
    wait_for(&order, "pickup accepted", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;
    let status = stack.worker.terminate().await;
    assert!(status.success(), "graceful exit, got {status}");
    signal(&order, "picked_up", json!({"partner_order_number": "PN-T"})).await;
    stack.worker.restart().await;
    wait_for(&order, "PICKED_UP", |v| v.order.state == State::PickedUp).await;
}

/// With no worker to run the order, a command outlives the gateway's Temporal deadline: the
/// 503 names the event id the gateway made up for it, Temporal still applies the admitted event
/// once a worker is back, and the caller's retry under that id converges on it — one event in
/// the trail, never two.
#[tokio::test]
async fn a_command_that_times_out_names_its_event_id_and_its_retry_converges() {
    let mut stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let id = stack.api().paid_order("cust-late").await;
    let partner = stack.api().token("sim", &[Role::Partner]);
    let operator = stack.api().token("olga", &[Role::Operator]);
    let path = format!("/api/v1/delivery-orders/{id}/events");
    let picked = json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-LATE"}});

    stack.worker.kill_hard();
    let timed_out = stack.api().post(&path, &partner, &picked).await;
    let problem = timed_out.problem(503);
    let event_id = problem["event_id"]
        .as_str()
        .expect("the 503 names the event id it sent")
        .to_owned();
    assert!(
        problem["detail"].as_str().unwrap().contains(&event_id),
        "{}",
        timed_out.text
    );
    assert!(
        timed_out.headers.contains_key("retry-after"),
        "{}",
        timed_out.text
    );

    stack.worker.restart().await;
    let mut retry = picked.clone();
    retry["event_id"] = json!(event_id);
    let api = stack.api();
    let converged = eventually("the retry to be answered", || async {
        let answer = api.post(&path, &partner, &retry).await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(converged.status, 200, "{}", converged.text);
    assert_eq!(converged.json["event_id"], event_id.as_str());
    assert_eq!(converged.json["state"], "PICKED_UP");
    assert_eq!(converged.json["version"], 1, "{}", converged.text);

    let trail = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}/events?min_version=1"),
            &operator,
        )
        .await;
    let pickups: Vec<_> = trail.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "PICKED_UP")
        .collect();
    assert_eq!(pickups.len(), 1, "{}", trail.text);
    assert_eq!(pickups[0]["event_id"], event_id.as_str(), "{}", trail.text);
}

/// The compatible API's event with no worker to run it: the 503 names the event id it was
/// sent under, and the retry under that id is answered with its outcome once a worker is back —
/// the budget raised once, not twice.
#[tokio::test]
async fn a_compat_event_that_times_out_names_its_event_id_and_its_retry_converges() {
    let mut stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let oms = stack.api().token("oms", &[Role::OrderManagement]);
    let created = stack
        .api()
        .post(
            "/deliveries/create",
            &oms,
            &json!({"type": "CREATE_DELIVERY", "data": {"budget": 100, "notes": "late"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let raise = json!({"delivery_id": id, "type": "INCREASE_BUDGET", "data": {"budget": 25}});

    stack.worker.kill_hard();
    let timed_out = stack.api().post("/event", &oms, &raise).await;
    assert_eq!(timed_out.status, 503, "{}", timed_out.text);
    assert!(
        timed_out.headers.contains_key("retry-after"),
        "{}",
        timed_out.text
    );
    let event_id = timed_out.json["event_id"]
        .as_str()
        .expect("the 503 names the event id it sent")
        .to_owned();
    assert!(
        timed_out.json["detail"]
            .as_str()
            .unwrap()
            .contains(&event_id),
        "{}",
        timed_out.text
    );

    stack.worker.restart().await;
    let api = stack.api();
    let converged = eventually("the retry to be answered", || async {
        let answer = api
            .send(
                reqwest::Method::POST,
                "/event",
                Some(&oms),
                Some(&raise),
                &[("Idempotency-Key", event_id.as_str())],
            )
            .await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(converged.status, 200, "{}", converged.text);
    assert_eq!(
        converged.json["budget"], 125,
        "raised once: {}",
        converged.text
    );
    let status = api.get(&format!("/deliveries/{id}/status"), &oms).await;
    assert_eq!(status.json["budget"], 125, "{}", status.text);
}

/// A stack whose gateway reaches Temporal through a proxy the test can stall or cut (the
/// worker directly), with a 2 s deadline on each of the gateway's Temporal calls.
async fn gateway_behind_a_proxy_to_temporal() -> (TcpProxy, Stack) {
    let temporal = temporal_server().await;
    let (proxy, url) = TcpProxy::in_front_of(&temporal.url(), 7233).await;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .with_gateway()
            .gateway("TEMPORAL_ADDRESS", url.trim_end_matches('/'))
            .gateway("TEMPORAL_RPC_TIMEOUT_MS", "2000"),
    )
    .await;
    (proxy, stack)
}

/// A compatible-API creation while Temporal hangs: the 503 names the delivery it may have
/// created, and the retry under the same `Idempotency-Key` finds that one delivery.
#[tokio::test]
async fn a_compat_creation_that_times_out_names_its_delivery_and_its_retry_finds_it() {
    let (proxy, stack) = gateway_behind_a_proxy_to_temporal().await;
    let api = stack.api();
    let oms = api.token("oms", &[Role::OrderManagement]);
    let create = json!({"type": "CREATE_DELIVERY", "data": {"budget": 40, "notes": "hung"}});
    let send = || {
        api.send(
            reqwest::Method::POST,
            "/deliveries/create",
            Some(&oms),
            Some(&create),
            &[("Idempotency-Key", "basket-5")],
        )
    };

    proxy.stall();
    let timed_out = send().await;
    assert_eq!(timed_out.status, 503, "{}", timed_out.text);
    let id = timed_out.json["id"]
        .as_str()
        .expect("the 503 names the delivery")
        .to_owned();
    assert!(
        timed_out.json["detail"].as_str().unwrap().contains(&id),
        "{}",
        timed_out.text
    );

    proxy.cut();
    proxy.restore();
    let found = eventually("the retry to be answered", || async {
        let answer = send().await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.json["id"], id.as_str(), "{}", found.text);
    let again = send().await;
    assert_eq!(again.json["id"], id.as_str(), "{}", again.text);
    let status = eventually("the delivery's status", || async {
        let s = api.get(&format!("/deliveries/{id}/status"), &oms).await;
        (s.status == 200).then_some(s)
    })
    .await;
    assert_eq!(status.json["budget"], 40, "{}", status.text);
}

/// A Temporal frontend that accepts connections and never answers: an event and a batch are
/// still answered (503 with `Retry-After`, naming the event id or the batch to retry under)
/// instead of holding their callers, and once Temporal answers again each retry converges on
/// one application.
#[tokio::test]
async fn events_and_batches_sent_while_temporal_hangs_are_answered_and_their_retries_converge() {
    let (proxy, stack) = gateway_behind_a_proxy_to_temporal().await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let (one, other) = (
        api.paid_order("cust-hung").await,
        api.paid_order("cust-hung").await,
    );
    let events = format!("/api/v1/delivery-orders/{one}/events");
    let cancel = json!({"type": "CANCEL", "data": {"reason": "hung"}});
    let batch = json!({"events": [{"delivery_order_id": other, "type": "CANCEL",
                                   "data": {"reason": "hung"}}]});
    let send_batch = || {
        api.send(
            reqwest::Method::POST,
            "/api/v1/event-batches",
            Some(&ops),
            Some(&batch),
            &[("Idempotency-Key", "hung-batch-1")],
        )
    };
    // Far beyond the gateway's deadlines: only a request that hangs takes this long.
    let patience = Duration::from_secs(90);

    proxy.stall();
    let event_answer = tokio::time::timeout(patience, api.post(&events, &ops, &cancel))
        .await
        .expect("an event is answered while Temporal hangs");
    let problem = event_answer.problem(503);
    assert!(
        event_answer.headers.contains_key("retry-after"),
        "{}",
        event_answer.text
    );
    let event_id = problem["event_id"]
        .as_str()
        .expect("the 503 names the event id")
        .to_owned();
    let batch_answer = tokio::time::timeout(patience, send_batch())
        .await
        .expect("a batch is answered while Temporal hangs");
    let problem = batch_answer.problem(503);
    assert!(
        batch_answer.headers.contains_key("retry-after"),
        "{}",
        batch_answer.text
    );
    assert!(
        problem["batch_id"].is_string(),
        "the 503 names the batch: {}",
        batch_answer.text
    );

    proxy.cut();
    proxy.restore();
    let mut retry = cancel.clone();
    retry["event_id"] = json!(event_id);
    let converged = eventually("the event's retry to be answered", || async {
        let answer = api.post(&events, &ops, &retry).await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(converged.status, 200, "{}", converged.text);
    assert_eq!(converged.json["state"], "CANCELLED", "{}", converged.text);
    assert_eq!(
        converged.json["version"], 1,
        "applied once: {}",
        converged.text
    );
    let joined = eventually("the batch's retry to be answered", || async {
        let answer = send_batch().await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(
        joined.json["results"][0]["state"], "CANCELLED",
        "{}",
        joined.text
    );
    assert_eq!(
        joined.json["results"][0]["version"], 1,
        "applied once: {}",
        joined.text
    );
}
