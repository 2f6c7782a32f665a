//! Atomic event batches: all events of a batch apply, in order, or none do; a held order refuses
//! other commands and keeps callbacks until the batch ends; the coordinator finishes across a
//! worker crash.

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_workflows::delivery_order::{BatchDecision, BatchPrepare};
use delivery_workflows::{ActorKind, DeliveryOrderWorkflow, EventType, State};
use serde_json::{Value, json};
use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowGetResultOptions};

fn event(order: &str, kind: &str, data: Value) -> Value {
    json!({"delivery_order_id": order, "type": kind, "data": data})
}

async fn versions(stack: &Stack, orders: &[&str]) -> Vec<(State, u64)> {
    let mut out = Vec::new();
    for order in orders {
        let view = query_state(&handle(&stack.client, order)).await.unwrap();
        out.push((view.order.state, view.order.version));
    }
    out
}

/// `BatchRolledBack` entries on the delivery-events stream for this correlation id.
async fn rolled_back(correlation_id: &str) -> Vec<Value> {
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{}delivery-events", redis_prefix().await);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("payload"))
        .filter_map(|p| serde_json::from_str::<Value>(&p).ok())
        .filter(|p| p["type"] == "BatchRolledBack" && p["correlation_id"] == correlation_id)
        .collect()
}

#[tokio::test]
async fn a_batch_applies_every_event_in_order_under_one_correlation_id() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (a, b) = (
        api.paid_order("cust-b1").await,
        api.paid_order("cust-b1").await,
    );
    let partner = api.token("sim", &[Role::Partner]);
    let counted = |outcome: &'static str, kind: &'static str| async move {
        let metrics = api.metrics().await;
        let line = format!("delivery_api_events_total{{outcome=\"{outcome}\",type=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let picked_before = counted("applied", "PICKED_UP").await;
    let applied = api
        .post(
            "/api/v1/event-batches",
            &partner,
            &json!({"correlation_id": "manifest-17", "events": [
                event(&a, "PICKED_UP", json!({"partner_order_number": "PN-A"})),
                event(&b, "PICKED_UP", json!({"partner_order_number": "PN-B"})),
                event(&a, "DELIVERED", json!({"proof": {"signed_by": "Ada"}})),
            ]}),
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["correlation_id"], "manifest-17");
    assert_eq!(applied.json["results"][0]["state"], "DELIVERED");
    assert_eq!(applied.json["results"][0]["version"], 2);
    assert_eq!(applied.json["results"][1]["state"], "PICKED_UP");
    assert_eq!(
        counted("applied", "PICKED_UP").await - picked_before,
        2.0,
        "each event of the batch counted by its type"
    );

    let ops = api.token("olga", &[Role::Operator]);
    let trail = eventually("both events of A in the audit trail", || async {
        let t = api
            .get(&format!("/api/v1/delivery-orders/{a}/events"), &ops)
            .await;
        (t.json["events"].as_array().is_some_and(|e| e.len() == 3)).then_some(t.json)
    })
    .await;
    let entries = trail["events"].as_array().unwrap();
    assert_eq!(entries[0]["type"], "CREATE");
    for e in &entries[1..] {
        assert_eq!(e["correlation_id"], "manifest-17");
        assert_eq!(e["actor"]["kind"], "partner");
    }
}

/// An `Idempotency-Key` names one batch: the same events again join it and answer its outcome
/// (nothing applied twice); other events under the same key are refused and apply nothing.
#[tokio::test]
async fn a_reused_batch_key_with_other_events_is_refused_and_applies_nothing() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (a, b) = (
        api.paid_order("cust-bk").await,
        api.paid_order("cust-bk").await,
    );
    let partner = api.token("sim", &[Role::Partner]);
    let post = |body: Value| {
        let api = &api;
        let partner = &partner;
        async move {
            api.send(
                reqwest::Method::POST,
                "/api/v1/event-batches",
                Some(partner),
                Some(&body),
                &[("Idempotency-Key", "manifest-9")],
            )
            .await
        }
    };
    let first = json!({"events": [
        event(&a, "PICKED_UP", json!({"partner_order_number": "PN-K"}))
    ]});
    let applied = post(first.clone()).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["results"][0]["version"], 1);

    let again = post(first).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["batch_id"], applied.json["batch_id"]);
    assert_eq!(
        again.json["results"][0]["version"], 1,
        "nothing applied twice"
    );

    for other in [
        json!({"events": [event(&a, "DELIVERED", json!({"proof": {"signed_by": "Ada"}}))]}),
        json!({"events": [
            event(&b, "PICKED_UP", json!({"partner_order_number": "PN-K"}))
        ]}),
    ] {
        let refused = post(other).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        let problem = refused.problem(409);
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/idempotency-key-reused")),
            "{}",
            refused.text
        );
    }
    assert_eq!(
        versions(&stack, &[&a, &b]).await,
        [(State::PickedUp, 1), (State::Created, 0)],
        "the refused batches applied nothing"
    );
}

