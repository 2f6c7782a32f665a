//! Whole deliveries through the partner simulator: every path of the graph, with real timers.

use std::time::Duration;

use delivery_tests::*;
use delivery_workflows::{ActorKind, DisputeReason, EventType, FailureReason, State};
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;

const SHORT: Duration = Duration::from_secs(2);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn happy_path_to_delivery_confirmed_through_the_partner() {
    let stack = Stack::start().await;
    let (_, order) = stack.new_order().await;

    delivered(&order).await;
    // The simulator signals through Temporal as a trusted sender, so on a busy machine its
    // events can overtake the answer to the pickup request; the order records the accepted
    // pickup when that answer arrives.
    let delivered = wait_for(&order, "the pickup accepted by the partner", |v| {
        v.order.partner.pickup_id.is_some()
    })
    .await;
    assert_eq!(delivered.order.state, State::Delivered);
    assert!(delivered.order.partner.partner_order_number.is_some());
    assert!(delivered.order.partner.driver.is_some());
    assert_eq!(
        delivered.allowed_events,
        vec![EventType::Confirmed, EventType::Disputed]
    );

    let outcome = confirm(&order, "confirm-1").await;
    assert_eq!(
        (outcome.state, outcome.version),
        (State::DeliveryConfirmed, 3)
    );

    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(result.order.state, State::DeliveryConfirmed);
    assert!(result.terminal);
    let steps: Vec<_> = result
        .order
        .events
        .iter()
        .map(|e| (e.seq, e.event_type, e.to_state))
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, EventType::PickedUp, State::PickedUp),
            (2, EventType::Delivered, State::Delivered),
            (3, EventType::Confirmed, State::DeliveryConfirmed),
        ]
    );
    assert_eq!(result.order.graph_version, 1);
    let stats = stack.sim.stats().await;
    assert_eq!(stats["pickups_created"], 1, "{stats}");
    capture_history(&order, "happy_path").await;
}

#[tokio::test]
async fn delivered_orders_confirm_themselves_when_the_timer_fires() {
    let stack = Stack::start().await;
    let id = new_order_id();
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(HOUR, HOUR, SHORT)),
    )
    .await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(result.order.state, State::DeliveryConfirmed);
    let last = result.order.events.last().unwrap();
    assert_eq!(
        (last.event_type, last.actor.kind),
        (EventType::Confirmed, ActorKind::System)
    );
    assert_eq!(last.actor.id.as_deref(), Some("auto_confirm"));
    capture_history(&order, "auto_confirm").await;
}

#[tokio::test]
async fn a_cancel_while_the_pickup_request_is_out_withdraws_the_job_it_booked() {
    let stack = Stack::quiet().await;
    // The partner takes two seconds to answer: the operator cancels before it has.
    stack.sim.configure(json!({"latency_ms": 2000})).await;
    let id = new_order_id();
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(HOUR, HOUR, HOUR)),
    )
    .await;
    wait_for(&order, "the pickup requested", |v| v.pickup_pending).await;
    let cancelled = apply_event(
        &order,
        envelope(
            "cancel-while-booking",
            EventType::Cancel,
            json!({"reason": "customer changed their mind"}),
            ActorKind::Operator,
        ),
    )
    .await
    .expect("a cancel applies while the pickup request is out");
    assert_eq!(cancelled.state, State::Cancelled);

    // The request answers after the cancel: the job it booked is bound and withdrawn.
    let view = wait_for(&order, "the job booked meanwhile withdrawn", |v| {
        v.order.partner.cancelled && !v.pickup_pending
    })
    .await;
    let pickup = view
        .order
        .partner
        .pickup_id
        .expect("the late answer is recorded");
    let jobs: Vec<_> = stack
        .sim
        .pickups()
        .await
        .into_iter()
        .filter(|p| p["delivery_order_id"] == id.as_str())
        .collect();
    assert_eq!(jobs.len(), 1, "one job booked: {jobs:?}");
    assert_eq!(jobs[0]["pickup_id"], pickup.as_str());
    assert_eq!(jobs[0]["status"], "CANCELLED", "{jobs:?}");
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the run ends once the job is withdrawn");
    assert_eq!(result.order.state, State::Cancelled);
    capture_history(&order, "cancel_while_booking").await;
}

#[tokio::test]
async fn a_missed_pickup_deadline_goes_to_an_operator_who_cancels() {
    let stack = Stack::start().await;
    let id = new_order_id();
    stack.sim.scenario(&id, json!({"outcome": "silent"})).await;
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(SHORT, HOUR, HOUR)),
    )
    .await;

    let pending = pending_by_operator(&order).await;
    assert_eq!(
        pending.order.failure_reason,
        Some(FailureReason::PickupTimeout)
    );
    let path: Vec<_> = pending.order.events.iter().map(|e| e.to_state).collect();
    assert_eq!(path, vec![State::DeliveryFailed, State::PendingByOperator]);
    wait_for(&order, "the partner pickup withdrawn", |v| {
        v.order.partner.cancelled
    })
    .await;

    signal(
        &order,
        "operator_action",
        json!({"action": "CANCEL", "note": "customer asked for a refund", "event_id": "op-1"}),
    )
    .await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(result.order.state, State::Cancelled);
    assert!(result.order.refund_needed);
    capture_history(&order, "pickup_timeout_operator_cancel").await;
}

