//! The gateway's edges against callers who forge, replay or stretch what they send: partner
//! webhooks signed over a timestamp and accepted once, callbacks dated in the future, tokens
//! under an issuer/audience/lifetime policy, and the published development secrets refused
//! outside development.

use std::process::{Command, Stdio};
use std::time::Duration;

use delivery_api::auth::{Role, TokenKeys, TokenPolicy};
use delivery_tests::gateway::unix_now;
use delivery_tests::processes::binary;
use delivery_tests::{Stack, StackOptions, TEST_JWT_SECRET, TEST_PARTNER_SECRET, eventually};
use serde_json::json;

fn picked(id: &str, pickup_id: &str, event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": event_id, "type": "PICKED_UP", "delivery_order_id": id,
        "pickup_id": pickup_id, "data": {"partner_order_number": "PN-EDGE"}
    }))
    .unwrap()
}

#[tokio::test]
async fn webhook_signatures_are_fresh_bound_to_their_timestamp_and_used_once() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-1").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let body = picked(&id, &pickup_id, "edge-pu-1");
    let secret = TEST_PARTNER_SECRET.as_bytes();

    // The old body-only format names the one expected.
    let legacy = api.signed_webhook("sim", "sha256=00", body.clone()).await;
    let problem = legacy.problem(401);
    assert_eq!(
        problem["type"],
        "https://delivery.example/problems/bad-signature"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("t=<unix seconds>,v1=")
    );

    // Correctly signed, but six minutes ago: a capture being replayed later.
    let stale = delivery_webhook_signature::sign(secret, unix_now() - 360, &body);
    let answer = api.signed_webhook("sim", &stale, body.clone()).await;
    assert!(
        answer.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("timestamp"),
        "{}",
        answer.text
    );

    // Re-dated without the secret: the timestamp is inside the MAC.
    let now = unix_now();
    let genuine = delivery_webhook_signature::sign(secret, now - 30, &body);
    let redated = genuine.replacen(&format!("t={}", now - 30), &format!("t={now}"), 1);
    api.signed_webhook("sim", &redated, body.clone())
        .await
        .problem(401);

    // The genuine one is applied once; the same bytes again are a replay.
    let applied = api.signed_webhook("sim", &genuine, body.clone()).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.json["outcome"], "applied");
    let replay = api.signed_webhook("sim", &genuine, body.clone()).await;
    assert_eq!(
        replay.problem(401)["type"],
        "https://delivery.example/problems/replayed-webhook"
    );
    // A partner's own retry is signed anew and answered like the original, changing nothing.
    let retry = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &serde_json::from_slice(&body).unwrap(),
        )
        .await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json["state"], "PICKED_UP");
    assert_eq!(retry.json["version"], 1);

    // Every refusal and the replay are counted.
    let metrics = api.metrics().await;
    for outcome in ["bad_signature", "replayed", "applied"] {
        let label = format!("outcome=\"{outcome}\"");
        assert!(
            metrics.lines().any(
                |line| line.starts_with("delivery_api_partner_webhooks_total")
                    && line.contains(&label)
                    && line.contains("partner=\"sim\"")
            ),
            "{outcome} not counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_callback_dated_in_the_future_is_refused() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-2").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let answer = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "edge-f-1", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "occurred_at": ahead, "data": {}}),
        )
        .await;
    let problem = answer.problem(422);
    assert_eq!(
        problem["type"],
        "https://delivery.example/problems/invalid-occurred-at"
    );
    // A clock a few seconds ahead is fine.
    let slightly = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let answer = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "edge-f-2", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "occurred_at": slightly,
                    "data": {"partner_order_number": "PN-F"}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn tokens_must_match_the_configured_issuer_audience_and_lifetime() {
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("JWT_ISSUER", "https://id.example")
            .gateway("JWT_AUDIENCE", "delivery")
            .gateway("JWT_MAX_TTL_SECS", "3600"),
    )
    .await;
    let api = stack.api();
    let path = "/api/v1/operator/queue";
    let policy = TokenPolicy {
        issuer: Some("https://id.example".into()),
        audience: Some("delivery".into()),
        max_ttl: Duration::from_secs(3600),
    };
    let trusted = TokenKeys::with_policy(TEST_JWT_SECRET.as_bytes(), policy.clone())
        .mint("olga", &[Role::Operator], Duration::from_secs(600))
        .unwrap();
    let answer = api.get(path, &trusted).await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    // Signed with the right key but without iss and aud.
    let bare = api.token("olga", &[Role::Operator]);
    let refused = api.get(path, &bare).await;
    assert!(
        refused.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("lacks the"),
        "{}",
        refused.text
    );
    // Another audience.
    let elsewhere = TokenKeys::with_policy(
        TEST_JWT_SECRET.as_bytes(),
        TokenPolicy {
            audience: Some("billing".into()),
            ..policy.clone()
        },
    )
    .mint("olga", &[Role::Operator], Duration::from_secs(600))
    .unwrap();
    assert!(
        api.get(path, &elsewhere).await.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
    // Longer than the gateway's maximum lifetime.
    let long = TokenKeys::with_policy(
        TEST_JWT_SECRET.as_bytes(),
        TokenPolicy {
            max_ttl: Duration::from_secs(30 * 86400),
            ..policy
        },
    )
    .mint("olga", &[Role::Operator], Duration::from_secs(7 * 86400))
    .unwrap();
    assert!(
        api.get(path, &long).await.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3600 s")
    );
}

