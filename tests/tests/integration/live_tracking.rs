//! Tracking, live updates over WebSocket and the system state, through the gateway against the
//! real stack. The partner events are sent as signed webhooks by the test, so each step is
//! known.

use std::time::Duration;

use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::{Value, json};

fn payer_or_ops(api: &GatewayProcess) -> String {
    api.token("olga", &[Role::Operator])
}

async fn partner(
    api: &GatewayProcess,
    id: &str,
    event_id: &str,
    kind: &str,
    data: Value,
) -> Answer {
    let (_, pickup_id) = api.pickup_confirmed(id).await;
    let answer = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": event_id, "type": kind, "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": data}),
        )
        .await;
    assert!(answer.status == 200, "{kind}: {}", answer.text);
    answer
}

async fn connect(api: &GatewayProcess, path: &str, token: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}{path}?access_token={token}", api.port);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake")
        .0
}

/// The next JSON message, within 10 s.
async fn next(socket: &mut Socket) -> Value {
    next_socket_message(socket, Duration::from_secs(10)).await
}

#[tokio::test]
async fn tracking_shows_progress_driver_and_location_to_the_owner_only() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-track").await;
    let owner = api.token("cust-track", &[Role::Customer]);
    let path = format!("/api/v1/tracking/{id}");

    let early = api.get(&path, &owner).await;
    assert!(
        early.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("not been dispatched")
    );

    partner(
        api,
        &id,
        "t-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-T1", "eta": "2026-12-01T10:00:00Z",
               "driver": {"name": "Sam Carter", "phone": "+44 7700 900123", "vehicle": "cargo bike"}}),
    )
    .await;
    partner(
        api,
        &id,
        "t-loc",
        "LOCATION",
        json!({"lat": 51.5, "lon": -0.12}),
    )
    .await;
    let tracking = eventually("tracking with a location", || async {
        let t = api.get(&path, &owner).await;
        (t.status == 200 && t.json["location"]["lat"] == json!(51.5)).then_some(t.json)
    })
    .await;
    assert_eq!(tracking["state"], "PICKED_UP");
    assert_eq!(tracking["partner_order_number"], "PN-T1");
    assert_eq!(tracking["driver"]["name"], "Sam Carter");
    assert_eq!(
        tracking["driver"]["phone"], "*** **** ***123",
        "the phone is masked"
    );
    assert_eq!(tracking["eta"], "2026-12-01T10:00:00.000Z");
    assert_eq!(tracking["recipient"], "Ada Lovelace");
    let steps = tracking["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["CREATED", "PICKED_UP", "DELIVERED", "DELIVERY_CONFIRMED"]
    );
    assert!(steps[0]["reached_at"].is_string() && steps[1]["reached_at"].is_string());
    assert!(steps[2]["reached_at"].is_null());
    assert_eq!(steps[1]["current"], true);

    partner(
        api,
        &id,
        "t-f",
        "DELIVERY_FAILED",
        json!({"reason": "PACKAGE_LOST"}),
    )
    .await;
    let failed = eventually("tracking after the failure", || async {
        let t = api.get(&path, &owner).await;
        (t.json["state"] == "PENDING_BY_OPERATOR").then_some(t.json)
    })
    .await;
    let names: Vec<&str> = failed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CREATED",
            "PICKED_UP",
            "DELIVERED",
            "DELIVERY_CONFIRMED",
            "DELIVERY_FAILED",
            "PENDING_BY_OPERATOR"
        ]
    );
    assert_eq!(failed["failure_reason"], "PACKAGE_LOST");

    api.get(&path, &api.token("cust-other", &[Role::Customer]))
        .await
        .problem(404);
    api.get(&format!("/api/v1/tracking/{}", new_order_id()), &owner)
        .await
        .problem(404);
    api.get(&path, &api.token("sim", &[Role::Partner]))
        .await
        .problem(403);
    assert_eq!(api.get(&path, &payer_or_ops(api)).await.status, 200);
}

