//! Integrity of the event path: no caller can wedge, fork or forge a delivery order. Each test
//! is a way a caller could break an order's promise, tried for real against the gateway, the
//! worker, the simulator, Temporal, PostgreSQL and Redis.

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_workflows::batch::EventBatchWorkflow;
use delivery_workflows::delivery_order::{
    BatchDecision, BatchPrepare, DEFERRED_KEPT, HISTORY_LIMIT,
};
use delivery_workflows::{
    ActorKind, DeliveryOrderWorkflow, EventType, Refusal, RejectionCode, State,
};
use delivery_workflows::{DeliveryOrderClient, TemporalTarget};
use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions,
    WorkflowListOptions, WorkflowTerminateOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::{
    EventType as HistoryEventType, WorkflowExecutionStatus,
};

async fn quiet_stack() -> Stack {
    Stack::start_with(StackOptions::quiet().with_gateway()).await
}

fn events_of(id: &str) -> String {
    format!("/api/v1/delivery-orders/{id}/events")
}

/// A partner's `PICKED_UP` on `id` is refused (409) because a batch holds the order.
async fn assert_locked_by_batch(api: &GatewayProcess, partner: &str, id: &str) {
    let locked = api
        .post(
            &events_of(id),
            partner,
            &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-H"}}),
        )
        .await;
    let problem = locked.problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("locked-by-batch"),
        "{problem}"
    );
}

/// Starts the coordinator of `batch` on a task queue no worker polls: it runs and makes no
/// progress, as during an outage.
fn start_stalled_coordinator(temporal: &TemporalServer, batch: &str) {
    let (started, out, err) = temporal.cli(&[
        "workflow",
        "start",
        "--type",
        "EventBatchWorkflow",
        "--task-queue",
        &format!("nobody-polls-{}", uuid::Uuid::new_v4()),
        "--workflow-id",
        &delivery_workflows::batch::batch_workflow_id(batch),
    ]);
    assert!(started, "{out}{err}");
}

/// Reads the order through the gateway once the read model holds `version`.
async fn read_at(api: &GatewayProcess, id: &str, version: u64) -> Value {
    let ops = api.token("olga", &[Role::Operator]);
    eventually(&format!("{id} at version {version}"), || async {
        let read = api
            .get(
                &format!("/api/v1/delivery-orders/{id}?min_version={version}"),
                &ops,
            )
            .await;
        (read.status == 200).then_some(read.json)
    })
    .await
}

#[tokio::test]
async fn a_caller_cannot_take_the_id_of_an_event_the_order_raises_itself() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i1").await;
    let partner = api.token("sim", &[Role::Partner]);
    let picked = api
        .post(
            &events_of(&id),
            &partner,
            &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-I1"}}),
        )
        .await;
    assert_eq!(picked.status, 200, "{}", picked.text);

    // The id the escalation after a failure gets, predicted and sent first: refused, through
    // the command API and through the webhook alike.
    let predicted = format!("wf:{id}:ESCALATE_TO_OPERATOR:3");
    let failure = json!({"type": "DELIVERY_FAILED", "event_id": predicted,
                         "data": {"reason": "WRONG_ADDRESS"}});
    let forged = api.post(&events_of(&id), &partner, &failure).await;
    let problem = forged.problem(422);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("invalid-event-id")
    );
    assert!(problem["detail"].as_str().unwrap().contains("reserved"));
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let hook = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": predicted, "type": "DELIVERY_FAILED", "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": {"reason": "WRONG_ADDRESS"}}),
        )
        .await;
    assert!(
        hook.problem(422)["type"]
            .as_str()
            .unwrap()
            .ends_with("invalid-event-id")
    );

    // The id the escalation had before namespaces is an ordinary caller id now: the failure
    // applies, the order escalates under its own id, and the read model follows to the end.
    let old_style = format!("{id}:ESCALATE_TO_OPERATOR:3");
    let failed = api
        .post(
            &events_of(&id),
            &partner,
            &json!({"type": "DELIVERY_FAILED", "event_id": old_style,
                    "data": {"reason": "WRONG_ADDRESS"}}),
        )
        .await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    assert_eq!(failed.json["state"], "PENDING_BY_OPERATOR");
    assert_eq!(failed.json["version"], 3);
    let read = read_at(api, &id, 3).await;
    assert_eq!(read["state"], "PENDING_BY_OPERATOR");
    let ops = api.token("olga", &[Role::Operator]);
    let queue = api.get("/api/v1/operator/queue", &ops).await;
    assert!(
        queue.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["delivery_order"]["delivery_order_id"] == id.as_str()),
        "the operator queue shows the order: {}",
        queue.text
    );
    let trail = api.get(&events_of(&id), &ops).await;
    let ids: Vec<&str> = trail.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "ESCALATE_TO_OPERATOR")
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [predicted.as_str()], "{}", trail.text);
}

#[tokio::test]
async fn a_deadline_cannot_be_suppressed_by_a_caller() {
    let stack = Stack::quiet().await;
    let id = new_order_id();
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(
            &id,
            deadlines(
                Duration::from_secs(3600),
                Duration::from_secs(3),
                Duration::from_secs(3600),
            ),
        ),
    )
    .await;
    // PICKED_UP under the id the delivery deadline's event used to get, and its new one refused.
    let old_style = format!("{id}:delivery_deadline:2");
    let picked = envelope(
        &old_style,
        EventType::PickedUp,
        json!({"partner_order_number": "PN-D"}),
        ActorKind::Partner,
    );
    assert_eq!(apply_event(&order, picked).await.unwrap().version, 1);
    let mut forged = envelope(
        &format!("wf:{id}:delivery_deadline:2"),
        EventType::DeliveryFailed,
        json!({"reason": "OTHER"}),
        ActorKind::Partner,
    );
    let refused = apply_event(&order, forged.clone()).await.unwrap_err();
    assert!(refused.starts_with("INVALID_EVENT_ID"), "{refused}");
    forged.actor.kind = ActorKind::System;
    let refused = apply_event(&order, forged).await.unwrap_err();
    assert!(refused.starts_with("FORBIDDEN_ACTOR"), "{refused}");

    // The deadline still fires: the order fails for DELIVERY_TIMEOUT and escalates.
    let view = wait_for(&order, "the delivery deadline", |v| {
        v.order.state == State::PendingByOperator
    })
    .await;
    assert_eq!(
        view.order.failure_reason,
        Some(delivery_workflows::FailureReason::DeliveryTimeout)
    );
}

