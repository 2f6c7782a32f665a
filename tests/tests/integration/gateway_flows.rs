//! The gateway end to end: payment intake, partner webhooks, customer and operator commands,
//! reads from the read model, and who may do what. Real Temporal, worker, simulator (calling
//! back through signed webhooks), PostgreSQL and Redis.

use delivery_api::auth::Role;
use delivery_tests::*;
use futures::future::join_all;
use serde_json::{Value, json};

const CUSTOMER: &[Role] = &[Role::Customer];

/// A paid order whose pickup the simulator accepted (so partner events may follow).
async fn create(stack: &Stack, customer: &str) -> (String, Value) {
    let created = stack.api().pay(customer).await;
    stack.api().pickup_confirmed(&created.0).await;
    created
}

#[tokio::test]
async fn a_paid_order_is_delivered_tracked_and_confirmed_through_the_gateway() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    let api = stack.api();
    let payer = api.token("payments", &[Role::PaymentService]);
    let payment_id = new_payment_id();
    let body = payment_event(&payment_id, "cust-ada");

    let created = api.post("/api/v1/payment-events", &payer, &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["state"], "CREATED");
    assert_eq!(created.json["version"], 0);
    let id = created.json["delivery_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        format!("/api/v1/delivery-orders/{id}")
    );
    let again = api.post("/api/v1/payment-events", &payer, &body).await;
    assert_eq!(
        again.status, 200,
        "a repeated payment answers 200: {}",
        again.text
    );
    assert_eq!(again.json, created.json, "with the same body");

    let customer = api.token("cust-ada", CUSTOMER);
    let read = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}?min_version=0"),
            &customer,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["customer_id"], "cust-ada");
    assert_eq!(
        read.json["items"].as_array().unwrap().len(),
        1,
        "only the physical book travels"
    );
    assert_eq!(read.json["shipping_address"]["country"], "GB");

    // The simulator picks up, pings locations and delivers, all through the webhook.
    let delivered = api.wait_state(&customer, &id, "DELIVERED").await;
    assert_eq!(
        delivered["allowed_events"],
        json!(["CONFIRMED", "DISPUTED"])
    );
    assert!(
        delivered["partner_order_number"]
            .as_str()
            .unwrap()
            .starts_with("PN-")
    );
    assert_eq!(delivered["driver"]["name"], "Sam Carter");
    assert!(
        delivered["location"]["lat"].is_number(),
        "location pings reached the read model: {delivered}"
    );

    let confirm = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/delivery-orders/{id}/events"),
            Some(&customer),
            Some(&json!({"type": "CONFIRMED"})),
            &[("X-Correlation-Id", "support-ticket-42")],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    assert_eq!(confirm.json["state"], "DELIVERY_CONFIRMED");
    assert_eq!(confirm.json["applied"], true);
    let version = confirm.json["version"].as_u64().unwrap();
    assert!(confirm.headers.contains_key("x-request-id"));

    let read = api
        .get(
            &format!("/api/v1/delivery-orders/{id}?min_version={version}"),
            &customer,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["state"], "DELIVERY_CONFIRMED", "read-your-writes");
    assert_eq!(read.json["allowed_events"], json!([]));

    let trail = api
        .get(&format!("/api/v1/delivery-orders/{id}/events"), &customer)
        .await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    let events = trail.json["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["CREATE", "PICKED_UP", "DELIVERED", "CONFIRMED"],
        "the creation, then the transitions; pings are not events"
    );
    // The first entry says who created the order and from which payment.
    assert_eq!(
        events[0]["actor"],
        json!({"kind": "payment_service", "id": "payments"})
    );
    assert_eq!(events[0]["data"]["payment_id"], payment_id.as_str());
    assert_eq!(events[0]["to_state"], "CREATED");
    assert!(events[0].get("from_state").is_none_or(Value::is_null));
    assert_eq!(events[1]["actor"], json!({"kind": "partner", "id": "sim"}));
    assert_eq!(events[1]["from_state"], "CREATED");
    assert_eq!(
        events[3]["actor"],
        json!({"kind": "customer", "id": "cust-ada"})
    );
    assert_eq!(events[3]["correlation_id"], "support-ticket-42");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);

    let ordering = api
        .get(
            &format!("/api/v1/orderings/ord-{payment_id}/delivery-orders"),
            &customer,
        )
        .await;
    assert_eq!(ordering.status, 200, "{}", ordering.text);
    assert_eq!(
        ordering.json["delivery_orders"][0]["delivery_order_id"],
        id.as_str()
    );

    // The worker measured how far the read model trailed the events, and the partner calls.
    let metrics = reqwest::get(&stack.worker.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let projected: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("delivery_worker_read_model_projection_lag_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no projection lag in {metrics}"));
    assert!(projected >= 3, "{projected}");
    assert!(
        metrics.contains(
            "delivery_worker_partner_requests_total{operation=\"request_pickup\",outcome=\"ok\"}"
        ),
        "{metrics}"
    );

    let operator = api.token("olga", &[Role::Operator]);
    let listed = api
        .get(
            &format!(
                "/api/v1/delivery-orders?state=DELIVERY_CONFIRMED&ordering_id=ord-{payment_id}"
            ),
            &operator,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
    assert!(listed.json["next_cursor"].is_null());
}