/// Tracking reads the order's document alone: the stages' times travel in it (`stages`), the
/// same times as the audit trail's. An order last projected before they did (no `stages` in its
/// row or its cached document) is tracked from its trail, with the same answer.
#[tokio::test]
async fn tracking_stages_come_with_the_order_and_agree_with_the_trail() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-stages").await;
    let owner = api.token("cust-stages", &[Role::Customer]);
    let path = format!("/api/v1/tracking/{id}");
    partner(
        api,
        &id,
        "s-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-S1"}),
    )
    .await;
    partner(api, &id, "s-dl", "DELIVERED", json!({})).await;
    let tracking = eventually("tracking of the delivered order", || async {
        let t = api.get(&path, &owner).await;
        (t.json["state"] == "DELIVERED").then_some(t.json)
    })
    .await;

    let trail = api
        .get(&format!("/api/v1/delivery-orders/{id}/events"), &owner)
        .await
        .json;
    let entered = |state: &str| -> Value {
        trail["events"]
            .as_array()
            .expect("the trail")
            .iter()
            .find(|e| e["to_state"] == state && e["from_state"] != state)
            .map(|e| e["occurred_at"].clone())
            .unwrap_or(Value::Null)
    };
    let steps = tracking["steps"].as_array().unwrap();
    assert_eq!(steps[1]["state"], "PICKED_UP");
    assert_eq!(steps[1]["reached_at"], entered("PICKED_UP"));
    assert_eq!(steps[2]["state"], "DELIVERED");
    assert_eq!(steps[2]["reached_at"], entered("DELIVERED"));
    assert!(steps[2]["reached_at"].is_string());

    // The documents as a projection before stages existed left them: without `stages`.
    let pool = read_model().await;
    sqlx::query("UPDATE delivery_orders SET stages = NULL WHERE id = $1::uuid")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let key = delivery_read_model::RedisKeys::new(redis_prefix().await).status(&id);
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let cached: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut document: Value = serde_json::from_str(&cached).unwrap();
    assert!(
        document["stages"].is_array(),
        "the cached document carries the stages"
    );
    document.as_object_mut().unwrap().remove("stages");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(document.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let from_trail = api.get(&path, &owner).await;
    assert_eq!(from_trail.status, 200, "{}", from_trail.text);
    assert_eq!(from_trail.json["steps"], tracking["steps"]);
}