#[tokio::test]
async fn a_partner_acts_only_on_the_orders_whose_pickup_it_took() {
    let stack = Stack::start_with(StackOptions::quiet().gateway(
        "PARTNER_WEBHOOK_SECRETS",
        &format!("sim={TEST_PARTNER_SECRET},rival=rival-secret-0123456"),
    ))
    .await;
    let api = stack.api();
    let id = api.paid_order("cust-i2").await;
    let (partner_id, pickup_id) = api.pickup_confirmed(&id).await;
    assert_eq!(partner_id, "sim", "the worker's partner took the pickup");
    let ops = api.token("olga", &[Role::Operator]);
    let picked = json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-R"}});

    // A partner token of another subject: the order does not exist for it.
    let rival = api.token("rival", &[Role::Partner]);
    api.post(&events_of(&id), &rival, &picked)
        .await
        .problem(404);
    // Another configured partner's signed webhook: the same.
    let hook = |partner_pickup: &str, event_id: &str, kind: &str| {
        json!({"event_id": event_id, "type": kind, "delivery_order_id": id,
               "pickup_id": partner_pickup, "data": {"partner_order_number": "PN-R"}})
    };
    api.webhook(
        "rival",
        "rival-secret-0123456",
        &hook(&pickup_id, "r-1", "PICKED_UP"),
    )
    .await
    .problem(404);
    // The right partner with somebody else's pickup id.
    let mismatch = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &hook("pk-not-this-one", "r-2", "PICKED_UP"),
        )
        .await;
    assert!(
        mismatch.problem(409)["type"]
            .as_str()
            .unwrap()
            .ends_with("pickup-mismatch")
    );
    // The right partner without naming the pickup: refused, naming the field, before anything
    // about the order is looked at.
    for (partner, secret) in [
        ("sim", TEST_PARTNER_SECRET),
        ("rival", "rival-secret-0123456"),
    ] {
        let unnamed = api
            .webhook(
                partner,
                secret,
                &json!({"event_id": format!("r-np-{partner}"), "type": "PICKED_UP",
                        "delivery_order_id": id, "data": {"partner_order_number": "PN-R"}}),
            )
            .await;
        let problem = unnamed.problem(422);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("missing-pickup-id"),
            "{}",
            unnamed.text
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("pickup_id"),
            "{}",
            unnamed.text
        );
    }
    // Location pings before the order is out: refused, and nothing reaches tracking.
    let early_ping = json!({"event_id": "r-loc-0", "type": "LOCATION", "delivery_order_id": id,
                            "pickup_id": pickup_id, "data": {"lat": 1.0, "lon": 1.0}});
    api.webhook("sim", TEST_PARTNER_SECRET, &early_ping)
        .await
        .problem(409);
    let rival_ping = json!({"event_id": "r-loc-1", "type": "LOCATION", "delivery_order_id": id,
                            "pickup_id": pickup_id, "data": {"lat": 1.0, "lon": 1.0}});
    api.webhook("rival", "rival-secret-0123456", &rival_ping)
        .await
        .problem(404);
    let read = api
        .get(&format!("/api/v1/delivery-orders/{id}"), &ops)
        .await;
    assert_eq!(read.json["state"], "CREATED");
    assert_eq!(read.json["version"], 0);

    // The partner that took it, on its pickup: applied, and its pings now count.
    let applied = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &hook(&pickup_id, "r-3", "PICKED_UP"),
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["state"], "PICKED_UP");
    let ping = api.webhook("sim", TEST_PARTNER_SECRET, &early_ping).await;
    assert_eq!(ping.status, 200, "{}", ping.text);
    // A ping names the pickup too: none is 422, another is 409, and neither is tracked.
    let unnamed_ping = json!({"event_id": "r-loc-2", "type": "LOCATION", "delivery_order_id": id,
                              "data": {"lat": 2.0, "lon": 2.0}});
    let refused = api.webhook("sim", TEST_PARTNER_SECRET, &unnamed_ping).await;
    assert!(
        refused.problem(422)["type"]
            .as_str()
            .unwrap()
            .ends_with("missing-pickup-id"),
        "{}",
        refused.text
    );
    let other_pickup = json!({"event_id": "r-loc-3", "type": "LOCATION", "delivery_order_id": id,
                              "pickup_id": "pk-other", "data": {"lat": 3.0, "lon": 3.0}});
    let mismatched = api.webhook("sim", TEST_PARTNER_SECRET, &other_pickup).await;
    assert!(
        mismatched.problem(409)["type"]
            .as_str()
            .unwrap()
            .ends_with("pickup-mismatch"),
        "{}",
        mismatched.text
    );
    let route = api.get(&format!("/api/v1/tracking/{id}/route"), &ops).await;
    assert_eq!(
        route.json["current"]["lat"], 1.0,
        "only the ping on the order's pickup is tracked: {}",
        route.text
    );
    api.webhook("rival", "rival-secret-0123456", &rival_ping)
        .await
        .problem(404);
    // Out for delivery, a delivery or a failure must name the pickup too.
    for kind in ["DELIVERED", "DELIVERY_FAILED"] {
        let data = if kind == "DELIVERED" {
            json!({})
        } else {
            json!({"reason": "WRONG_ADDRESS"})
        };
        api.webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": format!("r-np-{kind}"), "type": kind, "delivery_order_id": id,
                    "data": data}),
        )
        .await
        .problem(422);
    }
    let order = handle(&stack.client, &id);
    let view = query_state(&order).await.unwrap();
    assert_eq!((view.order.state, view.order.version), (State::PickedUp, 1));
    capture_history(&order, "partner_bound_refuses_others").await;
}