/// A token signed with the test stack's key carrying exactly `claims`, as an identity provider
/// with its own clock makes it.
fn token_with(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_are_honoured_only_between_not_before_and_expiry_give_or_take_the_leeway() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-nbf").await;
    let path = format!("/api/v1/delivery-orders/{id}");
    let now = unix_now();
    let owner = |nbf: u64, exp: u64| {
        token_with(
            json!({"sub": "cust-nbf", "roles": ["customer"], "iat": now.min(nbf),
                          "nbf": nbf, "exp": exp}),
        )
    };

    // Valid from now: served, with every standard claim an issuer adds.
    let valid = token_with(json!({"sub": "cust-nbf", "roles": ["customer"], "iat": now,
        "nbf": now, "exp": now + 600, "iss": "https://id.example", "aud": "delivery",
        "jti": "nbf-1"}));
    assert_eq!(api.get(&path, &valid).await.status, 200);
    // Not valid for another two minutes: refused, saying why, over HTTP and on a socket.
    let early = owner(now + 120, now + 600);
    let refused = api.get(&path, &early).await;
    assert!(
        refused.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("not valid yet (nbf)"),
        "{}",
        refused.text
    );
    let socket = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/v1/ws/delivery-orders/{id}?access_token={early}",
        api.port
    ))
    .await;
    match socket {
        Err(tokio_tungstenite::tungstenite::Error::Http(answer)) => {
            assert_eq!(answer.status(), 401)
        }
        other => panic!("a socket opened with a token not valid yet: {other:?}"),
    }
    // A second early, or a second past expiry: within the few seconds of leeway for clocks
    // that disagree, so served.
    assert_eq!(api.get(&path, &owner(now + 1, now + 600)).await.status, 200);
    assert_eq!(api.get(&path, &owner(now - 600, now - 1)).await.status, 200);
    // Expired a minute ago: refused.
    let expired = api.get(&path, &owner(now - 600, now - 60)).await;
    assert!(
        expired.problem(401)["detail"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.text
    );
}