#[tokio::test]
async fn a_websocket_gets_a_snapshot_then_every_change_in_order() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-ws").await;
    let owner = api.token("cust-ws", &[Role::Customer]);
    let mut socket = connect(api, &format!("/api/v1/ws/delivery-orders/{id}"), &owner).await;
    let snapshot = next(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["delivery_order"]["state"], "CREATED");
    assert_eq!(snapshot["delivery_order"]["version"], 0);

    // A dashboard watching everything sees the same changes.
    let mut dashboard = connect(api, "/api/v1/ws/events", &payer_or_ops(api)).await;

    partner(
        api,
        &id,
        "w-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-W",
               "driver": {"name": "Ann", "phone": "+44 7700 900456"}}),
    )
    .await;
    let picked = next(&mut socket).await;
    assert_eq!(picked["type"], "update", "{picked}");
    assert_eq!(picked["delivery_order"]["state"], "PICKED_UP");
    assert_eq!(picked["delivery_order"]["version"], 1);
    // A socket message carries the driver's phone masked, as every read but an operator's.
    assert_eq!(
        picked["delivery_order"]["driver"]["phone"], "*** **** ***456",
        "{picked}"
    );
    partner(
        api,
        &id,
        "w-loc",
        "LOCATION",
        json!({"lat": 48.85, "lon": 2.35}),
    )
    .await;
    let ping = next(&mut socket).await;
    assert_eq!(ping["type"], "tracking");
    assert_eq!(ping["location"]["lat"], json!(48.85));
    partner(api, &id, "w-de", "DELIVERED", json!({})).await;
    let delivered = next(&mut socket).await;
    assert_eq!(delivered["delivery_order"]["state"], "DELIVERED");
    assert_eq!(delivered["delivery_order"]["version"], 2);
    assert_eq!(
        delivered["delivery_order"]["allowed_events"],
        json!(["CONFIRMED", "DISPUTED"])
    );

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let message = next(&mut dashboard).await;
        if message["delivery_order"]["delivery_order_id"] == id.as_str()
            || message["delivery_order_id"] == id.as_str()
        {
            // A dashboard's socket is shared with whoever watches it: masked there too.
            assert!(!message.to_string().contains("900456"), "{message}");
            seen.push(message["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["update", "tracking", "update"]);
    // A snapshot taken now carries the mask as well.
    let mut late = connect(api, &format!("/api/v1/ws/delivery-orders/{id}"), &owner).await;
    let snapshot = next(&mut late).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(
        snapshot["delivery_order"]["driver"]["phone"], "*** **** ***456",
        "{snapshot}"
    );
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn websockets_check_who_is_asking() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-ws-own").await;
    let url =
        |path: &str, token: &str| format!("ws://127.0.0.1:{}{path}?access_token={token}", api.port);
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            other => panic!("the handshake should be refused: {other:?}"),
        }
    };
    let other = api.token("cust-someone-else", &[Role::Customer]);
    assert_eq!(
        refused(url(&format!("/api/v1/ws/delivery-orders/{id}"), &other)).await,
        404
    );
    assert_eq!(
        refused(url(&format!("/api/v1/ws/delivery-orders/{id}"), "forged")).await,
        401
    );
    assert_eq!(
        refused(format!("ws://127.0.0.1:{}/api/v1/ws/events", api.port)).await,
        401
    );
    assert_eq!(
        refused(url("/api/v1/ws/delivery-orders/not-a-uuid", &other)).await,
        400
    );
    let partner_token = api.token("sim", &[Role::Partner]);
    assert_eq!(refused(url("/api/v1/ws/events", &partner_token)).await, 403);

    // A customer's event stream carries only its own deliveries.
    let mine = api.paid_order("cust-ws-stream").await;
    let mut own = connect(
        api,
        "/api/v1/ws/events",
        &api.token("cust-ws-stream", &[Role::Customer]),
    )
    .await;
    partner(
        api,
        &id,
        "o-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-O"}),
    )
    .await;
    partner(
        api,
        &mine,
        "m-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-M"}),
    )
    .await;
    let first = next(&mut own).await;
    assert_eq!(
        first["delivery_order"]["delivery_order_id"],
        mine.as_str(),
        "{first}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_up_the_others() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-slow").await;
    let ops = payer_or_ops(api);
    // Connected and never read from again.
    let _stalled = connect(api, "/api/v1/ws/events", &ops).await;
    let mut reader = connect(api, &format!("/api/v1/ws/delivery-orders/{id}"), &ops).await;
    assert_eq!(next(&mut reader).await["type"], "snapshot");
    partner(
        api,
        &id,
        "s-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-S"}),
    )
    .await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    for n in 0..200u32 {
        let at = format!("2026-11-22T10:{:02}:{:02}Z", n / 60, n % 60);
        api.webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": format!("s-loc-{n}"), "type": "LOCATION", "delivery_order_id": id,
                    "pickup_id": pickup_id, "occurred_at": at,
                    "data": {"lat": 10.0 + f64::from(n) / 1000.0, "lon": 0.0}}),
        )
        .await;
    }
    let mut pings = 0;
    let mut saw_update = false;
    while pings < 200 {
        let message = next(&mut reader).await;
        match message["type"].as_str() {
            Some("tracking") => pings += 1,
            Some("update") => saw_update = true,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    assert!(saw_update);
}

#[tokio::test]
async fn the_system_state_counts_and_is_served_from_a_short_cache() {
    // The latest events are the last 20 of the whole read model: other suites' would crowd them.
    let database = fresh_database().await;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .own_read_model(&database, "system-state")
            .await
            .with_gateway(),
    )
    .await;
    let api = stack.api();
    let ops = payer_or_ops(api);
    let picked = api.paid_order("cust-state").await;
    partner(
        api,
        &picked,
        "st-pu",
        "PICKED_UP",
        json!({"partner_order_number": "PN-ST", "driver": {"name": "Dana Driver"}}),
    )
    .await;
    let failed = api.paid_order("cust-state").await;
    partner(
        api,
        &failed,
        "st-f",
        "DELIVERY_FAILED",
        json!({"reason": "WRONG_ADDRESS", "detail": "no such street"}),
    )
    .await;
    // The projection lands within moments; the state is cached for 5 s, so wait it out once.
    api.get(
        &format!("/api/v1/delivery-orders/{failed}?min_version=2"),
        &ops,
    )
    .await;
    api.get(
        &format!("/api/v1/delivery-orders/{picked}?min_version=1"),
        &ops,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5200)).await;

    let first = api.get("/api/state", &ops).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let s = &first.json;
    assert!(
        s["by_state"]["PENDING_BY_OPERATOR"].as_i64().unwrap() >= 1,
        "{s}"
    );
    assert!(s["by_state"]["PICKED_UP"].as_i64().unwrap() >= 1);
    assert!(s["totals"]["failed_today"].as_i64().unwrap() >= 1);
    assert!(s["totals"]["waiting_for_operator"].as_i64().unwrap() >= 1);
    let dana = s["active_drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["driver"] == "Dana Driver")
        .expect("the driver on the road");
    assert!(
        dana["delivery_order_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(picked))
    );
    assert!(
        s["latest_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["delivery_order_id"] == failed.as_str())
    );
    assert_eq!(s["health"]["postgres"]["ok"], true);
    assert_eq!(s["health"]["redis"]["ok"], true);
    assert_eq!(s["health"]["temporal"]["ok"], true);
    assert_eq!(
        s["health"]["temporal"]["workers_polling"], true,
        "the worker polls: {s}"
    );

    let second = api.get("/api/state", &ops).await;
    assert_eq!(
        second.json["generated_at"], s["generated_at"],
        "served from the cache"
    );
    api.get("/api/state", &api.token("cust-state", &[Role::Customer]))
        .await
        .problem(403);
    drop(stack);
    drop_database(&database).await;
}