/// An order whose pickup no partner took, with no request out: a trusted internal sender (a
/// service with Temporal access) marked it picked up while the partner was still answering, and
/// the partner then refused the job. No partner, the simulator's included, may act on it.
#[tokio::test]
async fn no_partner_acts_on_an_order_whose_pickup_no_partner_took() {
    let stack = Stack::start_with(StackOptions::quiet().gateway(
        "PARTNER_WEBHOOK_SECRETS",
        &format!("sim={TEST_PARTNER_SECRET},rival=rival-secret-0123456"),
    ))
    .await;
    let api = stack.api();
    // The partner answers slowly, then refuses the job (it does not serve postal code 00000).
    stack.sim.configure(json!({"latency_ms": 3000})).await;
    let id = new_order_id();
    let mut input = order_input(&id, far_deadlines());
    input.shipping_address.postal_code = "00000".into();
    let order = start_order(&stack.client, &stack.task_queue, input).await;
    wait_for(&order, "the pickup request out", |v| v.pickup_pending).await;
    signal(
        &order,
        "picked_up",
        json!({"event_id": "internal-pu", "partner_order_number": "PN-INTERNAL"}),
    )
    .await;
    let view = wait_for(&order, "the refused pickup request settled", |v| {
        v.order.state == State::PickedUp && !v.pickup_pending
    })
    .await;
    assert_eq!(view.order.partner.partner_id, None, "no partner took it");
    assert_eq!(view.order.partner.pickup_id, None);
    read_at(api, &id, 1).await;

    let ops = api.token("olga", &[Role::Operator]);
    for partner in ["rival", "sim"] {
        let token = api.token(partner, &[Role::Partner]);
        for body in [
            json!({"type": "DELIVERED", "event_id": format!("u-de-{partner}")}),
            json!({"type": "DELIVERY_FAILED", "event_id": format!("u-df-{partner}"),
                   "data": {"reason": "WRONG_ADDRESS"}}),
        ] {
            api.post(&events_of(&id), &token, &body).await.problem(404);
        }
        let batch = api
            .post(
                "/api/v1/event-batches",
                &token,
                &json!({"events": [{"delivery_order_id": id, "type": "DELIVERED",
                                    "event_id": format!("u-batch-{partner}")}]}),
            )
            .await;
        // As `/events` answers it: the batch cannot tell the order exists.
        assert_eq!(
            batch.problem(404)["detail"],
            format!("event 0: no delivery order {id}"),
            "{}",
            batch.text
        );
    }
    // Signed webhooks, whatever pickup they name, and location pings.
    for (partner, secret) in [
        ("rival", "rival-secret-0123456"),
        ("sim", TEST_PARTNER_SECRET),
    ] {
        api.webhook(
            partner,
            secret,
            &json!({"event_id": format!("u-hook-{partner}"), "type": "DELIVERED",
                    "delivery_order_id": id, "pickup_id": "pk-guessed", "data": {}}),
        )
        .await
        .problem(404);
        api.webhook(
            partner,
            secret,
            &json!({"event_id": format!("u-loc-{partner}"), "type": "LOCATION",
                    "delivery_order_id": id, "pickup_id": "pk-guessed",
                    "data": {"lat": 1.0, "lon": 1.0}}),
        )
        .await
        .problem(404);
    }

    let view = query_state(&order).await.unwrap();
    assert_eq!((view.order.state, view.order.version), (State::PickedUp, 1));
    let read = api
        .get(&format!("/api/v1/delivery-orders/{id}"), &ops)
        .await;
    assert_eq!(read.json["state"], "PICKED_UP");
    assert!(
        read.json.get("location").is_none_or(Value::is_null),
        "{}",
        read.text
    );
    capture_history(&order, "unbound_partner_refused").await;
}

#[tokio::test]
async fn a_customer_token_with_another_role_cannot_act_on_other_customers_orders() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-victim").await;
    let partner = api.token("sim", &[Role::Partner]);
    for (kind, data) in [
        ("PICKED_UP", json!({"partner_order_number": "PN-V"})),
        ("DELIVERED", json!({})),
    ] {
        let answer = api
            .post(
                &events_of(&id),
                &partner,
                &json!({"type": kind, "data": data}),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let mallory = api.token("mallory", &[Role::Customer, Role::PaymentService]);
    for body in [
        json!({"type": "CONFIRMED"}),
        json!({"type": "CONFIRMED", "sent_as": "customer"}),
        json!({"type": "DISPUTED", "data": {"reason": "NOT_RECEIVED"}}),
    ] {
        api.post(&events_of(&id), &mallory, &body)
            .await
            .problem(404);
    }
    // Naming a role the token lacks, or one that may not send the event, is refused outright.
    api.post(
        &events_of(&id),
        &mallory,
        &json!({"type": "CONFIRMED", "sent_as": "operator"}),
    )
    .await
    .problem(403);
    api.post(
        &events_of(&id),
        &mallory,
        &json!({"type": "CONFIRMED", "sent_as": "payment_service"}),
    )
    .await
    .problem(403);

    let ops = api.token("olga", &[Role::Operator]);
    let read = read_at(api, &id, 2).await;
    assert_eq!(read["state"], "DELIVERED", "nothing Mallory sent applied");
    let trail = api.get(&events_of(&id), &ops).await;
    assert!(
        !trail.text.contains("mallory"),
        "no trace of Mallory in the audit trail: {}",
        trail.text
    );
    // The order's own customer, holding the same two roles, confirms.
    let owner = api.token("cust-victim", &[Role::Customer, Role::PaymentService]);
    let confirmed = api
        .post(&events_of(&id), &owner, &json!({"type": "CONFIRMED"}))
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(confirmed.json["state"], "DELIVERY_CONFIRMED");
}

#[tokio::test]
async fn an_event_id_reused_for_another_event_is_a_conflict_and_a_retry_gets_the_original() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i3").await;
    let partner = api.token("sim", &[Role::Partner]);
    let customer = api.token("cust-i3", &[Role::Customer]);
    let picked = json!({"type": "PICKED_UP", "event_id": "X-1",
                        "data": {"partner_order_number": "PN-X"}});
    let first = api.post(&events_of(&id), &partner, &picked).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let delivered = api
        .post(
            &events_of(&id),
            &partner,
            &json!({"type": "DELIVERED", "event_id": "X-2"}),
        )
        .await;
    assert_eq!(delivered.json["state"], "DELIVERED");

    let reused = api
        .post(
            &events_of(&id),
            &customer,
            &json!({"type": "CONFIRMED", "event_id": "X-1"}),
        )
        .await;
    let problem = reused.problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-conflict")
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("PICKED_UP") && detail.contains("version 1"),
        "{detail}"
    );
    let other_data = api
        .post(
            &events_of(&id),
            &partner,
            &json!({"type": "PICKED_UP", "event_id": "X-1",
                    "data": {"partner_order_number": "PN-OTHER"}}),
        )
        .await;
    other_data.problem(409);

    // The same event again: the answer it got then.
    let retry = api.post(&events_of(&id), &partner, &picked).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json["state"], "PICKED_UP");
    assert_eq!(retry.json["version"], 1);
    let read = read_at(api, &id, 2).await;
    assert_eq!(read["state"], "DELIVERED", "the conflict changed nothing");
}

