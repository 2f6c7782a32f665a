//! `kill -9` of the worker in the middle of a delivery: events keep arriving while it is down,
//! a timer fires meanwhile, and a restarted worker finishes the delivery with no side effect twice.

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_workflows::{ActorKind, EventType, State};
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;

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