#[tokio::test]
async fn a_payment_of_ebooks_only_needs_no_delivery() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let payer = api.token("payments", &[Role::PaymentService]);
    let mut body = payment_event(&new_payment_id(), "cust-eb");
    body["items"] =
        json!([{"sku": "eb-1", "title": "Emma (e-book)", "format": "EBOOK", "quantity": 1}]);
    let answer = api.post("/api/v1/payment-events", &payer, &body).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(answer.json["delivery_required"], false);
}

#[tokio::test]
async fn payment_ids_are_idempotent_under_concurrency_and_never_reused_for_other_content() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let payer = api.token("payments", &[Role::PaymentService]);
    let customer = format!("cust-dup-{}", uuid::Uuid::new_v4().simple());
    let body = payment_event(&new_payment_id(), &customer);
    let answers = join_all((0..8).map(|_| api.post("/api/v1/payment-events", &payer, &body))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    assert!(
        answers.iter().all(|a| a.json == answers[0].json),
        "one body for all"
    );

    let mut other = body.clone();
    other["shipping_address"]["city"] = json!("Manchester");
    let reused = api.post("/api/v1/payment-events", &payer, &other).await;
    assert!(
        reused.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("different content")
    );

    let operator = api.token("olga", &[Role::Operator]);
    let id = answers[0].json["delivery_order_id"].as_str().unwrap();
    let read = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}?min_version=0"),
            &operator,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let listed = api
        .get(
            &format!("/api/v1/delivery-orders?customer_id={customer}"),
            &operator,
        )
        .await;
    assert_eq!(
        listed.json["items"].as_array().unwrap().len(),
        1,
        "one delivery order: {}",
        listed.text
    );
}

#[tokio::test]
async fn events_are_idempotent_under_concurrent_duplicates() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (id, _) = create(&stack, "cust-conc").await;
    let operator = api.token("olga", &[Role::Operator]);
    let path = format!("/api/v1/delivery-orders/{id}/events");
    let body = json!({"type": "CANCEL", "data": {"reason": "customer changed their mind"}});
    let answers = join_all((0..6).map(|_| {
        api.send(
            reqwest::Method::POST,
            &path,
            Some(&operator),
            Some(&body),
            &[("Idempotency-Key", "cancel-once")],
        )
    }))
    .await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    // Every retry gets the answer of the one that applied it (Temporal deduplicates the update
    // by event id), and the order moved once.
    assert!(answers.iter().all(|a| a.json == answers[0].json));
    assert_eq!(answers[0].json["state"], "CANCELLED");
    assert_eq!(answers[0].json["version"], 1);

    let trail = eventually("the cancel in the audit trail", || async {
        let t = api
            .get(&format!("/api/v1/delivery-orders/{id}/events"), &operator)
            .await;
        (t.json["events"].as_array().is_some_and(|e| e.len() > 1)).then_some(t.json)
    })
    .await;
    assert_eq!(
        trail["events"].as_array().unwrap().len(),
        2,
        "the creation and the one cancel"
    );
    assert_eq!(trail["events"][1]["event_id"], "cancel-once");

    let late = api
        .post(
            &path,
            &operator,
            &json!({"type": "CANCEL", "data": {"reason": "again"}}),
        )
        .await;
    let problem = late.problem(409);
    assert_eq!(problem["current_state"], "CANCELLED");
    assert_eq!(problem["allowed_events"], json!([]));
}