#[tokio::test]
async fn repeats_and_refusals_add_nothing_to_the_history() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i4").await;
    let partner = api.token("sim", &[Role::Partner]);
    let order = handle(&stack.client, &id);
    let picked = json!({"type": "PICKED_UP", "event_id": "H-1",
                        "data": {"partner_order_number": "PN-H"}});
    assert_eq!(
        api.post(&events_of(&id), &partner, &picked).await.status,
        200
    );
    // Let the projection and the tasks that follow the event settle: the history stops growing.
    read_at(api, &id, 1).await;
    let before = settled_history_len(&order).await;

    for n in 0..100 {
        // The same event again, with the gateway's per-request content (a new request id).
        let again = api.post(&events_of(&id), &partner, &picked).await;
        assert_eq!(again.status, 200, "{}", again.text);
        // The same event in a batch of its own.
        let batch = api
            .post(
                "/api/v1/event-batches",
                &partner,
                &json!({"events": [{"delivery_order_id": id, "type": "PICKED_UP",
                                    "event_id": "H-1",
                                    "data": {"partner_order_number": "PN-H"}}]}),
            )
            .await;
        assert_eq!(batch.status, 200, "repeat {n}: {}", batch.text);
        assert_eq!(batch.json["results"][0]["version"], 1);
        // Refused events.
        api.post(
            &events_of(&id),
            &partner,
            &json!({"type": "CONFIRMED", "event_id": format!("H-bad-{n}")}),
        )
        .await
        .problem(403);
        api.post(
            &events_of(&id),
            &partner,
            &json!({"type": "PICKED_UP", "event_id": format!("H-again-{n}"),
                    "data": {"partner_order_number": "PN-H"}}),
        )
        .await
        .problem(409);
    }
    let after = history_len(&order).await;
    assert_eq!(
        after, before,
        "400 repeats and refusals left no trace in the history"
    );
}

/// A coordinator retries its steps; Temporal answers a retry by its update id while it
/// remembers it, and the order's validators answer the rest (a new update id, or a run continued
/// as new), so a repeated prepare, commit or abort never reaches the history.
#[tokio::test]
async fn repeated_batch_steps_are_answered_and_add_nothing_to_the_history() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i9").await;
    let order = handle(&stack.client, &id);
    let orders = DeliveryOrderClient::new(TemporalTarget::new(
        stack.client.clone(),
        stack.task_queue.clone(),
    ));

    prepare(&order, "again-batch", 60_000, "A-1").await.unwrap();
    let held = settled_history_len(&order).await;
    for _ in 0..10 {
        let repeated = prepare(&order, "again-batch", 60_000, "A-1")
            .await
            .unwrap_err();
        assert_eq!(
            repeated.code(),
            RejectionCode::BatchStepRepeated,
            "{repeated}"
        );
        assert_eq!(repeated.outcome().map(|o| o.version), Some(0));
    }
    // Through the client the coordinator uses, a repeat is its answer.
    let again = picked_up_batch("again-batch", 60_000, "A-1");
    assert_eq!(orders.prepare_batch(&id, again).await.unwrap().version, 0);
    assert_eq!(
        history_len(&order).await,
        held,
        "repeated prepares left no trace"
    );

    assert_eq!(decide(&order, "again-batch", true).await.unwrap(), 1);
    read_at(api, &id, 1).await;
    let committed = settled_history_len(&order).await;
    for _ in 0..10 {
        let commit = decide(&order, "again-batch", true).await.unwrap_err();
        assert_eq!(commit.code(), RejectionCode::BatchStepRepeated, "{commit}");
        assert!(
            commit
                .outcome()
                .is_some_and(|o| o.applied && o.version == 1)
        );
        let abort = decide(&order, "again-batch", false).await.unwrap_err();
        assert_eq!(abort.code(), RejectionCode::BatchStepRepeated, "{abort}");
    }
    let commit = orders.commit_batch(&id, "again-batch").await.unwrap();
    assert_eq!((commit.state, commit.version), (State::PickedUp, 1));
    assert_eq!(
        orders
            .abort_batch(&id, "again-batch")
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        history_len(&order).await,
        committed,
        "repeated commits and aborts left no trace"
    );

    // An abort of a batch not seen yet still runs (its late prepare must not hold the order),
    // and only its repeat is answered.
    decide(&order, "aborted-early", false).await.unwrap();
    let repeated = decide(&order, "aborted-early", false).await.unwrap_err();
    assert_eq!(repeated.code(), RejectionCode::BatchStepRepeated);
}

