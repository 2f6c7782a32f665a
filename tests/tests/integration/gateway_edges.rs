//! The gateway at its edges: malformed input never yields a 5xx, rate limits, readiness and
//! outages of Redis and PostgreSQL, read-your-writes bounds, the OpenAPI document, metrics and
//! the token command.

use std::process::Command;

use delivery_api::auth::Role;
use delivery_tests::*;
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_input_is_refused_clearly_and_never_with_a_5xx() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge").await;
    let payer = api.token("payments", &[Role::PaymentService]);
    let operator = api.token("olga", &[Role::Operator, Role::Admin]);
    let valid = payment_event(&new_payment_id(), "cust-sweep");
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut body = valid.clone();
        f(&mut body);
        body
    };
    let injection = "'; DROP TABLE delivery_orders; --";
    let bodies = [
        mutate(&|b| b["items"] = json!("many")),
        mutate(&|b| b["items"] = json!([])),
        mutate(&|b| b["items"][0]["quantity"] = json!(-1)),
        mutate(&|b| b["items"][0]["quantity"] = json!(1e30)),
        mutate(&|b| b["items"][0]["format"] = json!("VINYL")),
        mutate(&|b| b["budget"] = json!("lots")),
        mutate(&|b| b["payment_id"] = json!(injection)),
        mutate(&|b| b["customer_id"] = json!("<script>alert(1)</script>")),
        mutate(&|b| b["ordering_id"] = json!("x".repeat(500))),
        mutate(&|b| b["shipping_address"]["country"] = json!("Germany")),
        mutate(&|b| b["shipping_address"]["name"] = json!("")),
        mutate(&|b| b["shipping_address"]["line1"] = json!("x\u{0000}y")),
        mutate(&|b| b["unexpected"] = json!(true)),
        mutate(&|b| b["shipping_address"]["floor"] = json!(3)),
        mutate(&|b| {
            b.as_object_mut().unwrap().remove("payment_id");
        }),
        json!(null),
        json!([1, 2, 3]),
        json!("a string"),
    ];
    for body in &bodies {
        let answer = api.post("/api/v1/payment-events", &payer, body).await;
        assert!(
            answer.status == 400 || answer.status == 422,
            "{body}: {} {}",
            answer.status,
            answer.text
        );
        answer.problem(answer.status);
        assert!(
            !answer.text.contains("sqlx") && !answer.text.contains("tonic"),
            "{}",
            answer.text
        );
    }
    let unknown = api
        .post("/api/v1/payment-events", &payer, &bodies[12])
        .await;
    assert!(
        unknown.json["detail"]
            .as_str()
            .unwrap()
            .contains("unexpected"),
        "{}",
        unknown.text
    );

    let raw = [
        ("application/json", b"{".to_vec()),
        ("application/json", b"{\"event_id\": \"x\",}".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("text/plain", b"hello".to_vec()),
        (
            "application/json",
            format!("{{\"notes\": \"{}\"}}", "x".repeat(100 * 1024)).into_bytes(),
        ),
    ];
    for (content_type, body) in raw {
        let answer = api
            .post_raw("/api/v1/payment-events", Some(&payer), content_type, body)
            .await;
        assert!(
            (400..500).contains(&answer.status),
            "{content_type}: {} {}",
            answer.status,
            answer.text
        );
        answer.problem(answer.status);
    }
    let huge = api
        .post_raw(
            "/api/v1/payment-events",
            Some(&payer),
            "application/json",
            vec![b' '; 1024 * 1024],
        )
        .await;
    huge.problem(413);

    for odd in [
        "not-a-uuid",
        "0196A3B0-7C1E-7CC0-9D1E-2F3A4B5C6D7E",
        "0196a3b07c1e7cc09d1e2f3a4b5c6d7e",
        "%27%3B%20DROP%20TABLE%20x%3B--",
        "..%2F..%2Fetc%2Fpasswd",
        &"9".repeat(300),
    ] {
        for path in [
            format!("/api/v1/delivery-orders/{odd}"),
            format!("/api/v1/delivery-orders/{odd}/events"),
        ] {
            let answer = api.get(&path, &operator).await;
            assert!(
                answer.status == 400 || answer.status == 404,
                "{path}: {} {}",
                answer.status,
                answer.text
            );
            answer.problem(answer.status);
        }
        let answer = api
            .post(
                &format!("/api/v1/delivery-orders/{odd}/events"),
                &operator,
                &json!({"type": "CANCEL", "data": {"reason": "x"}}),
            )
            .await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{odd}: {}",
            answer.text
        );
    }
    let events = format!("/api/v1/delivery-orders/{id}/events");
    for body in [
        json!({"type": "TELEPORTED"}),
        json!({"type": "CANCEL", "data": "reason"}),
        json!({"type": "CANCEL", "data": {"reason": 42}}),
        json!({"type": "CANCEL", "data": {"reason": "x"}, "event_id": injection}),
        json!({"type": "CANCEL", "data": {"reason": "x".repeat(5000)}}),
        json!({"kind": "CANCEL"}),
    ] {
        let answer = api.post(&events, &operator, &body).await;
        assert!(
            answer.status == 400 || answer.status == 422,
            "{body}: {} {}",
            answer.status,
            answer.text
        );
        answer.problem(answer.status);
    }
    for query in [
        "state=LOST",
        "limit=0",
        "limit=100000",
        "limit=ten",
        "ordering_id=%27%20OR%201%3D1",
        "cursor=1.2",
    ] {
        let answer = api
            .get(&format!("/api/v1/delivery-orders?{query}"), &operator)
            .await;
        answer.problem(400);
    }
    api.get(
        &format!("/api/v1/delivery-orders/{id}?min_version=-1"),
        &operator,
    )
    .await
    .problem(400);
    api.get("/api/v1/orderings/a%20b/delivery-orders", &operator)
        .await
        .problem(400);
    let nowhere = api.get("/api/v1/nowhere", &operator).await;
    nowhere.problem(404);
    let wrong_method = api
        .send(
            reqwest::Method::DELETE,
            "/api/v1/payment-events",
            Some(&operator),
            None,
            &[],
        )
        .await;
    wrong_method.problem(405);

    // After all that, the order is untouched and the gateway serves on.
    let read = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}?min_version=0"),
            &operator,
        )
        .await;
    assert_eq!(read.json["state"], "CREATED", "{}", read.text);
    assert_eq!(read.json["version"], 0);
}