#[tokio::test]
async fn refused_events_say_why_with_the_right_status() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (id, _) = create(&stack, "cust-rules").await;
    let path = format!("/api/v1/delivery-orders/{id}/events");
    let customer = api.token("cust-rules", CUSTOMER);
    let partner = api.token("sim", &[Role::Partner]);
    api.projected(
        &format!("/api/v1/delivery-orders/{id}?min_version=0"),
        &customer,
    )
    .await;

    let early = api
        .post(&path, &customer, &json!({"type": "CONFIRMED"}))
        .await;
    let problem = early.problem(409);
    assert_eq!(problem["current_state"], "CREATED");
    assert_eq!(
        problem["allowed_events"],
        json!(["PICKED_UP", "DELIVERY_FAILED", "CANCEL"])
    );

    let forbidden = api
        .post(&path, &partner, &json!({"type": "CONFIRMED"}))
        .await;
    assert_eq!(
        forbidden.problem(403)["allowed_senders"],
        json!(["customer"])
    );
    let system_only = api
        .post(&path, &partner, &json!({"type": "ESCALATE_TO_OPERATOR"}))
        .await;
    system_only.problem(403);

    let bad_reason = api
        .post(
            &path,
            &partner,
            &json!({"type": "DELIVERY_FAILED", "data": {"reason": "ALIENS"}}),
        )
        .await;
    assert!(
        bad_reason.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("reason")
    );
    let unknown_field = api
        .post(&path, &partner, &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-1", "colour": "red"}}))
        .await;
    assert!(
        unknown_field.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("colour")
    );

    let picked = api
        .post(&path, &partner, &json!({"type": "PICKED_UP", "data": {"partner_order_number": "PN-1"}, "event_id": "pu-1"}))
        .await;
    assert_eq!(picked.status, 200, "{}", picked.text);
    assert_eq!(picked.json["state"], "PICKED_UP");
    assert_eq!(
        picked.json["allowed_events"],
        json!(["DELIVERED", "DELIVERY_FAILED"])
    );
    let conflicting = api
        .send(
            reqwest::Method::POST,
            &path,
            Some(&partner),
            Some(&json!({"type": "DELIVERED", "event_id": "a"})),
            &[("Idempotency-Key", "b")],
        )
        .await;
    conflicting.problem(400);

    let unknown = api
        .post(
            &format!("/api/v1/delivery-orders/{}/events", new_order_id()),
            &partner,
            &json!({"type": "DELIVERED"}),
        )
        .await;
    unknown.problem(404);
}

