//! The Temporal contract as other services use it: the `apply_event` update and its validator,
//! event-id idempotency, signals that never wedge a workflow, starts from plain JSON with the
//! `temporal` CLI, and search attributes for operators.

use delivery_tests::*;
use delivery_workflows::{ActorKind, EventType, State, workflow_id};
use futures::StreamExt;
use serde_json::json;
use temporalio_client::{WorkflowGetResultOptions, WorkflowListOptions};

async fn started(stack: &Stack) -> (String, OrderHandle) {
    let (id, order) = stack.new_order().await;
    // Let the pickup activity finish so history only grows through what the test does.
    wait_for(&order, "pickup accepted", |v| {
        v.order.partner.pickup_id.is_some() && !v.pickup_pending
    })
    .await;
    (id, order)
}

#[tokio::test]
async fn an_invalid_transition_is_refused_to_the_caller_and_leaves_no_trace() {
    let stack = Stack::quiet().await;
    let (_, order) = started(&stack).await;
    let before = settled_history_len(&order).await;

    let error = apply_event(
        &order,
        envelope("c-1", EventType::Confirmed, json!({}), ActorKind::Customer),
    )
    .await
    .unwrap_err();
    assert!(error.contains("INVALID_TRANSITION"), "{error}");
    assert!(
        error.contains("state CREATED"),
        "names the current state: {error}"
    );
    assert!(
        error.contains("PICKED_UP, DELIVERY_FAILED, CANCEL"),
        "names the allowed events: {error}"
    );

    let error = apply_event(
        &order,
        envelope(
            "p-1",
            EventType::PickedUp,
            json!({"partner_order_number": "PN"}),
            ActorKind::Customer,
        ),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("FORBIDDEN_ACTOR") && error.contains("partner"),
        "{error}"
    );
    let error = apply_event(
        &order,
        envelope(
            "p-2",
            EventType::PickedUp,
            json!({"partner_order_number": 12}),
            ActorKind::Partner,
        ),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("INVALID_PAYLOAD") && error.contains("partner_order_number"),
        "{error}"
    );
    let error = apply_event(
        &order,
        envelope(
            "f-1",
            EventType::DeliveryFailed,
            json!({"reason": "PICKUP_TIMEOUT"}),
            ActorKind::System,
        ),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("FORBIDDEN_ACTOR"),
        "system is the workflow's own: {error}"
    );

    assert_eq!(
        history_len(&order).await,
        before,
        "refused updates must not touch history"
    );
    let view = query_state(&order).await.unwrap();
    assert_eq!((view.order.state, view.order.version), (State::Created, 0));
}

#[tokio::test]
async fn the_same_event_id_applies_once_even_when_sent_concurrently() {
    let stack = Stack::quiet().await;
    let (_, order) = started(&stack).await;
    let picked_up = envelope(
        "partner-evt-1",
        EventType::PickedUp,
        json!({"partner_order_number": "PN-7"}),
        ActorKind::Partner,
    );

    let attempts =
        futures::future::join_all((0..6).map(|_| apply_event(&order, picked_up.clone()))).await;
    let outcomes: Vec<_> = attempts
        .into_iter()
        .map(|r| r.expect("duplicates are answered, not refused"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.applied).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.state == State::PickedUp && o.version == 1),
        "{outcomes:?}"
    );

    let again = apply_event(&order, picked_up).await.unwrap();
    assert!(!again.applied);
    signal(
        &order,
        "picked_up",
        json!({"event_id": "partner-evt-1", "partner_order_number": "PN-7"}),
    )
    .await;
    let view = query_state(&order).await.unwrap();
    assert_eq!((view.order.version, view.order.events.len()), (1, 1));
}