/// A gateway that allows each caller a burst of 3 requests, then 1 a second.
fn small_allowance() -> StackOptions {
    StackOptions::quiet()
        .gateway("RATE_LIMIT_PER_SECOND", "1")
        .gateway("RATE_LIMIT_BURST", "3")
}

#[tokio::test]
async fn callers_over_their_rate_get_429_with_retry_after() {
    let stack = Stack::start_with(small_allowance()).await;
    let api = stack.api();
    let greedy = api.token("greedy", &[Role::Operator]);
    let other = api.token("patient", &[Role::Operator]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(api.get("/api/v1/operator/queue", &greedy).await);
    }
    let limited = statuses
        .iter()
        .find(|a| a.status == 429)
        .expect("the burst runs out");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    limited.problem(429);
    assert_eq!(statuses.iter().filter(|a| a.status == 200).count(), 3);
    assert_eq!(
        api.get("/api/v1/operator/queue", &other).await.status,
        200,
        "per caller"
    );
    assert_eq!(
        api.send(reqwest::Method::GET, "/healthz", None, None, &[])
            .await
            .status,
        200,
        "probes are never limited"
    );

    // A made-up path answered 413 (a body over MAX_BODY_BYTES) and 429 (a caller over its rate)
    // is counted under the one `unmatched` route: no path becomes a series.
    let made_up = uuid::Uuid::new_v4().to_string();
    let unknown = format!("/nope/{made_up}");
    let bulky = api.token("bulky", &[Role::Operator]);
    api.post_raw(
        &unknown,
        Some(&bulky),
        "application/json",
        vec![b' '; 1024 * 1024],
    )
    .await
    .problem(413);
    let mut limited = None;
    for _ in 0..6 {
        let answer = api.get(&unknown, &greedy).await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    limited.expect("the greedy caller is limited").problem(429);
    let metrics = api
        .send(reqwest::Method::GET, "/metrics", None, None, &[])
        .await
        .text;
    assert!(
        !metrics.contains(&made_up) && !metrics.contains("/nope"),
        "{metrics}"
    );
    for status in ["413", "429"] {
        let series: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("delivery_api_http_requests_total{")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .collect();
        // The 429s of /operator/queue above keep their route; the made-up path has none.
        assert!(
            series.iter().any(|l| l.contains("route=\"unmatched\""))
                && series.iter().all(|l| {
                    l.contains("route=\"unmatched\"")
                        || l.contains("route=\"/api/v1/operator/queue\"")
                }),
            "{status}: {series:?}"
        );
    }
    assert!(
        metrics.lines().any(
            |l| l.starts_with("delivery_api_http_request_duration_seconds_count{")
                && l.contains("route=\"unmatched\"")
        ),
        "{metrics}"
    );
}

/// Partner webhooks are charged to their partner only once the signature checks out: a flood of
/// unsigned callbacks naming the partner, from the partner's own address, is limited on that
/// address and leaves the partner's allowance whole; a partner over its own allowance gets 429
/// before its signature is claimed, so the same callback sent again later is taken.
#[tokio::test]
async fn webhook_floods_without_the_secret_never_spend_the_partners_allowance() {
    let stack = Stack::start_with(small_allowance()).await;
    let api = stack.api();
    let ping = |event_id: &str| {
        json!({"event_id": event_id, "type": "LOCATION", "delivery_order_id": new_order_id(),
               "pickup_id": "pk-none", "data": {"lat": 48.85, "lon": 2.35}})
    };
    let mut forged = Vec::new();
    for n in 0..8 {
        let body = serde_json::to_vec(&ping(&format!("forged-{n}"))).unwrap();
        forged.push(api.signed_webhook("sim", "t=1,v1=00", body).await.status);
    }
    assert!(
        forged.contains(&401) && forged.contains(&429),
        "refused, then limited: {forged:?}"
    );
    let taken = api
        .webhook("sim", TEST_PARTNER_SECRET, &ping("genuine-0"))
        .await;
    assert_eq!(
        taken.status, 404,
        "the partner's callback is handled (an unknown order): {}",
        taken.text
    );

    // The partner over its own allowance: 429, and the very same bytes and signature later are
    // handled, not refused as a replay.
    let mut limited = None;
    for n in 1..8 {
        let body = serde_json::to_vec(&ping(&format!("genuine-{n}"))).unwrap();
        let signature = delivery_webhook_signature::sign(
            TEST_PARTNER_SECRET.as_bytes(),
            delivery_tests::gateway::unix_now(),
            &body,
        );
        let answer = api.signed_webhook("sim", &signature, body.clone()).await;
        if answer.status == 429 {
            limited = Some((answer, signature, body));
            break;
        }
    }
    let (answer, signature, body) = limited.expect("the partner's burst runs out");
    answer.problem(429);
    let wait: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let retried = api.signed_webhook("sim", &signature, body).await;
    assert_eq!(retried.status, 404, "{}", retried.text);
    let metrics = api.metrics().await;
    assert!(
        metrics.contains(
            r#"delivery_api_partner_webhooks_total{outcome="rate_limited",partner="sim"}"#
        ),
        "{metrics}"
    );

    // Only the webhook is charged by its handler: another method on its path, or a path that
    // merely contains its segment, spends the sender's allowance like any request.
    for path in ["/api/v1/partner-webhooks/sim", "/x/partner-webhooks/y"] {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(
                api.send(reqwest::Method::GET, path, None, None, &[])
                    .await
                    .status,
            );
        }
        assert!(statuses.contains(&429), "{path}: {statuses:?}");
    }
}

