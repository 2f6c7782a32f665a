//! `kill -9` of the worker in the middle of a delivery: events keep arriving while it is down,
//! a timer fires meanwhile, and a restarted worker finishes the delivery with no side effect twice.

use std::time::Duration;

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