#[tokio::test]
async fn malformed_and_out_of_place_signals_from_the_cli_leave_the_workflow_healthy() {
    let stack = Stack::quiet().await;
    let (id, order) = started(&stack).await;
    let wf = workflow_id(&id);
    let sends: [(&str, &str); 7] = [
        ("picked_up", "\"garbage\""),
        ("picked_up", "42"),
        ("picked_up", r#"{"partner_order_number": 5}"#),
        (
            "picked_up",
            r#"{"partner_order_number": "PN", "actor": {"kind": "system"}}"#,
        ),
        ("delivered", "{}"),
        ("operator_action", r#"{"action": "DANCE", "note": "x"}"#),
        ("confirmed", r#"{"surprise": true}"#),
    ];
    for (name, input) in sends {
        let (ok, _, err) = stack.temporal.cli(&[
            "workflow",
            "signal",
            "--workflow-id",
            &wf,
            "--name",
            name,
            "--input",
            input,
        ]);
        assert!(ok, "signal {name} {input}: {err}");
    }
    let (ok, _, err) = stack.temporal.cli(&[
        "workflow",
        "signal",
        "--workflow-id",
        &wf,
        "--name",
        "frobnicate",
        "--input",
        "{}",
    ]);
    assert!(ok, "unknown signals are accepted by the server: {err}");

    let view = wait_for(&order, "rejections recorded", |v| {
        v.order.rejected_total >= sends.len() as u64
    })
    .await;
    assert_eq!(view.order.state, State::Created);
    assert_eq!(view.order.version, 0);
    assert!(
        view.order
            .rejected
            .iter()
            .any(|r| r.reason.contains("not JSON") || r.reason.contains("JSON object"))
    );
    assert!(
        view.order
            .rejected
            .iter()
            .any(|r| r.reason.contains("INVALID_TRANSITION"))
    );

    // Still healthy: a good event applies, and no workflow task ever failed.
    let outcome = apply_event(
        &order,
        envelope(
            "ok-1",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-9"}),
            ActorKind::Partner,
        ),
    )
    .await
    .unwrap();
    assert_eq!(outcome.state, State::PickedUp);
    let history = String::from_utf8(history_json(&order).await).unwrap();
    assert!(
        !history.contains("WORKFLOW_TASK_FAILED") && !history.contains("WorkflowTaskFailed"),
        "a workflow task failed"
    );
}

fn example_input(id: &str) -> String {
    let text = std::fs::read_to_string(
        workspace_root().join("resources/examples/delivery-order-input.json"),
    )
    .unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["delivery_order_id"] = json!(id);
    value["deadlines"] =
        json!({"pickup_deadline": "1h", "delivery_deadline": "1h", "auto_confirm": "2s"});
    value.to_string()
}

#[tokio::test]
async fn a_workflow_started_with_the_cli_from_plain_json_runs_to_the_end() {
    let stack = Stack::quiet().await;
    let id = new_order_id();
    let wf = workflow_id(&id);
    let input = example_input(&id);
    let (ok, _, err) = stack.temporal.cli(&[
        "workflow",
        "start",
        "--type",
        "DeliveryOrderWorkflow",
        "--task-queue",
        &stack.task_queue,
        "--workflow-id",
        &wf,
        "--input",
        &input,
    ]);
    assert!(ok, "{err}");
    for (name, payload) in [
        (
            "picked_up",
            r#"{"event_id": "cli-1", "partner_order_number": "PN-CLI", "driver": {"name": "Kim"}}"#,
        ),
        (
            "delivered",
            r#"{"event_id": "cli-2", "proof": {"signed_by": "Ada"}}"#,
        ),
    ] {
        let (ok, _, err) = stack.temporal.cli(&[
            "workflow",
            "signal",
            "--workflow-id",
            &wf,
            "--name",
            name,
            "--input",
            payload,
        ]);
        assert!(ok, "{err}");
    }
    // The CLI without the codec endpoint sees the answer as Temporal carries it: encrypted.
    let (ok, out, err) =
        stack
            .temporal
            .cli(&["workflow", "query", "--workflow-id", &wf, "--name", "state"]);
    assert!(ok && !out.contains("PN-CLI"), "{out}{err}");
    let order = handle(&stack.client, &id);
    let view = query_state(&order).await.expect("the state query answers");
    assert_eq!(
        view.order.partner.partner_order_number.as_deref(),
        Some("PN-CLI")
    );
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("completes");
    assert_eq!(
        result.order.state,
        State::DeliveryConfirmed,
        "auto-confirmed after 2 s"
    );
    assert_eq!(
        result.order.partner.partner_order_number.as_deref(),
        Some("PN-CLI")
    );
}

#[tokio::test]
async fn an_invalid_start_fails_at_once_with_a_clear_message() {
    let stack = Stack::quiet().await;
    for (id, input) in [
        (
            new_order_id(),
            r#"{"delivery_order_id": "not-a-uuid"}"#.to_owned(),
        ),
        (new_order_id(), example_input(&new_order_id())),
    ] {
        let wf = workflow_id(&id);
        let (ok, _, err) = stack.temporal.cli(&[
            "workflow",
            "start",
            "--type",
            "DeliveryOrderWorkflow",
            "--task-queue",
            &stack.task_queue,
            "--workflow-id",
            &wf,
            "--input",
            &input,
        ]);
        assert!(ok, "{err}");
        let failure = handle(&stack.client, &id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .unwrap_err();
        let text = format!("{failure:#} {failure:?}");
        assert!(text.contains("INVALID_INPUT"), "{text}");
    }
}

#[tokio::test]
async fn operators_find_pending_orders_by_search_attribute() {
    let stack = Stack::quiet().await;
    let (failing_id, failing) = started(&stack).await;
    let (_, healthy) = started(&stack).await;
    signal(
        &failing,
        "failed",
        json!({"reason": "WRONG_ADDRESS", "detail": "no such street"}),
    )
    .await;
    wait_for(&failing, "PENDING_BY_OPERATOR", |v| {
        v.order.state == State::PendingByOperator
    })
    .await;
    signal(
        &healthy,
        "picked_up",
        json!({"partner_order_number": "PN-OK"}),
    )
    .await;
    wait_for(&healthy, "PICKED_UP", |v| v.order.state == State::PickedUp).await;

    let query = format!(
        "DeliveryState = \"PENDING_BY_OPERATOR\" AND TaskQueue = \"{}\"",
        stack.task_queue
    );
    let (client, expected) = (&stack.client, vec![workflow_id(&failing_id)]);
    let expected = &expected;
    let query = &query;
    eventually(
        "visibility to show exactly the pending order",
        || async move {
            let found: Vec<String> = client
                .list_workflows(query.clone(), WorkflowListOptions::default())
                .filter_map(|r| async move { r.ok().map(|w| w.id().to_owned()) })
                .collect()
                .await;
            (found == *expected).then_some(())
        },
    )
    .await;
    let (ok, out, err) = stack.temporal.cli(&[
        "workflow",
        "list",
        "--query",
        &format!(
            "FailureReason = \"WRONG_ADDRESS\" AND TaskQueue = \"{}\"",
            stack.task_queue
        ),
    ]);
    assert!(ok && out.contains(&failing_id), "{out}{err}");
}