#[tokio::test]
async fn customers_see_only_their_own_and_tokens_are_checked() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (id, created) = create(&stack, "cust-own").await;
    let own = api.token("cust-own", CUSTOMER);
    let other = api.token("cust-other", CUSTOMER);
    let path = format!("/api/v1/delivery-orders/{id}");
    assert_eq!(
        api.projected(&format!("{path}?min_version=0"), &own)
            .await
            .status,
        200
    );

    api.get(&path, &other).await.problem(404);
    api.get(&format!("{path}?min_version=0"), &other)
        .await
        .problem(404);
    api.get(&format!("{path}/events"), &other)
        .await
        .problem(404);
    api.post(
        &format!("{path}/events"),
        &other,
        &json!({"type": "DISPUTED", "data": {"reason": "DAMAGED"}}),
    )
    .await
    .problem(404);
    let ordering = created["ordering_id"].as_str().unwrap();
    api.get(
        &format!("/api/v1/orderings/{ordering}/delivery-orders"),
        &other,
    )
    .await
    .problem(404);
    api.get("/api/v1/delivery-orders", &own).await.problem(403);
    api.get("/api/v1/operator/queue", &own).await.problem(403);
    api.post(
        "/api/v1/payment-events",
        &own,
        &payment_event(&new_payment_id(), "cust-own"),
    )
    .await
    .problem(403);
    let payer = api.token("payments", &[Role::PaymentService]);
    let mut manual = payment_event(&new_payment_id(), "cust-own");
    manual.as_object_mut().unwrap().remove("event_id");
    api.post("/api/v1/delivery-orders", &payer, &manual)
        .await
        .problem(403);

    let missing = api.send(reqwest::Method::GET, &path, None, None, &[]).await;
    missing.problem(401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let forged = delivery_api::auth::TokenKeys::new(b"some-other-secret-some-other-secret")
        .mint("cust-own", CUSTOMER, std::time::Duration::from_secs(60))
        .unwrap();
    assert!(
        api.get(&path, &forged).await.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    let expired = delivery_api::auth::TokenKeys::new(TEST_JWT_SECRET.as_bytes())
        .mint("cust-own", CUSTOMER, std::time::Duration::ZERO)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(7)).await; // past the 5 s leeway
    assert!(
        api.get(&path, &expired).await.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    api.get(&path, "not-a-jwt").await.problem(401);
}

#[tokio::test]
async fn partner_webhooks_are_verified_and_pings_only_track() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (id, _) = create(&stack, "cust-hook").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let operator = api.token("olga", &[Role::Operator]);
    api.projected(
        &format!("/api/v1/delivery-orders/{id}?min_version=0"),
        &operator,
    )
    .await;
    let picked = json!({
        "event_id": "hook-pu-1", "type": "PICKED_UP", "delivery_order_id": id,
        "pickup_id": pickup_id, "partner_order_number": "PN-HOOK",
        "data": {"partner_order_number": "PN-HOOK", "driver": {"name": "Kim"}}
    });

    api.webhook("sim", "wrong-secret", &picked)
        .await
        .problem(401);
    api.webhook("nobody", TEST_PARTNER_SECRET, &picked)
        .await
        .problem(401);
    let unsigned = api
        .post_raw(
            "/api/v1/partner-webhooks/sim",
            None,
            "application/json",
            serde_json::to_vec(&picked).unwrap(),
        )
        .await;
    unsigned.problem(401);

    let applied = api.webhook("sim", TEST_PARTNER_SECRET, &picked).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["outcome"], "applied");
    assert_eq!(applied.json["state"], "PICKED_UP");
    let again = api.webhook("sim", TEST_PARTNER_SECRET, &picked).await;
    assert_eq!(
        again.status, 200,
        "a partner's retry is answered like the original"
    );
    assert_eq!(again.json["version"], 1, "and changes nothing");

    let read = api
        .get(
            &format!("/api/v1/delivery-orders/{id}?min_version=1"),
            &operator,
        )
        .await;
    assert_eq!(read.json["partner_order_number"], "PN-HOOK");
    let ping = |n: u32, at: &str| {
        json!({"event_id": format!("hook-loc-{n}"), "type": "LOCATION", "delivery_order_id": id,
               "pickup_id": pickup_id, "occurred_at": at,
               "data": {"lat": 51.5 + f64::from(n) / 100.0, "lon": -0.12}})
    };
    let tracked = api
        .webhook("sim", TEST_PARTNER_SECRET, &ping(2, "2026-11-22T10:02:00Z"))
        .await;
    assert_eq!(
        tracked.json["outcome"], "tracking_updated",
        "{}",
        tracked.text
    );
    let stale = api
        .webhook("sim", TEST_PARTNER_SECRET, &ping(1, "2026-11-22T10:01:00Z"))
        .await;
    assert_eq!(
        stale.json["outcome"], "tracking_stale",
        "an older ping never overwrites a newer one"
    );
    let bad_ping = api
        .webhook("sim", TEST_PARTNER_SECRET, &json!({"event_id": "x", "type": "LOCATION", "delivery_order_id": id, "pickup_id": pickup_id, "data": {"lat": 200, "lon": 0}}))
        .await;
    bad_ping.problem(422);

    let read = eventually("the location in the cache", || async {
        let r = api
            .get(&format!("/api/v1/delivery-orders/{id}"), &operator)
            .await;
        (r.json["location"]["lat"] == json!(51.52)).then_some(r.json)
    })
    .await;
    assert_eq!(read["version"], 1, "a ping is not a transition");
    assert_eq!(read["location_at"], "2026-11-22T10:02:00.000Z");

    let failed = api
        .webhook("sim", TEST_PARTNER_SECRET, &json!({"event_id": "hook-f", "type": "DELIVERY_FAILED", "delivery_order_id": id, "pickup_id": pickup_id, "data": {"reason": "WRONG_ADDRESS", "detail": "no such street"}}))
        .await;
    assert_eq!(
        failed.json["state"], "PENDING_BY_OPERATOR",
        "a failure escalates at once: {}",
        failed.text
    );
    let late = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "hook-d", "type": "DELIVERED", "delivery_order_id": id,
                    "pickup_id": pickup_id}),
        )
        .await;
    assert_eq!(late.problem(409)["current_state"], "PENDING_BY_OPERATOR");
}