#[tokio::test]
async fn a_batch_that_cannot_apply_changes_nothing_wherever_it_fails() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let partner = api.token("sim", &[Role::Partner]);
    for position in 0..3 {
        let (a, b) = (
            api.paid_order("cust-b2").await,
            api.paid_order("cust-b2").await,
        );
        let mut events = vec![
            event(&a, "PICKED_UP", json!({"partner_order_number": "PN-A"})),
            event(&b, "PICKED_UP", json!({"partner_order_number": "PN-B"})),
            event(&a, "DELIVERED", json!({"proof": {"signed_by": "Ada"}})),
        ];
        // Each a different way to fail: wrong state, bad payload, wrong state late in a sequence.
        events[position] = match position {
            0 => event(&a, "DELIVERED", json!({})),
            1 => event(
                &b,
                "PICKED_UP",
                json!({"partner_order_number": "PN-B", "colour": "red"}),
            ),
            _ => event(&a, "PICKED_UP", json!({"partner_order_number": "PN-again"})),
        };
        let correlation = format!("rollback-{position}-{}", uuid::Uuid::new_v4().simple());
        let answer = api
            .post(
                "/api/v1/event-batches",
                &partner,
                &json!({"correlation_id": correlation, "events": events}),
            )
            .await;
        let problem = answer.problem(409);
        assert_eq!(problem["failed_event_index"], position, "{}", answer.text);
        let failing_order = if position == 1 { &b } else { &a };
        assert_eq!(problem["delivery_order_id"], failing_order.as_str());
        assert_eq!(
            versions(&stack, &[&a, &b]).await,
            [(State::Created, 0), (State::Created, 0)],
            "nothing applied when event {position} fails"
        );
        // Both orders are released: a single event goes through again.
        let single = api
            .post(
                &format!("/api/v1/delivery-orders/{a}/events"),
                &partner,
                &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-1"}}),
            )
            .await;
        assert_eq!(single.status, 200, "{}", single.text);
        let published = eventually("BatchRolledBack on the stream", || async {
            let found = rolled_back(&correlation).await;
            (!found.is_empty()).then_some(found)
        })
        .await;
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["failed_event_index"], position);
    }
    let customer = api.token("cust-b2", &[Role::Customer]);
    api.post(
        "/api/v1/event-batches",
        &customer,
        &json!({"events": [event(&new_order_id(), "CONFIRMED", json!({}))]}),
    )
    .await
    .problem(403);
    let refused = api
        .post(
            "/api/v1/event-batches",
            &partner,
            &json!({"events": [event("nope", "PICKED_UP", json!({}))]}),
        )
        .await;
    assert_eq!(refused.problem(400)["failed_event_index"], 0);
    // An order no workflow holds, and an order another partner carries, are answered alike:
    // 404 naming the event, so a partner's batch cannot tell which ids exist.
    let picked = |id: &str| json!({"events": [event(id, "PICKED_UP", json!({"partner_order_number": "x"}))]});
    let unknown_id = new_order_id();
    let unknown = api
        .post("/api/v1/event-batches", &partner, &picked(&unknown_id))
        .await;
    let carried_by_sim = api.paid_order("cust-b2").await;
    let rival = api.token("rival", &[Role::Partner]);
    let theirs = api
        .post("/api/v1/event-batches", &rival, &picked(&carried_by_sim))
        .await;
    for (answer, id) in [(&unknown, &unknown_id), (&theirs, &carried_by_sim)] {
        let problem = answer.problem(404);
        assert_eq!(
            problem["detail"],
            format!("event 0: no delivery order {id}"),
            "{}",
            answer.text
        );
        assert_eq!(problem["failed_event_index"], 0, "{}", answer.text);
    }
    assert_eq!(
        versions(&stack, &[&carried_by_sim]).await,
        [(State::Created, 0)]
    );
}

