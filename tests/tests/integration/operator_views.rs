//! What operators and customers reach for beside one order: deadlines at risk, search, the
//! operations charts, a customer's own deliveries and a delivery's route. Through the gateway
//! against the real stack (the partner's steps sent by the test as signed webhooks), with who may
//! see what and every bad input.

use chrono::{DateTime, Duration as Span, Utc};
use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::{Value, json};

async fn partner(api: &GatewayProcess, id: &str, kind: &str, data: Value) -> Answer {
    let (_, pickup_id) = api.pickup_confirmed(id).await;
    let answer = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({
                "event_id": format!("{kind}-{}", uuid::Uuid::new_v4().simple()),
                "type": kind, "delivery_order_id": id, "pickup_id": pickup_id, "data": data,
            }),
        )
        .await;
    assert_eq!(answer.status, 200, "{kind}: {}", answer.text);
    answer
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a time: {value}"))
        .parse()
        .unwrap()
}

/// The entry of `id` in an at-risk list, if it is there.
fn entry<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["delivery_order"]["delivery_order_id"] == id)
}

/// When the audit entry that entered `state` was recorded.
async fn entered(api: &GatewayProcess, token: &str, id: &str, state: &str) -> DateTime<Utc> {
    let trail = api
        .get(&format!("/api/v1/delivery-orders/{id}/events"), token)
        .await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    let event = trail.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["to_state"] == state)
        .unwrap_or_else(|| panic!("{id} entered {state}: {}", trail.text));
    time(&event["occurred_at"])
}

#[tokio::test]
async fn each_order_carries_the_deadline_its_workflow_arms_in_its_state() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let customer = format!("cust-deadline-{}", uuid::Uuid::new_v4().simple());
    let id = api.paid_order(&customer).await;
    let owner = api.token(&customer, &[Role::Customer]);
    let read = |token: String| {
        let id = id.clone();
        async move {
            let read = api
                .get(&format!("/api/v1/delivery-orders/{id}"), &token)
                .await;
            assert_eq!(read.status, 200, "{}", read.text);
            read.json
        }
    };

    // Waiting for its pickup: 48 h from creation, the graph's default.
    let order = read(owner.clone()).await;
    assert_eq!(order["next_deadline"]["timer"], "pickup_deadline");
    assert_eq!(
        time(&order["next_deadline"]["due_at"]),
        time(&order["created_at"]) + Span::hours(48)
    );

    // Picked up: the delivery deadline, 7 days from the pickup.
    partner(
        api,
        &id,
        "PICKED_UP",
        json!({"partner_order_number": "PN-DUE-1"}),
    )
    .await;
    api.wait_state(&ops, &id, "PICKED_UP").await;
    let order = read(ops.clone()).await;
    assert_eq!(order["next_deadline"]["timer"], "delivery_deadline");
    let picked_up = entered(api, &ops, &id, "PICKED_UP").await;
    assert_eq!(
        time(&order["next_deadline"]["due_at"]),
        picked_up + Span::days(7)
    );

    // Delivered: the auto-confirmation, 7 days from the delivery.
    partner(api, &id, "DELIVERED", json!({})).await;
    api.wait_state(&ops, &id, "DELIVERED").await;
    let order = read(ops.clone()).await;
    assert_eq!(order["next_deadline"]["timer"], "auto_confirm");
    let delivered = entered(api, &ops, &id, "DELIVERED").await;
    assert_eq!(
        time(&order["next_deadline"]["due_at"]),
        delivered + Span::days(7)
    );

    // Confirmed: no deadline left.
    let confirm = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &owner,
            &json!({"type": "CONFIRMED"}),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    api.wait_state(&ops, &id, "DELIVERY_CONFIRMED").await;
    assert!(read(ops.clone()).await["next_deadline"].is_null());
}