#[tokio::test]
async fn an_operator_resolves_a_failed_delivery_from_the_queue() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    let api = stack.api();
    let payer = api.token("payments", &[Role::PaymentService]);
    let payment_id = new_payment_id();
    let body = payment_event(&payment_id, "cust-fail");
    // The delivery order id is derived from the payment id, so the scenario can be set first.
    let created = api.post("/api/v1/payment-events", &payer, &body).await;
    let id = created.json["delivery_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    stack
        .sim
        .scenario(&id, json!({"outcome": "fail", "failure_reason": "RECIPIENT_UNAVAILABLE", "detail": "nobody home"}))
        .await;
    let operator = api.token("olga", &[Role::Operator]);
    api.wait_state(&operator, &id, "PENDING_BY_OPERATOR").await;

    let queue = api.get("/api/v1/operator/queue", &operator).await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let entry = queue.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["delivery_order"]["delivery_order_id"] == id.as_str())
        .cloned()
        .expect("the order is in the queue");
    assert_eq!(entry["reason"]["kind"], "DELIVERY_FAILED");
    assert_eq!(entry["reason"]["code"], "RECIPIENT_UNAVAILABLE");
    assert_eq!(entry["reason"]["detail"], "nobody home");

    let reship = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &operator,
            &json!({"type": "OPERATOR_RESHIP", "data": {"note": "second attempt"}}),
        )
        .await;
    assert_eq!(reship.status, 200, "{}", reship.text);
    assert_eq!(reship.json["state"], "RESHIPPED");

    let ordering = eventually("the replacement in the ordering", || async {
        let r = api
            .get(
                &format!("/api/v1/orderings/ord-{payment_id}/delivery-orders"),
                &operator,
            )
            .await;
        (r.json["delivery_orders"]
            .as_array()
            .is_some_and(|d| d.len() == 2))
        .then_some(r.json)
    })
    .await;
    let orders = ordering["delivery_orders"].as_array().unwrap();
    assert_eq!(orders[0]["delivery_order_id"], id.as_str(), "oldest first");
    assert_eq!(orders[1]["replaces_id"], id.as_str());
    let queue = api.get("/api/v1/operator/queue", &operator).await;
    assert!(!queue.text.contains(&id), "resolved orders leave the queue");
}

#[tokio::test]
async fn lists_page_with_a_cursor() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let customer = format!("cust-page-{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create(&stack, &customer).await.0);
    }
    let operator = api.token("olga", &[Role::Operator]);
    for id in &ids {
        api.projected(
            &format!("/api/v1/delivery-orders/{id}?min_version=0"),
            &operator,
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/delivery-orders?customer_id={customer}&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path, &operator).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(
            page.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["delivery_order_id"].as_str().unwrap().to_owned()),
        );
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");
    api.get("/api/v1/delivery-orders?cursor=nonsense", &operator)
        .await
        .problem(400);
}