#[tokio::test]
async fn a_held_order_refuses_commands_and_keeps_callbacks_until_the_batch_ends() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let a = api.paid_order("cust-b3").await;
    let order = handle(&stack.client, &a);
    let prepare = BatchPrepare {
        batch_id: "held-1".into(),
        events: vec![envelope(
            "b3-pu",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-H"}),
            ActorKind::Partner,
        )],
        lease_ms: None,
    };
    order
        .execute_update(
            DeliveryOrderWorkflow::prepare_batch,
            prepare,
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
        .expect("prepared");

    let ops = api.token("olga", &[Role::Operator]);
    let refused = api
        .post(
            &format!("/api/v1/delivery-orders/{a}/events"),
            &ops,
            &json!({"type": "CANCEL", "data": {"reason": "x"}}),
        )
        .await;
    assert!(
        refused.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("LOCKED_BY_BATCH"),
        "{}",
        refused.text
    );
    // A partner callback arriving meanwhile waits for the batch instead of racing it.
    signal(
        &order,
        "delivered",
        json!({"event_id": "b3-de", "proof": {"signed_by": "Ada"}}),
    )
    .await;
    assert_eq!(versions(&stack, &[&a]).await, [(State::Created, 0)]);

    let outcome = order
        .execute_update(
            DeliveryOrderWorkflow::commit_batch,
            BatchDecision {
                batch_id: "held-1".into(),
            },
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
        .expect("committed");
    assert_eq!(
        outcome.state,
        State::Delivered,
        "the batch, then the waiting callback"
    );
    let view = query_state(&order).await.unwrap();
    let ids: Vec<&str> = view
        .order
        .events
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(ids, ["b3-pu", "b3-de"]);
    let confirm = api
        .post(
            &format!("/api/v1/delivery-orders/{a}/events"),
            &api.token("cust-b3", &[Role::Customer]),
            &json!({"type": "CONFIRMED"}),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the order finishes");
    capture_history(&order, "batch_commit_with_deferred_callback").await;

    // Abort releases without applying.
    let b = api.paid_order("cust-b3").await;
    let other = handle(&stack.client, &b);
    let prepare = BatchPrepare {
        batch_id: "held-2".into(),
        events: vec![envelope(
            "b3-x",
            EventType::PickedUp,
            json!({"partner_order_number": "PN-X"}),
            ActorKind::Partner,
        )],
        lease_ms: None,
    };
    other
        .execute_update(
            DeliveryOrderWorkflow::prepare_batch,
            prepare,
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
        .unwrap();
    let second = BatchPrepare {
        batch_id: "held-3".into(),
        events: vec![],
        lease_ms: None,
    };
    let locked = other
        .execute_update(
            DeliveryOrderWorkflow::prepare_batch,
            second,
            WorkflowExecuteUpdateOptions::default(),
        )
        .await;
    assert!(
        format!("{:?}", locked.unwrap_err()).contains("LOCKED_BY_BATCH"),
        "one batch at a time"
    );
    other
        .execute_update(
            DeliveryOrderWorkflow::abort_batch,
            BatchDecision {
                batch_id: "held-2".into(),
            },
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(versions(&stack, &[&b]).await, [(State::Created, 0)]);
    let cancel = api
        .post(
            &format!("/api/v1/delivery-orders/{b}/events"),
            &ops,
            &json!({"type": "CANCEL", "data": {"reason": "x"}}),
        )
        .await;
    assert_eq!(cancel.status, 200, "released: {}", cancel.text);
    other
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the order finishes");
    capture_history(&other, "batch_abort_then_cancel").await;
}

#[tokio::test]
async fn a_batch_finishes_when_the_worker_is_killed_while_it_runs() {
    let mut stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let (a, b) = {
        let api = stack.api();
        (
            api.paid_order("cust-b4").await,
            api.paid_order("cust-b4").await,
        )
    };
    let api_url = stack.api().url.clone();
    let token = stack.api().token("sim", &[Role::Partner]);
    let body = json!({"events": [
        event(&a, "PICKED_UP", json!({"partner_order_number": "PN-K1"})),
        event(&b, "PICKED_UP", json!({"partner_order_number": "PN-K2"})),
        event(&a, "DELIVERED", json!({})),
        event(&b, "DELIVERY_FAILED", json!({"reason": "WRONG_ADDRESS"})),
    ]});
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{api_url}/api/v1/event-batches"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    stack.worker.kill_hard();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stack.worker.restart().await;
    let response = request.await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        versions(&stack, &[&a, &b]).await,
        [(State::Delivered, 2), (State::PendingByOperator, 3)],
        "every event applied exactly once"
    );
}