/// Signals to a held order wait for its batch, at most `DEFERRED_KEPT` of them: one more is
/// refused and recorded (not queued), and when the batch ends the waiting ones apply in arrival
/// order (the first moves the order, the repeats are refused), so a flood during a hold cannot
/// grow the workflow's state without bound.
#[tokio::test]
async fn a_held_order_keeps_a_bounded_queue_of_waiting_signals() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i10").await;
    let order = handle(&stack.client, &id);
    prepare(&order, "queue-batch", 60_000, "Q-batch")
        .await
        .unwrap();

    let overflow = 5;
    for n in 0..DEFERRED_KEPT + overflow {
        signal(
            &order,
            "picked_up",
            json!({"event_id": format!("Q-{n}"), "partner_order_number": format!("PN-Q{n}")}),
        )
        .await;
    }
    let held = wait_for(&order, "the signals beyond the queue refused", |v| {
        v.order.rejected_total >= overflow as u64
    })
    .await;
    assert_eq!(
        held.order.version, 0,
        "nothing applies while the batch holds"
    );
    assert_eq!(held.order.rejected_total, overflow as u64);
    let refused: Vec<&str> = held
        .order
        .rejected
        .iter()
        .map(|r| r.event_id.as_deref().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (DEFERRED_KEPT..DEFERRED_KEPT + overflow)
        .map(|n| format!("Q-{n}"))
        .collect();
    assert_eq!(
        refused, expected,
        "the latest arrivals are the refused ones"
    );
    assert!(
        held.order
            .rejected
            .iter()
            .all(|r| r.reason.contains("already wait")),
        "{:?}",
        held.order.rejected
    );

    // The batch ends: the first waiting event applies, the other waiting ones are refused as
    // what they are now (a second PICKED_UP), and nothing stays queued.
    decide(&order, "queue-batch", false).await.unwrap();
    let released = wait_for(&order, "the waiting signals handled", |v| {
        v.order.rejected_total == (overflow + DEFERRED_KEPT - 1) as u64
    })
    .await;
    assert_eq!(
        (released.order.state, released.order.version),
        (State::PickedUp, 1)
    );
    assert_eq!(
        released.order.partner.partner_order_number.as_deref(),
        Some("PN-Q0"),
        "in arrival order"
    );
    assert_eq!(
        released.order.rejected.len(),
        delivery_workflows::machine::REJECTED_KEPT,
        "the record of refusals is bounded too"
    );
}

/// A batch of one partner `PICKED_UP` with id `event_id`, held for `lease_ms`.
fn picked_up_batch(batch_id: &str, lease_ms: u64, event_id: &str) -> BatchPrepare {
    BatchPrepare {
        batch_id: batch_id.into(),
        events: vec![envelope(
            event_id,
            EventType::PickedUp,
            json!({"partner_order_number": "PN-L"}),
            ActorKind::Partner,
        )],
        lease_ms: Some(lease_ms),
    }
}

async fn prepare(
    order: &OrderHandle,
    batch_id: &str,
    lease_ms: u64,
    event_id: &str,
) -> Result<(), Refusal> {
    let prepare = picked_up_batch(batch_id, lease_ms, event_id);
    match order
        .execute_update(
            DeliveryOrderWorkflow::prepare_batch,
            prepare,
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => Err(refusal(error).await),
    }
}

/// The workflow's typed refusal of an update (anything else fails the test).
async fn refusal(error: WorkflowUpdateError) -> Refusal {
    let error = decoded_update_error(error).await;
    match &error {
        WorkflowUpdateError::Failed(failure) => Refusal::from_failure(failure),
        _ => None,
    }
    .unwrap_or_else(|| panic!("not a refusal: {error:#}"))
}

async fn decide(order: &OrderHandle, batch_id: &str, commit: bool) -> Result<u64, Refusal> {
    let decision = BatchDecision {
        batch_id: batch_id.into(),
    };
    let options = WorkflowExecuteUpdateOptions::default();
    let answer = if commit {
        order
            .execute_update(DeliveryOrderWorkflow::commit_batch, decision, options)
            .await
    } else {
        order
            .execute_update(DeliveryOrderWorkflow::abort_batch, decision, options)
            .await
    };
    match answer {
        Ok(outcome) => Ok(outcome.version),
        Err(error) => Err(refusal(error).await),
    }
}

#[tokio::test]
async fn a_batch_hold_that_is_never_decided_ends_with_its_lease() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let id = api.paid_order("cust-i5").await;
    let order = handle(&stack.client, &id);
    let partner = api.token("sim", &[Role::Partner]);

    // A coordinator prepared the order and then vanished (terminated, reset, never commits).
    prepare(&order, "lost-batch", 3_000, "L-1").await.unwrap();
    let locked = api
        .post(
            &events_of(&id),
            &partner,
            &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-L2"}}),
        )
        .await;
    locked.problem(409);
    // A partner's webhook meanwhile is asked to retry, not refused for good.
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let hook = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "L-hook", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": {"partner_order_number": "PN-L3"}}),
        )
        .await;
    let problem = hook.problem(503);
    assert_eq!(problem["retry_after_seconds"], 1);
    assert!(hook.headers.contains_key("retry-after"));

    // The lease runs out: the order takes events again, and nothing of the batch applied.
    let applied = eventually("the order released by its lease", || async {
        let answer = api
            .webhook(
                "sim",
                TEST_PARTNER_SECRET,
                &json!({
            "event_id": "L-hook", "type": "PICKED_UP", "delivery_order_id": id,
            "pickup_id": pickup_id, "data": {"partner_order_number": "PN-L3"}}),
            )
            .await;
        (answer.status == 200).then_some(answer.json)
    })
    .await;
    assert_eq!(applied["state"], "PICKED_UP");
    assert_eq!(applied["version"], 1);
    let view = query_state(&order).await.unwrap();
    assert_eq!(
        view.order.partner.partner_order_number.as_deref(),
        Some("PN-L3")
    );

    // The late commit learns the batch was not applied; a late prepare cannot hold it again.
    let late_commit = decide(&order, "lost-batch", true).await.unwrap_err();
    assert_eq!(
        late_commit.code(),
        RejectionCode::BatchReleased,
        "{late_commit}"
    );
    let late_prepare = prepare(&order, "lost-batch", 3_000, "L-4")
        .await
        .unwrap_err();
    assert_eq!(
        late_prepare.code(),
        RejectionCode::BatchFinished,
        "{late_prepare}"
    );
    // Nor can a prepare that arrives after its abort.
    decide(&order, "aborted-first", false).await.unwrap();
    let after_abort = prepare(&order, "aborted-first", 3_000, "L-5")
        .await
        .unwrap_err();
    assert_eq!(
        after_abort.code(),
        RejectionCode::BatchFinished,
        "{after_abort}"
    );
}