/// Readiness keeps a gateway in service while any one dependency is down (each is shared by
/// every gateway, so pulling one would pull them all), names what is down and what answers 503
/// meanwhile, and says not ready only when the gateway reaches none of them.
/// `answer`, which a dependency that hangs must not hold up (bounded, so a regression fails
/// instead of hanging the suite).
async fn answered_within_a_hang<T>(what: &str, answer: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .unwrap_or_else(|_| panic!("{what} unanswered while a dependency hangs"))
}

#[tokio::test]
async fn readiness_names_what_is_down_and_stays_ready_while_anything_can_be_served() {
    let temporal = temporal_server().await;
    let (temporal_proxy, temporal_url) = TcpProxy::in_front_of(&temporal.url(), 7233).await;
    let (redis_proxy, redis_url) = TcpProxy::in_front_of(&redis_url(), 6379).await;
    let (pg_proxy, pg_url) = TcpProxy::in_front_of(database_url().await, 5432).await;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("TEMPORAL_ADDRESS", temporal_url.trim_end_matches('/'))
            .gateway("TEMPORAL_RPC_TIMEOUT_MS", "2000")
            .gateway("REDIS_URL", &redis_url)
            .gateway("DATABASE_URL", &pg_url),
    )
    .await;
    let api = stack.api();
    let readiness = || api.send(reqwest::Method::GET, "/readyz", None, None, &[]);
    let ready = readiness().await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["status"], "ready", "{}", ready.text);
    assert_eq!(ready.json["impaired"], json!([]), "{}", ready.text);
    let id = api.paid_order("cust-edge").await;
    let other = api.paid_order("cust-edge").await;
    let operator = api.token("olga", &[Role::Operator]);
    let path = format!("/api/v1/delivery-orders/{id}");
    assert_eq!(
        api.projected(&format!("{path}?min_version=0"), &operator)
            .await
            .status,
        200
    );
    let degraded_by = |ready: &Answer, dependency: &str| {
        assert_eq!(ready.status, 200, "{}", ready.text);
        assert_eq!(ready.json["status"], "degraded", "{}", ready.text);
        assert_eq!(
            ready.json["checks"][dependency]["ok"], false,
            "{}",
            ready.text
        );
        assert!(
            !ready.json["impaired"].as_array().unwrap().is_empty(),
            "{}",
            ready.text
        );
    };

    redis_proxy.cut();
    let ready = readiness().await;
    degraded_by(&ready, "redis");
    assert_eq!(ready.json["checks"]["postgres"]["ok"], true);
    let read = api.get(&path, &operator).await;
    assert_eq!(
        read.status, 200,
        "reads fall back to PostgreSQL: {}",
        read.text
    );
    assert_eq!(read.json["delivery_order_id"], id.as_str());
    let cancel = api
        .post(
            &format!("{path}/events"),
            &operator,
            &json!({"type": "CANCEL", "data": {"reason": "duplicate"}}),
        )
        .await;
    assert_eq!(
        cancel.status, 200,
        "commands do not need Redis: {}",
        cancel.text
    );
    let read = api.get(&format!("{path}?min_version=1"), &operator).await;
    assert_eq!(
        read.json["state"], "CANCELLED",
        "read-your-writes from PostgreSQL: {}",
        read.text
    );
    redis_proxy.restore();

    // A Redis that accepts and never answers is no different: every cache command has a short
    // deadline of its own, so readiness says degraded and reads come from PostgreSQL.
    redis_proxy.stall();
    degraded_by(
        &answered_within_a_hang("/readyz", readiness()).await,
        "redis",
    );
    let read = answered_within_a_hang("a read", api.get(&path, &operator)).await;
    assert_eq!(
        read.status, 200,
        "reads fall back to PostgreSQL while Redis hangs: {}",
        read.text
    );
    assert_eq!(read.json["state"], "CANCELLED", "{}", read.text);
    redis_proxy.restore();

    pg_proxy.cut();
    degraded_by(&readiness().await, "postgres");
    let list = api.get("/api/v1/delivery-orders", &operator).await;
    let problem = list.problem(503);
    assert!(list.headers.contains_key("retry-after"));
    assert!(
        !list.text.contains("5432") && !list.text.contains("sqlx"),
        "no internals leak: {}",
        list.text
    );
    assert!(problem["request_id"].is_string());
    let cancel_other = api
        .post(
            &format!("/api/v1/delivery-orders/{other}/events"),
            &operator,
            &json!({"type": "CANCEL", "data": {"reason": "duplicate"}}),
        )
        .await;
    assert_eq!(
        cancel_other.status, 200,
        "the gateway sends commands without PostgreSQL: {}",
        cancel_other.text
    );

    // Temporal down as well: reads the cache holds are still served, so still in service.
    temporal_proxy.cut();
    let ready = readiness().await;
    degraded_by(&ready, "temporal");
    assert_eq!(
        ready.json["checks"]["postgres"]["ok"], false,
        "{}",
        ready.text
    );
    // And nothing left to serve from: not ready, naming all three.
    redis_proxy.cut();
    let not_ready = readiness().await;
    let problem = not_ready.problem(503);
    for dependency in ["temporal", "postgres", "redis"] {
        assert_eq!(
            problem["checks"][dependency]["ok"], false,
            "{}",
            not_ready.text
        );
    }
    temporal_proxy.restore();
    redis_proxy.restore();

    // A database that accepts and never answers: the scrape (this gateway's first, so it
    // measures the gauges it reads from PostgreSQL) still answers within Prometheus' default
    // scrape timeout, with the gateway's own series.
    pg_proxy.restore();
    pg_proxy.stall();
    let scrape = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .expect("/metrics answers within a scrape timeout while PostgreSQL hangs");
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    assert!(
        text.contains("delivery_api_http_requests_total")
            && text.contains("delivery_api_operator_queue_size"),
        "{text}"
    );
    pg_proxy.cut(); // ends the hung connections
    pg_proxy.restore();
    eventually("ready again", || async {
        let ready = readiness().await;
        (ready.status == 200 && ready.json["status"] == "ready").then_some(())
    })
    .await;
}

