//! The audit trail through the gateway: its first entry is the creation (who created the order,
//! from which payment), and `?min_version=N` waits like the order read, so a client reads the
//! trail of its own writes.

use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::json;

#[tokio::test]
async fn the_trail_starts_with_the_creation_and_min_version_reads_its_own_writes() {
    let stack = Stack::start_with(
        StackOptions::quiet()
            .with_gateway()
            .gateway("MIN_VERSION_WAIT_MS", "500"),
    )
    .await;
    let api = stack.api();
    let (id, created) = api.pay("cust-trail").await;
    let payment_id = created["payment_id"].as_str().map(str::to_owned);
    let operator = api.token("olga", &[Role::Operator]);
    let events = format!("/api/v1/delivery-orders/{id}/events");

    let first = api
        .projected(&format!("{events}?min_version=0"), &operator)
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let creation = &first.json["events"][0];
    assert_eq!(creation["seq"], 0);
    assert_eq!(creation["type"], "CREATE");
    assert_eq!(creation["to_state"], "CREATED");
    assert_eq!(
        creation["actor"],
        json!({"kind": "payment_service", "id": "payments"})
    );
    if let Some(payment_id) = payment_id {
        assert_eq!(creation["data"]["payment_id"], payment_id.as_str());
    } else {
        assert!(creation["data"]["payment_id"].is_string(), "{creation}");
    }

    let cancel = api
        .post(
            &events,
            &operator,
            &json!({"type": "CANCEL", "data": {"reason": "customer changed their mind"}}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    let version = cancel.json["version"].as_u64().unwrap();

    // Read right after the command: the trail holds it.
    let trail = api
        .get(&format!("{events}?min_version={version}"), &operator)
        .await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    let entries = trail.json["events"].as_array().unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last["seq"].as_u64(), Some(version), "{}", trail.text);
    assert_eq!(last["type"], "CANCEL");
    assert_eq!(entries[0]["type"], "CREATE");

    // A version the order never reaches: the same bounded wait and answer as the order read.
    let ahead = api
        .get(&format!("{events}?min_version={}", version + 5), &operator)
        .await;
    let problem = ahead.problem(409);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("projection-behind"),
        "{problem}"
    );
    assert_eq!(problem["current_version"].as_u64(), Some(version));

    // Another customer learns nothing, waiting or not.
    let stranger = api.token("cust-other", &[Role::Customer]);
    for path in [
        events.clone(),
        format!("{events}?min_version={}", version + 5),
    ] {
        api.get(&path, &stranger).await.problem(404);
    }
}