#[tokio::test]
async fn orders_at_risk_are_listed_soonest_first_with_the_time_left_as_deadlines_move() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    // Deadlines of minutes, as another service may set them when it starts an order: sooner than
    // any order of the gateway's (48 h) or of the other suites (an hour), so these lead the list.
    let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
    let soon = new_order_id();
    let later = new_order_id();
    start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&soon, deadlines(minutes(10), minutes(12), minutes(14))),
    )
    .await;
    start_order(
        &stack.client,
        &stack.task_queue,
        order_input(&later, deadlines(minutes(11), minutes(12), minutes(14))),
    )
    .await;
    for id in [&soon, &later] {
        api.wait_state(&ops, id, "CREATED").await;
    }
    let at_risk = |query: &'static str| {
        let ops = ops.clone();
        async move {
            let list = api
                .get(&format!("/api/v1/operator/at-risk?{query}"), &ops)
                .await;
            assert_eq!(list.status, 200, "{}", list.text);
            list.json
        }
    };

    let list = at_risk("limit=200").await;
    assert_eq!(list["within_seconds"], 7200, "two hours unless asked");
    let (a, b) = (entry(&list, &soon).unwrap(), entry(&list, &later).unwrap());
    for (e, m) in [(a, 10), (b, 11)] {
        assert_eq!(e["deadline"]["timer"], "pickup_deadline");
        let created = time(&e["delivery_order"]["created_at"]);
        assert_eq!(time(&e["deadline"]["due_at"]), created + Span::minutes(m));
        let left = e["seconds_left"].as_i64().unwrap();
        assert!((0..=m * 60).contains(&left), "{left}");
        assert_eq!(e["delivery_order"]["state"], "CREATED");
    }
    let position = |id: &str| {
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["delivery_order"]["delivery_order_id"] == id)
    };
    assert!(position(&soon) < position(&later), "soonest first");
    let dues: Vec<DateTime<Utc>> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| time(&e["deadline"]["due_at"]))
        .collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "ordered by deadline");
    assert!(
        list["total"].as_u64().unwrap() >= dues.len() as u64,
        "{list}"
    );
    // A list cut at its limit says how many there are in all.
    let first = at_risk("limit=1").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    assert!(first["total"].as_u64().unwrap() >= 2, "{first}");
    // A window that ends before the deadline leaves it out.
    assert!(entry(&at_risk("within=5m&limit=200").await, &soon).is_none());

    // Picked up: the delivery deadline replaces the pickup's.
    api.pickup_confirmed(&soon).await;
    partner(
        api,
        &soon,
        "PICKED_UP",
        json!({"partner_order_number": "PN-RISK-1"}),
    )
    .await;
    api.wait_state(&ops, &soon, "PICKED_UP").await;
    let list = at_risk("within=90m&limit=200").await;
    let a = entry(&list, &soon).unwrap();
    assert_eq!(a["deadline"]["timer"], "delivery_deadline");
    let picked_up = entered(api, &ops, &soon, "PICKED_UP").await;
    assert_eq!(
        time(&a["deadline"]["due_at"]),
        picked_up + Span::minutes(12)
    );

    // Cancelled: no deadline, off the list.
    let cancel = api
        .post(
            &format!("/api/v1/delivery-orders/{later}/events"),
            &ops,
            &json!({"type": "CANCEL", "data": {"reason": "customer asked"}}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    api.wait_state(&ops, &later, "CANCELLED").await;
    assert!(entry(&at_risk("limit=200").await, &later).is_none());

    // The gauge the alert reads is exported for each timer.
    let metrics = api.metrics().await;
    for timer in ["pickup_deadline", "delivery_deadline", "auto_confirm"] {
        assert!(
            metrics.contains(&format!("delivery_api_orders_at_risk{{timer=\"{timer}\"}}")),
            "{timer}"
        );
    }
}

#[tokio::test]
async fn orders_at_risk_are_for_operators_and_refuse_bad_windows() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let admin = api.token("ada", &[Role::Admin]);
    assert_eq!(
        api.get("/api/v1/operator/at-risk?within=90m&limit=5", &admin)
            .await
            .status,
        200
    );
    for (sub, roles) in [
        ("cust-1", &[Role::Customer][..]),
        ("sim", &[Role::Partner][..]),
        ("payments", &[Role::PaymentService][..]),
    ] {
        let answer = api
            .get("/api/v1/operator/at-risk", &api.token(sub, roles))
            .await;
        answer.problem(403);
    }
    let anonymous = api
        .send(
            reqwest::Method::GET,
            "/api/v1/operator/at-risk",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    for bad in [
        "within=30s",
        "within=8d",
        "within=2",
        "within=2y",
        "within=abc",
        "within=-1h",
        "within=99999999d",
        "within=1h30m",
        "limit=0",
        "limit=201",
        "limit=x",
    ] {
        let answer = api
            .get(&format!("/api/v1/operator/at-risk?{bad}"), &admin)
            .await;
        answer.problem(400);
    }
}

#[tokio::test]
async fn search_filters_by_each_reference_state_and_creation_range_and_pages() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let customer = format!("cust-search-{}", uuid::Uuid::new_v4().simple());
    let ids = [
        api.paid_order(&customer).await,
        api.paid_order(&customer).await,
        api.paid_order(&customer).await,
    ];
    let number = format!("PN-SEARCH-{}", uuid::Uuid::new_v4().simple());
    partner(
        api,
        ids[0].as_str(),
        "PICKED_UP",
        json!({"partner_order_number": number}),
    )
    .await;
    let picked = api.wait_state(&ops, ids[0].as_str(), "PICKED_UP").await;
    let search = |query: String| {
        let ops = ops.clone();
        async move {
            api.get(&format!("/api/v1/delivery-orders?{query}"), &ops)
                .await
        }
    };
    let found = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["delivery_order_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let payment = picked["payment_id"].as_str().unwrap();
    assert_eq!(
        found(&search(format!("payment_id={payment}")).await),
        [ids[0].as_str()]
    );
    assert_eq!(
        found(&search(format!("partner_order_number={number}")).await),
        [ids[0].as_str()]
    );
    let ordering = picked["ordering_id"].as_str().unwrap();
    assert_eq!(
        found(&search(format!("ordering_id={ordering}")).await),
        [ids[0].as_str()]
    );
    // Newest first.
    let all = found(&search(format!("customer_id={customer}")).await);
    assert_eq!(all, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(
        found(&search(format!("customer_id={customer}&state=PICKED_UP")).await),
        [ids[0].as_str()]
    );
    assert_eq!(
        found(&search(format!("customer_id={customer}&state=CREATED")).await),
        [ids[2].as_str(), ids[1].as_str()]
    );
    assert!(found(&search(format!("customer_id={customer}&state=CANCELLED")).await).is_empty());
    assert!(found(&search(format!("payment_id={payment}&state=CREATED")).await).is_empty());

    // Creation range: [from, to).
    let created = time(&picked["created_at"]);
    let stamp = |t: DateTime<Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    };
    let range = |from: DateTime<Utc>, to: DateTime<Utc>| {
        format!(
            "customer_id={customer}&created_from={}&created_to={}",
            stamp(from),
            stamp(to)
        )
    };
    assert_eq!(
        found(&search(range(created, created + Span::milliseconds(1))).await),
        [ids[0].as_str()]
    );
    assert!(found(&search(range(created - Span::seconds(1), created)).await).is_empty());
    assert!(
        found(
            &search(format!(
                "customer_id={customer}&created_from={}",
                stamp(Utc::now() + Span::hours(1))
            ))
            .await
        )
        .is_empty()
    );
    assert_eq!(
        found(
            &search(format!(
                "customer_id={customer}&created_to={}",
                stamp(created + Span::milliseconds(1))
            ))
            .await
        ),
        [ids[0].as_str()]
    );

    // Pages: two, then the last one, nothing twice.
    let page = search(format!("customer_id={customer}&limit=2")).await;
    assert_eq!(found(&page), [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page.json["next_cursor"].as_str().unwrap().to_owned();
    let last = search(format!("customer_id={customer}&limit=2&cursor={cursor}")).await;
    assert_eq!(found(&last), [ids[0].as_str()]);
    assert!(last.json["next_cursor"].is_null());

    // Bad input, in words.
    for bad in [
        format!(
            "created_from={}&created_to={}",
            stamp(created),
            stamp(created)
        ),
        format!(
            "created_from={}&created_to={}",
            stamp(created),
            stamp(created - Span::days(1))
        ),
        "created_from=yesterday".to_owned(),
        "created_to=2026-13-01T00:00:00Z".to_owned(),
        "payment_id=a%20b".to_owned(),
        format!("partner_order_number={}", "x".repeat(129)),
        "state=LOST".to_owned(),
        "limit=0".to_owned(),
        "limit=201".to_owned(),
        "cursor=not-a-cursor".to_owned(),
    ] {
        search(bad).await.problem(400);
    }
    // Operators and admins only.
    let owner = api.token(&customer, &[Role::Customer]);
    api.get(
        &format!("/api/v1/delivery-orders?customer_id={customer}"),
        &owner,
    )
    .await
    .problem(403);
    api.get(
        "/api/v1/delivery-orders",
        &api.token("sim", &[Role::Partner]),
    )
    .await
    .problem(403);
}

#[tokio::test]
async fn every_search_filter_and_the_deadlines_are_read_through_an_index() {
    use delivery_read_model::ReadModel;
    use delivery_read_model::reader::{Cursor, ListFilter};

    let pool = read_model().await;
    let mut conn = pool.acquire().await.unwrap();
    // On a small table a sequential scan is cheaper; forbid it to see which index serves.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan_lines = |rows: Vec<String>| rows.join("\n");
    // The gateway's own search statements (`ReadModel::list_statement`, as
    // `GET /delivery-orders` runs them), behind EXPLAIN, with each filter on its own.
    let now = chrono::Utc::now();
    fn only(set: impl FnOnce(&mut ListFilter)) -> ListFilter {
        let mut filter = ListFilter::default();
        set(&mut filter);
        filter
    }
    let filters = [
        (
            only(|f| f.payment_id = Some("p".into())),
            "delivery_orders_payment_idx",
        ),
        (
            only(|f| f.partner_order_number = Some("n".into())),
            "delivery_orders_partner_order_number_idx",
        ),
        (
            only(|f| f.ordering_id = Some("o".into())),
            "delivery_orders_ordering_created_idx",
        ),
        (
            only(|f| f.customer_id = Some("c".into())),
            "delivery_orders_customer_created_idx",
        ),
        (
            only(|f| f.state = Some(delivery_workflows::State::Created)),
            "delivery_orders_state_created_idx",
        ),
        (
            only(|f| {
                f.created_from = Some(now - chrono::Duration::days(1));
                f.created_to = Some(now);
            }),
            "delivery_orders_created_idx",
        ),
    ];
    // A later page too: the cursor's condition must not lose the index.
    let cursor = Cursor::decode(&format!(
        "{}.00000000-0000-4000-8000-000000000000",
        now.timestamp_micros()
    ));
    assert!(cursor.is_some());
    for (filter, index) in &filters {
        for after in [None, cursor] {
            let mut statement = ReadModel::list_statement(true, filter, 50, after);
            let sql = statement.sql().as_str().to_owned();
            let plan: Vec<String> = statement
                .build_query_scalar()
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan_lines(plan);
            assert!(plan.contains(index), "{filter:?}\n{sql}\n{plan}");
        }
    }
    // The operators' deadlines, as `GET /operator/at-risk` reads them.
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(ReadModel::at_risk_statement(true)))
            .bind(7200.0_f64)
            .bind(100_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let plan = plan_lines(plan);
    assert!(plan.contains("delivery_orders_next_deadline_idx"), "{plan}");
    for (statement, index) in [
        (
            "EXPLAIN SELECT count(*) FROM delivery_order_events WHERE occurred_at >= now() - interval '24 hours'",
            "delivery_order_events_occurred_idx",
        ),
        (
            "EXPLAIN SELECT at FROM delivery_order_locations
             WHERE delivery_order_id = '00000000-0000-4000-8000-000000000000' ORDER BY at",
            "delivery_order_locations_pkey",
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(statement)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan_lines(plan);
        assert!(plan.contains(index), "{statement}\n{plan}");
    }
}

#[tokio::test]
async fn customers_list_only_their_own_deliveries_newest_first_in_pages() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ada = format!("cust-me-{}", uuid::Uuid::new_v4().simple());
    let bob = format!("cust-me-{}", uuid::Uuid::new_v4().simple());
    let mut adas = Vec::new();
    for _ in 0..3 {
        adas.push(api.paid_order(&ada).await);
    }
    let bobs = api.paid_order(&bob).await;
    let ada_token = api.token(&ada, &[Role::Customer]);
    let ids = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["delivery_order_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let first = api
        .get("/api/v1/me/delivery-orders?limit=2", &ada_token)
        .await;
    assert_eq!(ids(&first), [adas[2].as_str(), adas[1].as_str()]);
    assert_eq!(first.json["items"][0]["state"], "CREATED");
    assert_eq!(first.json["items"][0]["customer_id"], ada.as_str());
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let rest = api
        .get(
            &format!("/api/v1/me/delivery-orders?limit=2&cursor={cursor}"),
            &ada_token,
        )
        .await;
    assert_eq!(ids(&rest), [adas[0].as_str()]);
    assert!(rest.json["next_cursor"].is_null());
    let all = api.get("/api/v1/me/delivery-orders", &ada_token).await;
    assert_eq!(
        ids(&all),
        [adas[2].as_str(), adas[1].as_str(), adas[0].as_str()]
    );

    let bob_token = api.token(&bob, &[Role::Customer]);
    assert_eq!(
        ids(&api.get("/api/v1/me/delivery-orders", &bob_token).await),
        [bobs.as_str()]
    );
    // Another customer's cursor shows nothing of theirs: the filter is the token's subject.
    let borrowed = api
        .get(
            &format!("/api/v1/me/delivery-orders?cursor={cursor}"),
            &bob_token,
        )
        .await;
    assert!(ids(&borrowed).is_empty());

    // Customers only: an operator has no deliveries of their own.
    api.get(
        "/api/v1/me/delivery-orders",
        &api.token("olga", &[Role::Operator]),
    )
    .await
    .problem(403);
    let anonymous = api
        .send(
            reqwest::Method::GET,
            "/api/v1/me/delivery-orders",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(anonymous.status, 401);
    for bad in ["limit=0", "limit=101", "cursor=nope", "cursor=1.not-a-uuid"] {
        api.get(&format!("/api/v1/me/delivery-orders?{bad}"), &ada_token)
            .await
            .problem(400);
    }
}

#[tokio::test]
async fn the_route_keeps_pings_in_time_order_for_the_owner_and_is_gone_when_the_order_ends() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let customer = format!("cust-route-{}", uuid::Uuid::new_v4().simple());
    let id = api.paid_order(&customer).await;
    let owner = api.token(&customer, &[Role::Customer]);
    let ops = api.token("olga", &[Role::Operator]);
    let path = format!("/api/v1/tracking/{id}/route");

    let empty = api.get(&path, &owner).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.json["points"], json!([]));
    assert!(empty.json["current"].is_null() && empty.json["destination"].is_null());

    partner(
        api,
        &id,
        "PICKED_UP",
        json!({"partner_order_number": "PN-ROUTE"}),
    )
    .await;
    api.wait_state(&ops, &id, "PICKED_UP").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let now = Utc::now();
    let destination = json!({"lat": 51.52, "lon": -0.1278});
    let ping = |n: i64, lat: f64| {
        json!({
            "event_id": format!("ping-{n}"), "type": "LOCATION", "delivery_order_id": id,
            "pickup_id": pickup_id,
            "occurred_at": (now - Span::seconds(10 - n)).to_rfc3339(),
            "data": {"lat": lat, "lon": -0.1278, "accuracy_m": 5.0, "destination": destination},
        })
    };
    // The third ping arrives before the second: the route is in time order all the same.
    for (n, lat) in [(1, 51.5074), (3, 51.5094), (2, 51.5084)] {
        let answer = api.webhook("sim", TEST_PARTNER_SECRET, &ping(n, lat)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let route = api.get(&path, &owner).await;
    assert_eq!(route.status, 200, "{}", route.text);
    let lats: Vec<f64> = route.json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lat"].as_f64().unwrap())
        .collect();
    assert_eq!(lats, [51.5074, 51.5084, 51.5094]);
    assert_eq!(route.json["current"]["lat"], 51.5094);
    assert_eq!(route.json["points"][0]["accuracy_m"], 5.0);
    assert_eq!(route.json["destination"], destination);
    assert_eq!(route.json["state"], "PICKED_UP");
    assert_eq!(
        api.get(&path, &ops).await.json["points"],
        route.json["points"]
    );

    // A destination that is not a place is refused, and changes nothing.
    let bad = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "ping-bad", "type": "LOCATION", "delivery_order_id": id,
                    "pickup_id": pickup_id,
                    "data": {"lat": 51.5, "lon": -0.12, "destination": {"lat": 91, "lon": 0}}}),
        )
        .await;
    bad.problem(422);

    // Who may see it: the owner and staff; others cannot tell it from nothing.
    api.get(&path, &api.token("cust-other", &[Role::Customer]))
        .await
        .problem(404);
    api.get(&path, &api.token("sim", &[Role::Partner]))
        .await
        .problem(403);
    api.get("/api/v1/tracking/not-an-id/route", &ops)
        .await
        .problem(400);
    api.get(
        &format!("/api/v1/tracking/{}/route", uuid::Uuid::new_v4()),
        &ops,
    )
    .await
    .problem(404);

    // Delivered: still shown. Confirmed: the order ended and its pings are gone.
    partner(api, &id, "DELIVERED", json!({})).await;
    api.wait_state(&ops, &id, "DELIVERED").await;
    assert_eq!(
        api.get(&path, &owner).await.json["points"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let confirm = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &owner,
            &json!({"type": "CONFIRMED"}),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    api.wait_state(&ops, &id, "DELIVERY_CONFIRMED").await;
    let ended = api.get(&path, &owner).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(ended.json["points"], json!([]));
    let pool = read_model().await;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_order_locations WHERE delivery_order_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, 0);
}

/// A failed delivery keeps its route while it waits for an operator (who reads where the parcel
/// was last seen), and the route goes when the operator ends the order by reshipping it.
#[tokio::test]
async fn a_failed_delivery_keeps_its_route_until_the_operator_ends_it() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-route-failed").await;
    let ops = api.token("olga", &[Role::Operator]);
    let path = format!("/api/v1/tracking/{id}/route");
    partner(
        api,
        &id,
        "PICKED_UP",
        json!({"partner_order_number": "PN-LOST"}),
    )
    .await;
    api.wait_state(&ops, &id, "PICKED_UP").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    for (n, lat) in [(1, 51.5074), (2, 51.5084)] {
        let ping = json!({
            "event_id": format!("lost-ping-{n}"), "type": "LOCATION", "delivery_order_id": id,
            "pickup_id": pickup_id, "data": {"lat": lat, "lon": -0.1278},
        });
        let answer = api.webhook("sim", TEST_PARTNER_SECRET, &ping).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    partner(
        api,
        &id,
        "DELIVERY_FAILED",
        json!({"reason": "PACKAGE_LOST", "detail": "fell off the bike"}),
    )
    .await;
    api.wait_state(&ops, &id, "PENDING_BY_OPERATOR").await;
    let kept = api.get(&path, &ops).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(
        kept.json["points"].as_array().unwrap().len(),
        2,
        "{}",
        kept.text
    );
    assert_eq!(kept.json["current"]["lat"], 51.5084);

    let reship = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &ops,
            &json!({"type": "OPERATOR_RESHIP", "data": {"note": "send another copy"}}),
        )
        .await;
    assert_eq!(reship.status, 200, "{}", reship.text);
    api.wait_state(&ops, &id, "RESHIPPED").await;
    let ended = api.get(&path, &ops).await;
    assert_eq!(ended.json["points"], json!([]), "{}", ended.text);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_order_locations WHERE delivery_order_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(&read_model().await)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_route_keeps_only_its_latest_pings() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-long-route").await;
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let keys = delivery_read_model::RedisKeys::new(redis_prefix().await);
    let reads = delivery_read_model::ReadModel::new(
        read_model().await,
        redis::Client::open(redis_url()).unwrap(),
        keys,
    )
    .unwrap();
    let bound = delivery_read_model::route::MAX_ROUTE_POINTS;
    // Whole seconds: PostgreSQL keeps microseconds.
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    for n in 0..bound + 5 {
        let at = start + Span::seconds(n);
        let stored = reads
            .record_location(
                uuid,
                &format!("long-{n}"),
                &json!({"lat": 10.0 + n as f64 / 10_000.0, "lon": 0.0}),
                None,
                at,
            )
            .await
            .unwrap();
        assert_eq!(stored, Some(true));
    }
    let route = reads.route(uuid).await.unwrap().unwrap();
    assert_eq!(route.points.len() as i64, bound);
    // The oldest five went.
    assert_eq!(route.points[0].at, start + Span::seconds(5));
    assert_eq!(
        route.points.last().unwrap().at,
        start + Span::seconds(bound + 4)
    );
}

#[tokio::test]
async fn charts_aggregate_the_last_day_from_the_audit_trail_and_are_shared_for_a_minute() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let failing = api.paid_order("cust-charts").await;
    let waiting = api.paid_order("cust-charts").await;
    partner(
        api,
        &failing,
        "PICKED_UP",
        json!({"partner_order_number": "PN-CHART"}),
    )
    .await;
    partner(
        api,
        &failing,
        "DELIVERY_FAILED",
        json!({"reason": "PACKAGE_LOST", "detail": "fell off the bike"}),
    )
    .await;
    api.wait_state(&ops, &failing, "PENDING_BY_OPERATOR").await;
    api.wait_state(&ops, &waiting, "CREATED").await;

    // Whatever another test's gateway shared, this read computes anew.
    let key = format!("{}operator-charts", redis_prefix().await);
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

    let charts = api.get("/api/v1/operator/charts", &ops).await;
    assert_eq!(charts.status, 200, "{}", charts.text);
    let c = &charts.json;
    let hours: Vec<DateTime<Utc>> = c["hours"].as_array().unwrap().iter().map(time).collect();
    assert_eq!(hours.len(), 24);
    assert!(hours.windows(2).all(|w| w[1] - w[0] == Span::hours(1)));
    let this_hour = *hours.last().unwrap();
    assert!(
        this_hour <= time(&c["generated_at"])
            && time(&c["generated_at"]) - this_hour < Span::hours(1)
    );
    let entered = |state: &str| -> i64 {
        c["entered"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == state)
            .map(|e| e["count"].as_i64().unwrap())
            .sum()
    };
    // This test's orders are among them (other tests share the database).
    assert!(entered("CREATED") >= 2, "{}", charts.text);
    for state in ["PICKED_UP", "DELIVERY_FAILED", "PENDING_BY_OPERATOR"] {
        assert!(entered(state) >= 1, "{state}: {}", charts.text);
    }
    let lost = c["failures_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "PACKAGE_LOST")
        .unwrap_or_else(|| panic!("{}", charts.text));
    assert!(lost["count"].as_i64().unwrap() >= 1);
    let counts: Vec<i64> = c["failures_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most frequent first"
    );
    for stage in ["CREATED", "PICKED_UP"] {
        let d = c["stage_durations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["stage"] == stage)
            .unwrap_or_else(|| panic!("{stage}: {}", charts.text));
        let (p50, p95) = (
            d["p50_seconds"].as_f64().unwrap(),
            d["p95_seconds"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p95, "{d}");
        assert!(d["count"].as_i64().unwrap() >= 1);
    }

    // Shared for a minute: the next read is the same figures, and Redis says for how long.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(0 < ttl && ttl <= 60_000, "{ttl}");
    let again = api.get("/api/v1/operator/charts", &ops).await;
    assert_eq!(again.json["generated_at"], c["generated_at"]);

    api.get(
        "/api/v1/operator/charts",
        &api.token("cust-charts", &[Role::Customer]),
    )
    .await
    .problem(403);
    api.get(
        "/api/v1/operator/charts",
        &api.token("sim", &[Role::Partner]),
    )
    .await
    .problem(403);
}

/// The stage figures are the right numbers, not only plausible ones: three orders that stayed
/// 60, 120 and 180 s in CREATED (then picked up) give p50 120 s and p95 174 s (percentile with
/// interpolation), on a read model holding only them.
#[tokio::test]
async fn stage_durations_are_the_percentiles_of_the_stays() {
    use delivery_read_model::{ReadModel, ReadModelWriter, RedisKeys};
    use delivery_workflows::activities::Projection;
    use delivery_workflows::machine::DeliveryOrder;
    use delivery_workflows::{ActorKind, DELIVERY_ORDER_V1, EventType};

    let database = fresh_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database)
        .await
        .unwrap();
    delivery_read_model::migrate(&pool).await.unwrap();
    let writer = ReadModelWriter::new(pool.clone());
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let base = Utc::now() - Span::hours(2);
    for (n, stay) in [60, 120, 180].into_iter().enumerate() {
        let created = base + Span::minutes(10 * n as i64);
        let mut order = DeliveryOrder::new(
            &DELIVERY_ORDER_V1,
            order_input(&new_order_id(), far_deadlines()),
            at(created),
        );
        order.partner.partner_id = Some("sim".into());
        order
            .apply(
                &DELIVERY_ORDER_V1,
                envelope(
                    &format!("pu-{n}"),
                    EventType::PickedUp,
                    json!({"partner_order_number": format!("PN-{n}")}),
                    ActorKind::Partner,
                ),
                &at(created + Span::seconds(stay)),
            )
            .unwrap();
        writer.project(&Projection::of(&order, 0)).await.unwrap();
    }
    let read_model = ReadModel::new(
        pool.clone(),
        redis::Client::open(redis_url()).unwrap(),
        RedisKeys::new(format!(
            "{}stages-{}:",
            redis_prefix().await,
            uuid::Uuid::new_v4().simple()
        )),
    )
    .unwrap();
    let charts = read_model.charts().await.unwrap();
    let created = charts
        .stage_durations
        .iter()
        .find(|d| d.stage == "CREATED")
        .unwrap_or_else(|| panic!("{charts:?}"));
    assert_eq!(created.count, 3);
    assert!((created.p50_seconds - 120.0).abs() < 1e-6, "{created:?}");
    assert!((created.p95_seconds - 174.0).abs() < 1e-6, "{created:?}");
    assert_eq!(
        charts.stage_durations.len(),
        1,
        "only stays that ended count: {charts:?}"
    );
    pool.close().await;
    drop_database(&database).await;
}