/// An outage can hold a coordinator up past its orders' leases (seen in a whole-stack restart:
/// one order of a batch released itself, the other took the commit). An order whose lease ran
/// out asks the coordinator first and keeps the hold while it runs, so a late commit still
/// applies; once the coordinator is gone, the order releases itself at its next look.
#[tokio::test]
async fn a_hold_outlives_its_lease_while_its_coordinator_runs_and_ends_once_it_is_gone() {
    let stack = quiet_stack().await;
    let api = stack.api();
    let partner = api.token("sim", &[Role::Partner]);
    let delayed = api.paid_order("cust-i6").await;
    let abandoned = api.paid_order("cust-i7").await;
    // Coordinators that run but make no progress, under the ids the orders' batches would have.
    for batch in ["delayed-batch", "abandoned-batch"] {
        start_stalled_coordinator(stack.temporal, batch);
    }
    prepare(
        &handle(&stack.client, &delayed),
        "delayed-batch",
        1_000,
        "D-1",
    )
    .await
    .unwrap();
    prepare(
        &handle(&stack.client, &abandoned),
        "abandoned-batch",
        1_000,
        "A-1",
    )
    .await
    .unwrap();

    // Well past both one-second leases, both orders still hold their batches.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in [&delayed, &abandoned] {
        assert_locked_by_batch(api, &partner, id).await;
    }

    // The delayed commit applies: the batch is all or nothing still.
    let version = decide(&handle(&stack.client, &delayed), "delayed-batch", true)
        .await
        .unwrap();
    assert_eq!(version, 1);

    // The other coordinator is terminated: the order releases itself, nothing applied.
    let (terminated, out, err) = stack.temporal.cli(&[
        "workflow",
        "terminate",
        "--workflow-id",
        &delivery_workflows::batch::batch_workflow_id("abandoned-batch"),
        "--reason",
        "abandoned",
    ]);
    assert!(terminated, "{out}{err}");
    let abandoned_order = handle(&stack.client, &abandoned);
    let (_, pickup_id) = api.pickup_confirmed(&abandoned).await;
    let applied = eventually(
        "the order released once its coordinator is gone",
        || async {
            let answer = api
            .webhook(
                "sim",
                TEST_PARTNER_SECRET,
                &json!({"event_id": "A-hook", "type": "PICKED_UP", "delivery_order_id": abandoned,
                        "pickup_id": pickup_id, "data": {"partner_order_number": "PN-A"}}),
            )
            .await;
            (answer.status == 200).then_some(answer.json)
        },
    )
    .await;
    // Its own event, not the batch's.
    assert_eq!(applied["version"], 1);
    let late = decide(&abandoned_order, "abandoned-batch", true)
        .await
        .unwrap_err();
    assert_eq!(late.code(), RejectionCode::BatchReleased, "{late}");
    let view = query_state(&abandoned_order).await.unwrap();
    assert_eq!(
        view.order.partner.partner_order_number.as_deref(),
        Some("PN-A")
    );
    capture_history(&handle(&stack.client, &delayed), "lease_outlived_commit").await;
    capture_history(&abandoned_order, "lease_outlived_coordinator_gone").await;
}

/// A hold kept past its lease while its coordinator runs is carried across continue-as-new: the
/// lease keeper marks the run for it once the server suggests it (here after a few events; in
/// production after thousands of rechecks), the run that takes over still refuses other events,
/// and the late commit applies there.
#[tokio::test]
async fn a_hold_kept_for_a_running_coordinator_is_carried_across_continue_as_new() {
    let temporal = dedicated_temporal_server(&[
        "--dynamic-config-value",
        "limit.historyCount.suggestContinueAsNew=25",
    ])
    .await;
    let stack = Stack::start_with(StackOptions::quiet().with_gateway().on(temporal)).await;
    let api = stack.api();
    let partner = api.token("sim", &[Role::Partner]);
    let id = api.paid_order("cust-i8").await;
    let order = handle(&stack.client, &id);
    start_stalled_coordinator(stack.temporal, "kept-batch");
    prepare(&order, "kept-batch", 1_000, "K-1").await.unwrap();
    let runs = query_state(&order).await.unwrap().runs;
    let held_run = order
        .describe(WorkflowDescribeOptions::default())
        .await
        .expect("describing the order")
        .raw_description
        .workflow_execution_info
        .and_then(|info| info.execution)
        .expect("the run")
        .run_id;

    let continued = wait_for(&order, "a new run holding the batch", |v| v.runs > runs).await;
    assert!(continued.order.state == State::Created, "{continued:?}");
    // It was the lease keeper that continued: the run that held the batch asked whether its
    // coordinator runs before it continued as new.
    let (shown, history, err) = stack.temporal.cli(&[
        "workflow",
        "show",
        "--workflow-id",
        &delivery_workflows::workflow_id(&id),
        "--run-id",
        &held_run,
        "--output",
        "json",
    ]);
    assert!(shown, "{err}");
    let asked = history
        .find("\"batch_coordinator_running\"")
        .unwrap_or_else(|| panic!("the held run did not ask about its coordinator:\n{history}"));
    let continued_at = history
        .find("CONTINUED_AS_NEW")
        .expect("the held run continued as new");
    assert!(asked < continued_at);
    assert_locked_by_batch(api, &partner, &id).await;
    // The coordinator commits late: the batch's event applies in the run that took over.
    let version = decide(&order, "kept-batch", true).await.unwrap();
    assert_eq!(version, 1);
    let view = query_state(&order).await.unwrap();
    assert!(view.runs > runs);
    assert_eq!(view.order.state, State::PickedUp);
    assert_eq!(
        view.order.partner.partner_order_number.as_deref(),
        Some("PN-L")
    );
    capture_runs(&stack.client, &id, "hold_across_continue_as_new").await;
}

