//! The compatible delivery API of the original Redis event-sourcing delivery app: its events,
//! rules and JSON shapes, each delivery a durable workflow, its status served from Redis and
//! rebuilt from the stored events when the cache is empty.

use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::{Value, json};

async fn post(api: &GatewayProcess, token: &str, path: &str, body: Value) -> Answer {
    api.post(path, token, &body).await
}

fn detail(answer: &Answer, status: u16) -> String {
    assert_eq!(answer.status, status, "{}", answer.text);
    answer.json["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {}", answer.text))
        .to_owned()
}

#[tokio::test]
async fn a_delivery_goes_through_the_original_rules() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let oms = api.token("oms", &[Role::OrderManagement]);

    let created = post(
        api,
        &oms,
        "/deliveries/create",
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 100, "notes": "two crates of books"}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.json,
        json!({"id": id, "budget": 100, "notes": "two crates of books", "status": "ready"})
    );

    let event = |kind: &str, data: Value| json!({"delivery_id": id, "type": kind, "data": data});
    let started = post(api, &oms, "/event", event("START_DELIVERY", json!({}))).await;
    assert_eq!(started.json["status"], "active", "{}", started.text);
    let again = post(api, &oms, "/event", event("START_DELIVERY", json!({}))).await;
    assert_eq!(detail(&again, 400), "Delivery already started");
    let too_dear = post(
        api,
        &oms,
        "/event",
        event(
            "PICKUP_PRODUCTS",
            json!({"purchase_price": 30, "quantity": 4}),
        ),
    )
    .await;
    assert_eq!(detail(&too_dear, 400), "Not enough budget");
    // The original clients sent `data` as a JSON string.
    let collected = post(
        api,
        &oms,
        "/event",
        event(
            "PICKUP_PRODUCTS",
            json!("{\"purchase_price\": 20, \"quantity\": 4}"),
        ),
    )
    .await;
    assert_eq!(collected.status, 200, "{}", collected.text);
    assert_eq!(collected.json["status"], "collected");
    assert_eq!(collected.json["budget"], 20);
    assert_eq!(collected.json["quantity"], 4);
    let too_many = post(
        api,
        &oms,
        "/event",
        event("DELIVER_PRODUCTS", json!({"sell_price": 50, "quantity": 5})),
    )
    .await;
    assert_eq!(detail(&too_many, 400), "Not enough quantity");
    let richer = post(
        api,
        &oms,
        "/event",
        event("INCREASE_BUDGET", json!({"budget": 5})),
    )
    .await;
    assert_eq!(richer.json["budget"], 25);
    let done = post(
        api,
        &oms,
        "/event",
        event("DELIVER_PRODUCTS", json!({"sell_price": 50, "quantity": 3})),
    )
    .await;
    assert_eq!(done.json["status"], "completed", "{}", done.text);
    assert_eq!(done.json["budget"], 175);
    assert_eq!(done.json["quantity"], 1);

    let status = api.get(&format!("/deliveries/{id}/status"), &oms).await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(
        status.json, done.json,
        "the status is what the last event answered"
    );

    // The delivery was a durable workflow, finished now with the same state.
    let handle = stack
        .client
        .get_workflow_handle::<delivery_workflows::compat::CompatDeliveryWorkflow>(format!(
            "compat-delivery-{id}"
        ));
    let result = handle
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await
        .expect("the workflow completes");
    assert_eq!(result.budget, 175);
    let late = post(
        api,
        &oms,
        "/event",
        event("INCREASE_BUDGET", json!({"budget": 1})),
    )
    .await;
    assert!(detail(&late, 400).contains("completed"));
}

#[tokio::test]
async fn the_status_is_rebuilt_from_the_stored_events_when_the_cache_is_empty() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let created = post(
        api,
        &ops,
        "/deliveries/create",
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 50, "notes": ""}}),
    )
    .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    post(
        api,
        &ops,
        "/event",
        json!({"delivery_id": id, "type": "START_DELIVERY"}),
    )
    .await;
    let collected = post(api, &ops, "/event", json!({"delivery_id": id, "type": "PICKUP_PRODUCTS", "data": {"purchase_price": 5, "quantity": 2}})).await;
    assert_eq!(collected.json["budget"], 40, "{}", collected.text);

    // Wait for the projection to store both events, then empty the cache.
    let pool = read_model().await;
    eventually("the events stored", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM compat_delivery_events WHERE delivery_id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 2).then_some(())
    })
    .await;
    let key = format!("{}compat-delivery:{id}", redis_prefix().await);
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();

    let rebuilt = api.get(&format!("/deliveries/{id}/status"), &ops).await;
    assert_eq!(rebuilt.status, 200, "{}", rebuilt.text);
    assert_eq!(
        rebuilt.json, collected.json,
        "rebuilt by replaying the events"
    );
    let cached: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(cached.is_some(), "and cached again");
}