#[tokio::test]
async fn min_version_waits_a_bounded_time_then_says_where_the_projection_is() {
    let stack =
        Stack::start_with(StackOptions::quiet().gateway("MIN_VERSION_WAIT_MS", "400")).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge").await;
    let operator = api.token("olga", &[Role::Operator]);
    let path = format!("/api/v1/delivery-orders/{id}");
    api.projected(&format!("{path}?min_version=0"), &operator)
        .await;
    let behind = api.get(&format!("{path}?min_version=5"), &operator).await;
    let problem = behind.problem(409);
    assert_eq!(problem["current_version"], 0);
    assert_eq!(problem["min_version"], 5);
    assert!(
        problem["detail"].as_str().unwrap().contains("version 0"),
        "{}",
        behind.text
    );
    let unknown = api
        .get(
            &format!("/api/v1/delivery-orders/{}?min_version=0", new_order_id()),
            &operator,
        )
        .await;
    assert!(
        unknown.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("does not hold"),
        "{}",
        unknown.text
    );
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_matches_the_routes() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let spec = api
        .send(reqwest::Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(spec.status, 200);
    let doc = spec.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut paths: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    paths.sort();
    let mut expected: Vec<(String, String)> = [
        ("POST", "/api/v1/payment-events"),
        ("POST", "/api/v1/delivery-orders"),
        ("GET", "/api/v1/delivery-orders"),
        ("GET", "/api/v1/delivery-orders/{id}"),
        ("POST", "/api/v1/delivery-orders/{id}/events"),
        ("GET", "/api/v1/delivery-orders/{id}/events"),
        ("GET", "/api/v1/orderings/{ordering_id}/delivery-orders"),
        ("GET", "/api/v1/operator/queue"),
        ("GET", "/api/v1/operator/at-risk"),
        ("GET", "/api/v1/operator/charts"),
        ("GET", "/api/v1/me/delivery-orders"),
        ("GET", "/api/v1/tracking/{id}"),
        ("GET", "/api/v1/tracking/{id}/route"),
        ("GET", "/api/state"),
        ("GET", "/api/v1/ui-config"),
        ("POST", "/api/v1/event-batches"),
        ("POST", "/deliveries/create"),
        ("POST", "/event"),
        ("GET", "/deliveries/{pk}/status"),
        ("POST", "/api/v1/partner-webhooks/{partner_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    expected.sort();
    assert_eq!(paths, expected, "the spec lists exactly the routes");

    // Every operation is served: nothing in the spec answers 404 from the router.
    let operator = api.token("olga", &[Role::Operator]);
    for (method, path) in &expected {
        let concrete = path
            .replace("{id}", &new_order_id())
            .replace("{ordering_id}", "ord-x")
            .replace("{pk}", &new_order_id())
            .replace("{partner_id}", "sim");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = api
            .send(method, &concrete, Some(&operator), Some(&json!({})), &[])
            .await;
        assert!(answer.status < 500, "{concrete}: {}", answer.text);
        if answer.status == 404 {
            assert!(
                !answer.json["type"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("/not-found")
                    || answer.json["detail"] != "no such resource",
                "{concrete} is not routed"
            );
        }
    }

    // Every $ref resolves, and every operation documents its problem answers.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {target}"
        );
    }
    let problem_statuses = doc["paths"]["/api/v1/delivery-orders/{id}/events"]["post"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    for status in [
        "200", "400", "401", "403", "404", "409", "422", "429", "503",
    ] {
        assert!(
            problem_statuses.contains(&status.to_owned()),
            "{status} undocumented: {problem_statuses:?}"
        );
    }
    assert_eq!(
        doc["paths"]["/api/v1/delivery-orders/{id}/events"]["post"]["responses"]["409"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["application/problem+json"]
    );
    assert!(doc["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer");

    let docs = api
        .send(reqwest::Method::GET, "/docs", None, None, &[])
        .await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("swagger"), "Swagger UI");

    // An independent validator accepts it (openapi-spec-validator, installed by `make test`).
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| {
        workspace_root()
            .join(".venv/bin/openapi-spec-validator")
            .display()
            .to_string()
    });
    let spec_file = std::env::temp_dir().join(format!("openapi-{}.json", api.port));
    std::fs::write(&spec_file, doc.to_string()).unwrap();
    let checked = Command::new(&validator)
        .arg(&spec_file)
        .output()
        .unwrap_or_else(|e| panic!("{validator}: {e}; run `make test`, which installs it"));
    assert!(
        checked.status.success(),
        "the spec is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The binary prints the same document.
    let printed = Command::new(api_binary()).arg("openapi").output().unwrap();
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, doc);
}

/// The gateway binary the tests run (as `make test` exported it, else next to this test).
fn api_binary() -> String {
    std::env::var("DELIVERY_API_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap();
        dir.join("delivery-api").display().to_string()
    })
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_the_token_command_mints_working_tokens() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge").await;

    let minted = Command::new(api_binary())
        .args([
            "token", "--role", "operator", "--sub", "alice", "--ttl", "10m",
        ])
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let read = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}?min_version=0"),
            &token,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let bad = Command::new(api_binary())
        .args(["token", "--role", "wizard", "--sub", "alice"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));

    let metrics = api
        .send(reqwest::Method::GET, "/metrics", None, None, &[])
        .await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text;
    assert!(
        text.lines()
            .any(|l| l.starts_with("delivery_api_http_requests_total")
                && l.contains("route=\"/api/v1/delivery-orders/{id}\"")
                && l.contains("status=\"200\"")),
        "{text}"
    );
    assert!(text.contains("delivery_api_http_request_duration_seconds_bucket"));
    assert!(text.contains("delivery_api_read_model_outbox_pending"));
    assert!(text.contains("delivery_api_read_your_writes_wait_seconds"));
    assert!(!text.contains(&id), "no series per id");
}