/// Sends a batch of `event` (`{type, data}`) to `id` then to `stalled` (an order on a task queue
/// no worker polls) through the gateway as `token`'s caller, in the background, and returns once
/// its coordinator has had the first order's prepare answered: the coordinator then waits on the
/// second prepare, so the batch is caught between the first hold and any decision. Returns the
/// request (its status and body) and the coordinator (its workflow id and handle).
async fn batch_caught_after_first_prepare(
    stack: &Stack,
    token: &str,
    event: Value,
    id: &str,
    stalled: &str,
) -> (
    tokio::task::JoinHandle<(u16, String)>,
    (
        String,
        temporalio_client::WorkflowHandle<temporalio_client::Client, EventBatchWorkflow>,
    ),
) {
    let api = stack.api();
    let request = {
        let url = format!("{}/api/v1/event-batches", api.url);
        let token = token.to_owned();
        let item = |order: &str, event_id: &str| {
            let mut item = event.clone();
            item["delivery_order_id"] = json!(order);
            item["event_id"] = json!(event_id);
            item
        };
        let body = json!({"events": [item(id, "T-1"), item(stalled, "T-2")]});
        tokio::spawn(async move {
            let answer = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("gateway reachable");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        })
    };

    // The coordinator, once the first order answered its prepare.
    let query = format!(
        "WorkflowType = 'EventBatchWorkflow' AND TaskQueue = '{}'",
        stack.task_queue
    );
    let client = &stack.client;
    let coordinator = eventually("the coordinator past its first prepare", || {
        let query = query.clone();
        async move {
            let ids: Vec<String> = client
                .list_workflows(query, WorkflowListOptions::default())
                .filter_map(|run| async move { run.ok().map(|w| w.id().to_owned()) })
                .collect()
                .await;
            let [workflow_id] = ids.as_slice() else {
                return None;
            };
            let coordinator = client.get_workflow_handle::<EventBatchWorkflow>(workflow_id);
            let events = coordinator
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await
                .ok()?;
            events
                .iter()
                .any(|e| e.event_type() == HistoryEventType::ActivityTaskCompleted)
                .then_some((workflow_id.clone(), coordinator))
        }
    })
    .await;
    (request, coordinator)
}

/// A real coordinator, started through the batch API, terminated after its first order held
/// itself and before any commit or abort: the order releases itself when the hold's lease runs
/// out, and takes commands again; nothing of the batch applied.
#[tokio::test]
async fn a_terminated_batch_coordinator_leaves_its_order_to_the_lease() {
    let stack = Stack::start_with(StackOptions::quiet().gateway("BATCH_LEASE_MS", "1000")).await;
    let api = stack.api();
    let id = api.paid_order("cust-i6").await;
    let order = handle(&stack.client, &id);
    // The batch's second order runs on a task queue no worker polls: the coordinator waits on
    // its prepare, so it is caught between the first order's prepare and any decision (the
    // first order's lease: BATCH_LEASE_MS plus the prepare time allowed to the order after it).
    let stalled = new_order_id();
    let stalled_order = start_order(
        &stack.client,
        &format!("{}-unpolled", stack.task_queue),
        order_input(&stalled, far_deadlines()),
    )
    .await;
    let partner = api.token("sim", &[Role::Partner]);
    let picked = json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-T1"}});
    let (request, coordinator) =
        batch_caught_after_first_prepare(&stack, &partner, picked, &id, &stalled).await;
    let (coordinator_id, coordinator) = coordinator;
    let batch_id = coordinator_id
        .strip_prefix("event-batch-")
        .expect("a batch workflow id")
        .to_owned();
    coordinator
        .terminate(
            WorkflowTerminateOptions::builder()
                .reason("the coordinator is lost")
                .build(),
        )
        .await
        .expect("terminating the coordinator");
    let (status, text) = request.await.unwrap();
    assert_eq!(
        status, 503,
        "the batch's caller learns it did not finish: {text}"
    );

    // Its order still holds itself for the dead batch...
    let picked =
        json!({"type": "PICKED_UP", "event_id": "T-3", "data": {"partner_order_number": "PN-T3"}});
    let locked = api.post(&events_of(&id), &partner, &picked).await;
    assert!(
        locked.problem(409)["type"]
            .as_str()
            .unwrap()
            .ends_with("locked-by-batch"),
        "{}",
        locked.text
    );
    // ...until the lease runs out: then it takes commands again.
    let applied = eventually("the order released by its lease", || async {
        let answer = api.post(&events_of(&id), &partner, &picked).await;
        (answer.status == 200).then_some(answer.json)
    })
    .await;
    assert_eq!(
        (applied["state"].as_str(), applied["version"].as_u64()),
        (Some("PICKED_UP"), Some(1))
    );
    let view = query_state(&order).await.unwrap();
    assert_eq!(
        view.order.partner.partner_order_number.as_deref(),
        Some("PN-T3"),
        "nothing of the batch applied"
    );
    assert!(view.order.events.iter().all(|e| e.event_id != "T-1"));
    // The hold ended by its lease, not by an abort: a commit arriving now is told so.
    let late = decide(&order, &batch_id, true).await.unwrap_err();
    assert_eq!(late.code(), RejectionCode::BatchReleased, "{late}");
    assert!(late.message().contains("lease ran out"), "{late}");
    capture_history(&order, "batch_released_by_lease").await;

    stalled_order
        .terminate(WorkflowTerminateOptions::default())
        .await
        .expect("terminating the order nobody runs");
}