#[tokio::test]
async fn bad_requests_get_the_original_detail_shape() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let unknown = api
        .get(&format!("/deliveries/{}/status", new_order_id()), &ops)
        .await;
    assert_eq!(detail(&unknown, 404), "Delivery not found");
    assert_eq!(
        detail(&api.get("/deliveries/42/status", &ops).await, 404),
        "Delivery not found"
    );
    let missing = post(
        api,
        &ops,
        "/event",
        json!({"delivery_id": new_order_id(), "type": "START_DELIVERY"}),
    )
    .await;
    assert_eq!(detail(&missing, 404), "Delivery not found");
    let wrong_type = post(
        api,
        &ops,
        "/deliveries/create",
        json!({"type": "START_DELIVERY", "data": {"budget": 1}}),
    )
    .await;
    detail(&wrong_type, 400);
    for body in [
        json!({"type": "CREATE_DELIVERY", "data": {"budget": "lots"}}),
        json!({"type": "CREATE_DELIVERY", "data": {"budget": -1}}),
        json!({"type": "CREATE_DELIVERY", "data": "not json"}),
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 1, "colour": "red"}}),
        json!({"type": "CREATE_DELIVERY"}),
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 1}, "extra": true}),
    ] {
        let answer = post(api, &ops, "/deliveries/create", body.clone()).await;
        assert!(!detail(&answer, 400).is_empty(), "{body}");
    }
    let created = post(
        api,
        &ops,
        "/deliveries/create",
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 1, "notes": "x"}}),
    )
    .await;
    let id = created.json["id"].as_str().unwrap();
    let unknown_event = post(
        api,
        &ops,
        "/event",
        json!({"delivery_id": id, "type": "TELEPORT"}),
    )
    .await;
    assert!(detail(&unknown_event, 400).contains("TELEPORT"));
    let early = post(api, &ops, "/event", json!({"delivery_id": id, "type": "DELIVER_PRODUCTS", "data": {"sell_price": 1, "quantity": 1}})).await;
    assert!(detail(&early, 400).contains("ready"));

    let customer = api.token("c", &[Role::Customer]);
    assert_eq!(
        api.get(&format!("/deliveries/{id}/status"), &customer)
            .await
            .status,
        403
    );
    let anonymous = api
        .send(
            reqwest::Method::GET,
            &format!("/deliveries/{id}/status"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(anonymous.status, 401);
}

/// An `Idempotency-Key` names one creation and one event of its caller: the same request again
/// is answered with the delivery as it is, never done twice; the same key with other content is
/// 409 and does nothing.
#[tokio::test]
async fn idempotency_keys_name_one_creation_and_one_event() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let oms = api.token("oms", &[Role::OrderManagement]);
    let keyed = |path: &'static str, key: &'static str, body: Value| {
        let oms = oms.clone();
        async move {
            api.send(
                reqwest::Method::POST,
                path,
                Some(&oms),
                Some(&body),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let create = json!({"type": "CREATE_DELIVERY", "data": {"budget": 100, "notes": "crates"}});
    let created = keyed("/deliveries/create", "order-77", create.clone()).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();

    let event = |budget: u64| json!({"delivery_id": id, "type": "INCREASE_BUDGET", "data": {"budget": budget}});
    let raised = keyed("/event", "raise-1", event(50)).await;
    assert_eq!(raised.json["budget"], 150, "{}", raised.text);
    let again = keyed("/event", "raise-1", event(50)).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["budget"], 150, "the retry applied nothing");
    let other = keyed("/event", "raise-1", event(60)).await;
    assert!(
        detail(&other, 409).contains("raise-1"),
        "names the reused key: {}",
        other.text
    );

    let retried = keyed("/deliveries/create", "order-77", create).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(
        retried.json["id"],
        id.as_str(),
        "the retry finds the same delivery"
    );
    assert_eq!(
        retried.json["budget"], 150,
        "as it is now: {}",
        retried.text
    );
    let reused = keyed(
        "/deliveries/create",
        "order-77",
        json!({"type": "CREATE_DELIVERY", "data": {"budget": 5, "notes": "other"}}),
    )
    .await;
    detail(&reused, 409);
    let elsewhere = api.token("oms-2", &[Role::OrderManagement]);
    let theirs = api
        .send(
            reqwest::Method::POST,
            "/deliveries/create",
            Some(&elsewhere),
            Some(&json!({"type": "CREATE_DELIVERY", "data": {"budget": 5, "notes": "other"}})),
            &[("Idempotency-Key", "order-77")],
        )
        .await;
    assert_eq!(
        theirs.status, 200,
        "a key is its caller's own: {}",
        theirs.text
    );
    assert_ne!(theirs.json["id"], id.as_str());

    let status = api.get(&format!("/deliveries/{id}/status"), &oms).await;
    assert_eq!(status.json["budget"], 150, "{}", status.text);
    assert_eq!(status.json["notes"], "crates", "{}", status.text);
}