#[tokio::test]
async fn a_failed_delivery_is_reshipped_as_a_new_linked_order() {
    let stack = Stack::start().await;
    let (id, order) = stack.failing_order("RECIPIENT_UNAVAILABLE").await;

    let pending = pending_by_operator(&order).await;
    assert_eq!(
        pending.order.failure_reason,
        Some(FailureReason::RecipientUnavailable)
    );

    signal(&order, "operator_action", json!({"action": "RESHIP", "note": "send it again", "actor": {"kind": "operator", "id": "alice"}})).await;
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(result.order.state, State::Reshipped);
    let new_id = result.order.replaced_by_id.clone().expect("linked forward");
    assert_ne!(new_id, id);

    let replacement = handle(&stack.client, &new_id);
    let view = wait_for(&replacement, "the replacement delivered", |v| {
        v.order.state == State::Delivered
    })
    .await;
    assert_eq!(
        view.order.replaces_id.as_deref(),
        Some(id.as_str()),
        "linked back"
    );
    assert_eq!(
        view.order.ordering_id, result.order.ordering_id,
        "same ordering"
    );
    assert_eq!(
        view.order
            .input
            .created_by
            .as_ref()
            .and_then(|a| a.id.as_deref()),
        Some("alice")
    );
    let stats = stack.sim.stats().await;
    assert_eq!(
        stats["pickups_created"], 2,
        "one pickup per delivery order: {stats}"
    );
    capture_history(&order, "failure_reship").await;
}

#[tokio::test]
async fn a_customer_dispute_is_resolved_by_an_operator() {
    let stack = Stack::start().await;
    let (_, order) = stack.new_order().await;
    delivered(&order).await;

    signal(
        &order,
        "disputed",
        json!({"reason": "DAMAGED", "detail": "cover torn", "event_id": "d-1"}),
    )
    .await;
    let pending = pending_by_operator(&order).await;
    assert_eq!(pending.order.dispute_reason, Some(DisputeReason::Damaged));
    assert_eq!(pending.order.dispute_detail.as_deref(), Some("cover torn"));

    let outcome = apply_event(
        &order,
        envelope(
            "op-2",
            EventType::OperatorConfirmDelivered,
            json!({"note": "photo shows minor wear"}),
            ActorKind::Operator,
        ),
    )
    .await
    .unwrap();
    assert_eq!(outcome.state, State::DeliveryConfirmed);
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(
        result.order.resolution_note.as_deref(),
        Some("photo shows minor wear")
    );
    capture_history(&order, "dispute_operator_confirms").await;
}

#[tokio::test]
async fn a_partner_refusal_fails_the_delivery_with_partner_rejected() {
    let stack = Stack::start().await;
    let id = new_order_id();
    stack.sim.scenario(&id, json!({"outcome": "reject"})).await;
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, far_deadlines()),
    )
    .await;
    let pending = pending_by_operator(&order).await;
    assert_eq!(
        pending.order.failure_reason,
        Some(FailureReason::PartnerRejected)
    );
    assert!(
        pending
            .order
            .failure_detail
            .as_deref()
            .unwrap_or_default()
            .contains("UNSERVICEABLE_ADDRESS")
    );
    assert_eq!(pending.order.events[0].actor.kind, ActorKind::Partner);
}

#[tokio::test]
async fn a_missed_delivery_deadline_fails_with_delivery_timeout() {
    let stack = Stack::start().await;
    let id = new_order_id();
    stack
        .sim
        .scenario(&id, json!({"outcome": "pickup_only"}))
        .await;
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(HOUR, SHORT, HOUR)),
    )
    .await;
    let pending = pending_by_operator(&order).await;
    assert_eq!(
        pending.order.failure_reason,
        Some(FailureReason::DeliveryTimeout)
    );
    let states: Vec<_> = pending.order.events.iter().map(|e| e.to_state).collect();
    assert_eq!(
        states,
        vec![
            State::PickedUp,
            State::DeliveryFailed,
            State::PendingByOperator
        ]
    );
}

#[tokio::test]
async fn a_partner_outage_is_retried_until_the_pickup_is_booked_once() {
    let stack = Stack::start().await;
    stack.sim.fail_next(3).await;
    let (_, order) = stack.new_order().await;
    delivered(&order).await;
    let stats = stack.sim.stats().await;
    assert_eq!(stats["pickups_created"], 1, "{stats}");
    assert!(
        stats["faults_injected"].as_u64().unwrap_or(0) >= 3,
        "{stats}"
    );
}