/// An order of a batch whose workflow is terminated after its prepare, before the commit
/// reaches it: the commit can never apply there, so the coordinator ends instead of retrying for
/// good, and the batch's other order, held for a coordinator that no longer runs, releases itself
/// by its lease and takes events again.
#[tokio::test]
async fn a_batch_whose_order_vanished_before_the_commit_lets_the_others_go() {
    let stack = Stack::start_with(StackOptions::quiet().gateway("BATCH_LEASE_MS", "1000")).await;
    let api = stack.api();
    let id = api.paid_order("cust-i6b").await;
    let stalled = new_order_id();
    let stalled_queue = format!("{}-later", stack.task_queue);
    let stalled_order = start_order(
        &stack.client,
        &stalled_queue,
        order_input(&stalled, far_deadlines()),
    )
    .await;
    // An operator's cancel: the second order can take it as soon as it runs (a partner's event
    // would wait for its pickup to be confirmed).
    let cancel = json!({"type": "CANCEL", "data": {"reason": "duplicate order"}});
    let ops = api.token("olga", &[Role::Operator]);
    let (request, (_, coordinator)) =
        batch_caught_after_first_prepare(&stack, &ops, cancel, &id, &stalled).await;
    handle(&stack.client, &id)
        .terminate(
            WorkflowTerminateOptions::builder()
                .reason("an operator ended the order")
                .build(),
        )
        .await
        .expect("terminating the first order");
    // A worker for the second order: it holds itself for the batch, which then decides to commit
    // and finds its first order gone.
    let _later =
        WorkerProcess::start(temporal_server().await, &stalled_queue, &stack.sim.url, &[]).await;
    let ended = eventually("the coordinator ended", || async {
        let described = coordinator
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()?;
        let status = described.raw_description.workflow_execution_info?.status;
        (status != WorkflowExecutionStatus::Running as i32).then_some(status)
    })
    .await;
    assert_eq!(ended, WorkflowExecutionStatus::Failed as i32);
    let (status, text) = request.await.unwrap();
    assert_eq!(
        status, 503,
        "the batch's caller learns it did not finish: {text}"
    );

    // The second order releases itself by its lease and takes events again; nothing of the
    // batch applied there.
    let picked = envelope(
        "T-4",
        EventType::PickedUp,
        json!({"partner_order_number": "PN-T4"}),
        ActorKind::Partner,
    );
    let applied = eventually("the second order released by its lease", || async {
        apply_event(&stalled_order, picked.clone()).await.ok()
    })
    .await;
    assert_eq!((applied.state, applied.version), (State::PickedUp, 1));
    let view = query_state(&stalled_order).await.unwrap();
    assert!(view.order.events.iter().all(|e| e.event_id != "T-2"));
    stalled_order
        .terminate(WorkflowTerminateOptions::default())
        .await
        .expect("terminating the second order");
}

/// A deadline armed before the run continues as new fires when it was due, in the new run: the
/// continuation carries what is left of it, not a fresh one.
#[tokio::test]
async fn a_deadline_armed_before_continue_as_new_fires_on_time_in_the_new_run() {
    let stack = Stack::quiet().await;
    let hour = Duration::from_secs(3600);
    let delivery = Duration::from_secs(25);
    let slack = chrono::Duration::seconds(3);
    let id = new_order_id();
    let order = start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&id, deadlines(hour, delivery, hour)),
    )
    .await;
    let picked = envelope(
        "can-pu",
        EventType::PickedUp,
        json!({"partner_order_number": "PN-C"}),
        ActorKind::Partner,
    );
    apply_event(&order, picked).await.unwrap();
    // Part of the deadline passes in the first run.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Signals that cannot apply (each one history event) push the history past its limit.
    let signals = HISTORY_LIMIT as usize + 200;
    futures::stream::iter(0..signals)
        .for_each_concurrent(32, |_| {
            let order = &order;
            async move { signal(order, "picked_up", json!("not an object")).await }
        })
        .await;
    let view = wait_for(&order, "the run to continue as new", |v| v.runs > 0).await;
    assert_eq!(
        view.order.state,
        State::PickedUp,
        "the run continued as new before the deadline was due"
    );
    let time = |at: &str| chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
    let picked_at = time(&view.order.events[0].occurred_at);
    let run_started: chrono::DateTime<chrono::Utc> = order
        .describe(WorkflowDescribeOptions::default())
        .await
        .expect("describing the order")
        .start_time()
        .expect("the run's start time")
        .into();
    assert!(
        run_started.signed_duration_since(picked_at) > slack,
        "the new run must start well after the deadline was armed for this test to tell a carried deadline from a fresh one"
    );

    let failed = wait_for(&order, "the delivery deadline in the new run", |v| {
        v.order.state == State::PendingByOperator
    })
    .await;
    assert!(failed.runs > 0);
    assert_eq!(
        failed.order.failure_reason,
        Some(delivery_workflows::FailureReason::DeliveryTimeout)
    );
    let fired = &failed.order.events[1];
    assert_eq!(fired.event_type, EventType::DeliveryFailed);
    let waited = time(&fired.occurred_at).signed_duration_since(picked_at);
    let due = chrono::Duration::from_std(delivery).unwrap();
    assert!(
        waited >= due && waited < due + slack,
        "the deadline fired {waited} after it was armed; it was due after {due}"
    );
    // The run that took over, with the deadline it carried (the first run is like the flood's).
    capture_history(
        &handle(&stack.client, &id),
        "deadline_after_continue_as_new",
    )
    .await;
}