/// Runs the gateway with `env` (and nothing inherited that could configure it) and returns its
/// exit status and output; it must refuse to start before it binds anything.
fn gateway_refuses(env: &[(&str, &str)]) -> String {
    let output = Command::new(binary("delivery-api", "DELIVERY_API_BIN"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .env("API_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("running delivery-api");
    assert!(!output.status.success(), "the gateway started with {env:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_published_development_secrets_are_refused_outside_dev_mode() {
    let dev_jwt = delivery_api::config::DEV_JWT_SECRET;
    let own = "an-operator-chosen-secret-0123456789";
    let output = gateway_refuses(&[
        ("JWT_SECRET", dev_jwt),
        ("PARTNER_WEBHOOK_SECRETS", "sim=a-long-partner-secret"),
    ]);
    assert!(
        output.contains("JWT_SECRET is the development secret"),
        "{output}"
    );
    let output = gateway_refuses(&[("JWT_SECRET", own)]);
    assert!(
        output.contains("PARTNER_WEBHOOK_SECRETS is required"),
        "{output}"
    );
    let output = gateway_refuses(&[
        ("JWT_SECRET", own),
        ("PARTNER_WEBHOOK_SECRETS", "sim=dev-partner-secret"),
    ]);
    assert!(output.contains("development secret"), "{output}");
    let output = gateway_refuses(&[
        ("JWT_SECRET", own),
        ("PARTNER_WEBHOOK_SECRETS", "sim=short"),
    ]);
    assert!(output.contains("at least 16 bytes"), "{output}");
}

#[tokio::test]
async fn min_version_reads_check_ownership_first_and_are_bounded_per_caller() {
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("MIN_VERSION_WAITS_PER_CALLER", "4")
            .gateway("MIN_VERSION_WAIT_MS", "2000"),
    )
    .await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-3").await;
    let waits = || async {
        api.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("delivery_api_read_your_writes_wait_seconds_count"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    // Another customer asks for a version far ahead: not found at once, without waiting.
    let before = waits().await;
    let mallory = api.token("mallory", &[Role::Customer]);
    api.get(
        &format!("/api/v1/delivery-orders/{id}?min_version=99"),
        &mallory,
    )
    .await
    .problem(404);
    assert_eq!(
        waits().await,
        before,
        "nobody waited for somebody else's order"
    );

    // One caller waiting on many reads at once: beyond its places it is told to slow down.
    let payer = api.token("payments", &[Role::PaymentService]);
    let unknown = uuid::Uuid::new_v4();
    let path = format!("/api/v1/delivery-orders/{unknown}?min_version=0");
    let answers = futures::future::join_all((0..12).map(|_| api.get(&path, &payer))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let busy = statuses.iter().filter(|s| **s == 429).count();
    let behind = statuses.iter().filter(|s| **s == 409).count();
    assert!(
        busy >= 1 && behind <= 4 && busy + behind == 12,
        "{statuses:?}"
    );
    let refused = answers.iter().find(|a| a.status == 429).unwrap();
    assert!(
        refused.problem(429)["detail"]
            .as_str()
            .unwrap()
            .contains("4 reads waiting"),
        "{}",
        refused.text
    );
}

/// The sum of the samples of `name` whose labels contain `label` (`""` for all).
fn sample_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn min_version_waits_are_woken_by_the_publication_and_capped_in_total() {
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("MIN_VERSION_WAIT_MS", "8000")
            .gateway("MIN_VERSION_WAITS_TOTAL", "3"),
    )
    .await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-5").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    eventually("the gateway's live updates connected", || async {
        let metrics = api.metrics().await;
        (sample_sum(&metrics, "delivery_api_live_updates_connected", "") == 1.0).then_some(())
    })
    .await;
    let lookups = |reason: &'static str| async move {
        let label = format!("reason=\"{reason}\"");
        sample_sum(
            &api.metrics().await,
            "delivery_api_read_your_writes_lookups_total",
            if reason.is_empty() { "" } else { &label },
        )
    };
    let (before, started_before) = (lookups("").await, lookups("start").await);

    // One read waits for version 1 of the order, two others for orders nobody creates: the
    // gateway's three places are taken, and a fourth caller is told to come back.
    let olga = api.token("olga", &[Role::Operator]);
    let order = format!("/api/v1/delivery-orders/{id}?min_version=1");
    let wait = api.get(&order, &olga);
    let nowhere = |sub: &'static str| {
        let token = api.token(sub, &[Role::PaymentService]);
        async move {
            let path = format!(
                "/api/v1/delivery-orders/{}?min_version=0",
                uuid::Uuid::new_v4()
            );
            api.get(&path, &token).await
        }
    };
    let (others_a, others_b) = (nowhere("payments-a"), nowhere("payments-b"));
    let fourth = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nowhere("payments-c").await
    };
    // Two seconds into the wait the partner picks the order up: version 1, published by the
    // relay, wakes the wait.
    let pick = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        api.webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "edge-wake-1", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": {"partner_order_number": "PN-W"}}),
        )
        .await
    };
    let started = std::time::Instant::now();
    let (read, a, b, refused, picked) = tokio::join!(
        async {
            let read = wait.await;
            (read, started.elapsed())
        },
        others_a,
        others_b,
        fourth,
        pick
    );
    assert_eq!(picked.status, 200, "{}", picked.text);
    let (read, waited) = read;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["state"], "PICKED_UP", "{}", read.text);
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    for other in [&a, &b] {
        other.problem(409);
    }
    assert!(
        refused.problem(429)["detail"]
            .as_str()
            .unwrap()
            .contains("maximum of 3 reads waiting"),
        "{}",
        refused.text
    );

    // Four reads started (one look each, the refused one's included); of the three that
    // waited, only the one answered by the publication looked again. Polling every 250 ms would
    // have looked about 70 times.
    let started_looks = lookups("start").await - started_before;
    let later_looks = lookups("").await - before - started_looks;
    assert_eq!(started_looks, 4.0);
    assert!(
        (1.0..=2.0).contains(&later_looks),
        "looks after the start: {later_looks}\n{}",
        api.metrics().await
    );
    assert_eq!(
        lookups("fallback").await,
        0.0,
        "no fallback while live updates flow"
    );
}

/// A few callers at their own share of waiting reads (on ids nobody creates) cannot take every
/// place: the owner's read-your-writes read still waits and is answered.
#[tokio::test]
async fn a_few_callers_at_their_share_of_waits_leave_room_for_everyone_else() {
    let stack = Stack::start_with(
        StackOptions::quiet()
            .with_gateway()
            .gateway("MIN_VERSION_WAIT_MS", "4000"),
    )
    .await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-6").await;
    let hogs: Vec<_> = (0..3)
        .flat_map(|n| {
            let token = api.token(&format!("hog-{n}"), &[Role::Operator]);
            (0..8).map(move |_| (token.clone(), uuid::Uuid::new_v4()))
        })
        .map(|(token, nowhere)| async move {
            api.get(
                &format!("/api/v1/delivery-orders/{nowhere}?min_version=0"),
                &token,
            )
            .await
            .status
        })
        .collect();
    // The owner waits for the pickup it is about to see; the partner sends it a second later.
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let owner = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let customer = api.token("cust-edge-6", &[Role::Customer]);
        api.get(
            &format!("/api/v1/delivery-orders/{id}?min_version=1"),
            &customer,
        )
        .await
    };
    let pick = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        api.webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "edge-share-1", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id, "data": {"partner_order_number": "PN-S"}}),
        )
        .await
    };
    let (hogged, read, picked) = tokio::join!(futures::future::join_all(hogs), owner, pick);
    assert_eq!(picked.status, 200, "{}", picked.text);
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["state"], "PICKED_UP", "{}", read.text);
    assert!(
        hogged.iter().all(|status| *status == 409),
        "each hog's own waits ran out: {hogged:?}"
    );
}

#[tokio::test]
async fn only_operators_read_the_drivers_phone_in_full() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let id = api.paid_order("cust-edge-4").await;
    let (_, pickup_id) = api.pickup_confirmed(&id).await;
    let picked = api
        .webhook(
            "sim",
            TEST_PARTNER_SECRET,
            &json!({"event_id": "edge-phone-1", "type": "PICKED_UP", "delivery_order_id": id,
                    "pickup_id": pickup_id,
                    "data": {"partner_order_number": "PN-P",
                             "driver": {"name": "Kim", "phone": "+44 7700 900123"}}}),
        )
        .await;
    assert_eq!(picked.status, 200, "{}", picked.text);
    let owner = api.token("cust-edge-4", &[Role::Customer]);
    let olga = api.token("olga", &[Role::Operator]);
    let order = format!("/api/v1/delivery-orders/{id}?min_version=1");
    let trail = format!("/api/v1/delivery-orders/{id}/events?min_version=1");

    let seen = api.get(&order, &owner).await;
    assert_eq!(
        seen.json["driver"]["phone"], "*** **** ***123",
        "{}",
        seen.text
    );
    assert_eq!(seen.json["driver"]["name"], "Kim");
    let events = api.get(&trail, &owner).await;
    assert!(!events.text.contains("900123"), "{}", events.text);
    assert!(events.text.contains("***123"), "{}", events.text);

    let staff = api.get(&order, &olga).await;
    assert_eq!(
        staff.json["driver"]["phone"], "+44 7700 900123",
        "{}",
        staff.text
    );
    assert!(
        api.get(&trail, &olga)
            .await
            .text
            .contains("+44 7700 900123")
    );
}

#[tokio::test]
async fn idle_connections_are_closed_and_connections_are_capped() {
    use tokio::io::AsyncReadExt;
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("HTTP_MAX_CONNECTIONS", "5")
            .gateway("HTTP_IDLE_TIMEOUT_SECS", "2")
            .gateway("WS_IDLE_TIMEOUT_SECS", "3"),
    )
    .await;
    let api = stack.api();
    // A fresh client each time, so no pooled keep-alive connection takes a place.
    let probe = || async {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .unwrap()
            .get(format!("{}/healthz", api.url))
            .send()
            .await
    };
    eventually(
        "the test client's own connections closed as idle",
        || async { probe().await.ok().map(|_| ()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Five clients that connect and say nothing take every place...
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", api.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        probe().await.is_err(),
        "the sixth connection waits for a place"
    );
    // ...until the gateway closes them as idle: each read ends, and the places come back.
    for socket in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(6), socket.read(&mut byte))
            .await
            .expect("closed by the gateway within its idle timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let answer = eventually("a place free again", || async { probe().await.ok() }).await;
    assert_eq!(answer.status(), 200);
}
