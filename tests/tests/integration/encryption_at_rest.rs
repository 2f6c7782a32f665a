//! Encryption at rest in Temporal: what the Temporal server stores of a delivery holds no
//! customer address, phone number or note in clear, only payloads encrypted under a named key;
//! the gateway's codec endpoint (Temporal's codec server protocol) turns them back for operators
//! and for no one else; the `temporal` CLI decodes through it; orders started under one key
//! finish after the worker rotates to another; a recorded encrypted history replays with the
//! codec.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use delivery_api::auth::Role;
use delivery_payload_codec::config::{ACTIVE_VAR, KEYS_VAR};
use delivery_tests::*;
use delivery_workflows::{ActorKind, DeliveryOrderWorkflow, EventType, State, workflow_id};
use serde_json::{Map, Value, json};
use temporalio_client::{
    UntypedWorkflow, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory,
};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

/// What of `payment_event` and the simulator's driver must never be readable in Temporal.
const IN_PAYMENT: [&str; 5] = [
    "Lovelace",
    "St James",
    "SW1Y 4JH",
    "7946 0000",
    "leave with the porter",
];
const FROM_PARTNER: [&str; 2] = ["Sam Carter", "7700 900123"];
const NOTES: [&str; 2] = ["no parcel at the lodge", "found it in the mail room"];

/// One payload of an exported history: where it sits, its metadata and data, decoded.
#[derive(Debug)]
struct FoundPayload {
    path: String,
    metadata: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

impl FoundPayload {
    fn meta(&self, key: &str) -> Option<String> {
        self.metadata
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Payloads Temporal or the SDK keep in clear, whatever the codec: search attributes (the
    /// server indexes them), a workflow's summary (user metadata, which the SDK 1.1.1 writes and
    /// reads without the codec), the SDK core's patch markers (a patch id) and the bookkeeping
    /// of its local-activity markers (`details.data`: sequence number, attempt, activity type,
    /// times; the activity's result beside it, `details.result`, goes through the codec). They
    /// are still searched for customer data.
    fn is_clear_by_design(&self) -> bool {
        // The exports spell field names in snake_case, camelCase or PascalCase.
        let path = self.path.to_ascii_lowercase().replace('_', "");
        [
            "indexedfields",
            "usermetadata",
            "patch-data",
            "markerrecordedeventattributes.details.data.",
        ]
        .iter()
        .any(|part| path.contains(part))
    }
}

/// Visits every object of `value` with its path, depth first; `visit` says whether to look
/// inside the object too.
fn walk_objects(
    value: &Value,
    path: &str,
    visit: &mut dyn FnMut(&Map<String, Value>, &str) -> bool,
) {
    match value {
        Value::Object(map) if visit(map, path) => {
            for (key, inner) in map {
                walk_objects(inner, &format!("{path}.{key}"), visit);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                walk_objects(inner, &format!("{path}[{i}]"), visit);
            }
        }
        _ => {}
    }
}

/// Every `{metadata: {k: base64}, data: base64}` object in a history exported as JSON (the
/// SDK's export or the CLI's `--output json --no-json-shorthand-payloads`).
fn payloads_of(value: &Value, path: &str, found: &mut Vec<FoundPayload>) {
    walk_objects(value, path, &mut |map, path| {
        let metadata = map.get("metadata").and_then(Value::as_object);
        let is_payload = metadata.is_some_and(|m| m.values().all(Value::is_string))
            && map.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "metadata" | "data" | "externalPayloads" | "external_payloads"
                )
            })
            && map.get("data").is_none_or(Value::is_string);
        if !is_payload {
            return true;
        }
        let decode = |text: &str| STANDARD.decode(text).expect("payload bytes are base64");
        found.push(FoundPayload {
            path: path.to_owned(),
            metadata: metadata
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), decode(v.as_str().unwrap())))
                .collect(),
            data: map
                .get("data")
                .and_then(Value::as_str)
                .map(decode)
                .unwrap_or_default(),
        });
        false
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that none of `secrets` is readable anywhere in the exported history `text`: not in
/// its text, not in any payload's bytes; that every payload but the search attributes is
/// encrypted and names its key; returns the key ids seen.
fn assert_nothing_in_clear(text: &str, secrets: &[&str]) -> Vec<String> {
    let history: Value = serde_json::from_str(text).expect("history JSON");
    let mut found = Vec::new();
    payloads_of(&history, "", &mut found);
    assert!(
        found.iter().filter(|p| !p.is_clear_by_design()).count() >= 5,
        "a delivery's history carries payloads: {found:?}"
    );
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} in clear in the history");
        for payload in &found {
            assert!(
                !contains(&payload.data, secret),
                "{secret:?} in clear in the payload at {}",
                payload.path
            );
        }
    }
    let mut key_ids = Vec::new();
    let mut in_clear = Vec::new();
    for payload in found.iter().filter(|p| !p.is_clear_by_design()) {
        if payload.meta("encoding").as_deref() != Some(delivery_payload_codec::ENCODING) {
            in_clear.push(format!("{} ({:?})", payload.path, payload.meta("encoding")));
            continue;
        }
        let key_id = payload
            .meta(delivery_payload_codec::KEY_ID_METADATA)
            .unwrap_or_else(|| panic!("the payload at {} names no key", payload.path));
        if !key_ids.contains(&key_id) {
            key_ids.push(key_id);
        }
    }
    assert!(in_clear.is_empty(), "payloads not encrypted: {in_clear:#?}");
    key_ids
}

/// `temporal workflow show` of `wf` as the server stores it (payloads as they are, no codec):
/// (succeeded, stdout, stderr).
fn stored_history(stack: &Stack, wf: &str) -> (bool, String, String) {
    stack.temporal.cli(&[
        "workflow",
        "show",
        "--workflow-id",
        wf,
        "--output",
        "json",
        "--no-json-shorthand-payloads",
    ])
}

/// The same through the codec endpoint, with `auth` as its `Authorization` header.
fn history_through_codec(
    stack: &Stack,
    wf: &str,
    endpoint: &str,
    auth: &str,
) -> (bool, String, String) {
    stack.temporal.cli(&[
        "workflow",
        "show",
        "--workflow-id",
        wf,
        "--output",
        "json",
        "--codec-endpoint",
        endpoint,
        "--codec-auth",
        auth,
    ])
}

/// The decoded form must hold what the raw form hides: proves the scan above can find it.
fn decoded_holds(text: &str, secrets: &[&str]) {
    // However the CLI prints payloads: in the text, or as bytes of a payload.
    let history: Value = serde_json::from_str(text).expect("history JSON");
    let mut found = Vec::new();
    payloads_of(&history, "", &mut found);
    for secret in secrets {
        assert!(
            text.contains(secret) || found.iter().any(|p| contains(&p.data, secret)),
            "{secret:?} not in the decoded history: {text}"
        );
    }
}

#[tokio::test]
async fn a_delivery_history_holds_no_customer_data_in_clear_and_decodes_through_the_codec() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let customer = api.token("cust-sealed", &[Role::Customer]);
    let (id, _) = api.pay("cust-sealed").await;
    api.wait_state(&ops, &id, "DELIVERED").await;
    let events = format!("/api/v1/delivery-orders/{id}/events");
    let disputed = api
        .post(
            &events,
            &customer,
            &json!({"type": "DISPUTED", "data": {"reason": "NOT_RECEIVED", "detail": NOTES[0]}}),
        )
        .await;
    assert_eq!(disputed.status, 200, "{}", disputed.text);
    let resolved = api
        .post(
            &events,
            &ops,
            &json!({"type": "OPERATOR_CONFIRM_DELIVERED", "data": {"note": NOTES[1]}}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    let order = handle(&stack.client, &id);
    let result = order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .expect("the order completes");
    assert_eq!(result.order.state, State::DeliveryConfirmed);

    let secrets: Vec<&str> = IN_PAYMENT
        .iter()
        .chain(&FROM_PARTNER)
        .chain(&NOTES)
        .copied()
        .collect();
    let wf = workflow_id(&id);

    // As the server stores it, read by the CLI without a codec.
    let (ok, raw, err) = stored_history(&stack, &wf);
    assert!(ok, "{err}");
    let key_ids = assert_nothing_in_clear(&raw, &secrets);
    assert_eq!(key_ids, ["test-a"], "every payload under the active key");

    // The same with the SDK's own export, by a client without the codec.
    let raw_client = stack.temporal.raw_client().await;
    let exported = raw_client
        .get_workflow_handle::<UntypedWorkflow>(wf.clone())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("history export");
    let exported = String::from_utf8(exported).unwrap();
    assert_nothing_in_clear(&exported, &secrets);

    // The CLI decodes through the gateway's codec endpoint with an operator's token.
    let endpoint = format!("{}/codec", api.url);
    let auth = format!("Bearer {ops}");
    let (ok, decoded, err) = history_through_codec(&stack, &wf, &endpoint, &auth);
    assert!(ok, "{err}");
    decoded_holds(&decoded, &secrets);
    // ... and not with a customer's token: the endpoint refuses, nothing is decoded.
    let customer_auth = format!("Bearer {customer}");
    let (_, refused, _) = history_through_codec(&stack, &wf, &endpoint, &customer_auth);
    assert!(!refused.contains(IN_PAYMENT[0]), "{refused}");

    // The recorded history replays with the codec.
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<DeliveryOrderWorkflow>()
            .expect("register")
            .data_converter(delivery_payload_codec::data_converter(test_keyring()))
            .build(),
    )
    .expect("replayer");
    let history = WorkflowHistory::from_json(exported.as_bytes()).unwrap();
    replayer
        .replay_workflow(history)
        .await
        .expect("the encrypted history replays with the codec");
}

/// Without a gateway the simulator signals each order's workflow itself, through its own
/// Temporal client: those signals carry the driver's name and phone, and are sealed by the
/// simulator's codec before they reach the server.
#[tokio::test]
async fn the_simulators_own_signals_reach_the_history_sealed() {
    let stack = Stack::start().await;
    let (id, order) = stack.new_order().await;
    let driver = delivered(&order)
        .await
        .order
        .partner
        .driver
        .expect("the driver, from the signal");
    assert_eq!(driver["name"], FROM_PARTNER[0], "{driver}");

    let (ok, raw, err) = stored_history(&stack, &workflow_id(&id));
    assert!(ok, "{err}");
    assert!(raw.contains("WORKFLOW_EXECUTION_SIGNALED"), "{raw}");
    let key_ids = assert_nothing_in_clear(&raw, &FROM_PARTNER);
    assert_eq!(key_ids, ["test-a"], "every payload under the active key");
}

#[tokio::test]
async fn orders_started_under_one_key_finish_after_the_worker_rotates_to_another() {
    let only_a = [(KEYS_VAR, TEST_KEY_A), (ACTIVE_VAR, "test-a")];
    let mut stack = Stack::start_with(
        StackOptions::quiet()
            .worker(only_a[0].0, only_a[0].1)
            .worker(only_a[1].0, only_a[1].1),
    )
    .await;
    let mut orders = Vec::new();
    for n in 0..2 {
        let (id, order) = stack.new_order().await;
        let picked = apply_event(
            &order,
            envelope(
                &format!("rot-pick-{n}"),
                EventType::PickedUp,
                json!({"partner_order_number": format!("PN-ROT-{n}"), "driver": {"name": "Sam Carter", "phone": "+44 7700 900123"}}),
                ActorKind::Partner,
            ),
        )
        .await
        .expect("picked up under key A");
        assert_eq!(picked.state, State::PickedUp);
        orders.push((id, order));
    }

    // Key B becomes the active one; A stays configured for what was written under it.
    let both = format!("{TEST_KEY_A},{TEST_KEY_B}");
    stack
        .worker
        .restart_with(&[(KEYS_VAR, &both), (ACTIVE_VAR, "test-b")])
        .await;
    for (n, (_, order)) in orders.iter().enumerate() {
        let delivered = apply_event(
            order,
            envelope(
                &format!("rot-deliver-{n}"),
                EventType::Delivered,
                json!({}),
                ActorKind::Partner,
            ),
        )
        .await
        .expect("delivered after the rotation");
        assert_eq!(delivered.state, State::Delivered);
        confirm(order, &format!("rot-confirm-{n}")).await;
        let result = order
            .get_result(WorkflowGetResultOptions::default())
            .await
            .expect("the order completes after the rotation");
        assert_eq!(result.order.state, State::DeliveryConfirmed);
    }

    let raw_client = stack.temporal.raw_client().await;
    for (id, _) in &orders {
        let exported = raw_client
            .get_workflow_handle::<UntypedWorkflow>(workflow_id(id))
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .expect("history export");
        let text = String::from_utf8(exported).unwrap();
        let mut key_ids = assert_nothing_in_clear(&text, &IN_PAYMENT[..4]);
        key_ids.sort();
        assert_eq!(
            key_ids,
            ["test-a", "test-b"],
            "written under A before the rotation and under B after"
        );
    }
}

/// A browser's CORS preflight for a codec decode from a page of `origin`.
async fn preflight(api: &GatewayProcess, origin: &str) -> Answer {
    let headers = [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type,x-namespace"),
    ];
    api.send(
        reqwest::Method::OPTIONS,
        "/codec/decode",
        None,
        None,
        &headers,
    )
    .await
}

/// A JSON payload of the codec protocol: `{"metadata":{"encoding":b64},"data":b64}`.
fn protocol_payload(text: &str) -> Value {
    json!({
        "metadata": {"encoding": STANDARD.encode("json/plain")},
        "data": STANDARD.encode(text),
    })
}

#[tokio::test]
async fn the_codec_endpoint_round_trips_for_operators_only_and_refuses_malformed_bodies() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    let admin = api.token("root", &[Role::Admin]);
    let plain = json!({"payloads": [protocol_payload(r#"{"line1":"12 St James's Square"}"#)]});
    let namespace = [("x-namespace", "default")];

    let encoded = api
        .send(
            reqwest::Method::POST,
            "/codec/encode",
            Some(&ops),
            Some(&plain),
            &namespace,
        )
        .await;
    assert_eq!(encoded.status, 200, "{}", encoded.text);
    let sealed = &encoded.json["payloads"][0];
    assert_eq!(
        sealed["metadata"]["encoding"],
        STANDARD.encode(delivery_payload_codec::ENCODING)
    );
    assert_eq!(
        sealed["metadata"][delivery_payload_codec::KEY_ID_METADATA],
        STANDARD.encode("test-a")
    );
    assert!(!encoded.text.contains("St James"));
    let decoded = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            Some(&admin),
            Some(&encoded.json),
            &namespace,
        )
        .await;
    assert_eq!(decoded.status, 200, "{}", decoded.text);
    assert_eq!(decoded.json, plain);
    // What the worker wrote decodes the same way: the codec in the processes and the endpoint
    // are one.
    let (id, order) = stack.new_order().await;
    let exported = stack
        .temporal
        .raw_client()
        .await
        .get_workflow_handle::<UntypedWorkflow>(workflow_id(&id))
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .unwrap();
    drop(order);
    let history: Value = serde_json::from_slice(&exported).unwrap();
    let mut found = Vec::new();
    payloads_of(&history, "", &mut found);
    let input = found
        .iter()
        .find(|p| {
            p.path
                .contains("WorkflowExecutionStartedEventAttributes.input")
        })
        .expect("the start input");
    let request = json!({"payloads": [{
        "metadata": input.metadata.iter().map(|(k, v)| (k.clone(), Value::from(STANDARD.encode(v)))).collect::<serde_json::Map<_, _>>(),
        "data": STANDARD.encode(&input.data),
    }]});
    let from_history = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            Some(&ops),
            Some(&request),
            &[],
        )
        .await;
    assert_eq!(from_history.status, 200, "{}", from_history.text);
    let data = STANDARD
        .decode(from_history.json["payloads"][0]["data"].as_str().unwrap())
        .unwrap();
    assert!(contains(&data, "St James"), "{}", from_history.text);

    // Operators only.
    let none = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            None,
            Some(&encoded.json),
            &[],
        )
        .await;
    none.problem(401);
    let forged = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            Some("not-a-token"),
            Some(&encoded.json),
            &[],
        )
        .await;
    forged.problem(401);
    for roles in [
        vec![Role::Customer],
        vec![Role::Partner],
        vec![Role::PaymentService],
        vec![Role::OrderManagement],
    ] {
        let token = api.token("someone", &roles);
        for path in ["/codec/decode", "/codec/encode"] {
            let answer = api
                .send(
                    reqwest::Method::POST,
                    path,
                    Some(&token),
                    Some(&encoded.json),
                    &[],
                )
                .await;
            assert!(!answer.text.contains("St James"));
            answer.problem(403);
        }
    }

    // Malformed bodies, another namespace and altered payloads: problem+json, never a 500.
    for body in [
        &b"not json"[..],
        b"[]",
        br#"{"payloads":[{"data":"%%%"}]}"#,
        br#"{"payloads":[{"metadata":{"encoding":7}}]}"#,
    ] {
        let answer = api
            .post_raw(
                "/codec/decode",
                Some(&ops),
                "application/json",
                body.to_vec(),
            )
            .await;
        assert_eq!(
            answer.content_type(),
            "application/problem+json",
            "{}",
            answer.text
        );
        answer.problem(400);
    }
    let elsewhere = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            Some(&ops),
            Some(&encoded.json),
            &[("x-namespace", "payments")],
        )
        .await;
    elsewhere.problem(400);
    let mut altered = encoded.json.clone();
    let mut bytes = STANDARD
        .decode(altered["payloads"][0]["data"].as_str().unwrap())
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    altered["payloads"][0]["data"] = STANDARD.encode(&bytes).into();
    decode_refused(api, &ops, &altered, "failed authentication").await;
    let mut unknown = encoded.json.clone();
    unknown["payloads"][0]["metadata"][delivery_payload_codec::KEY_ID_METADATA] =
        STANDARD.encode("retired-2024").into();
    decode_refused(api, &ops, &unknown, "\"retired-2024\"").await;

    // The Temporal Web UI's origin may call it from a browser (with credentials); others not.
    let allowed = preflight(api, "http://localhost:8233").await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "http://localhost:8233"
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    let stranger = preflight(api, "http://evil.example").await;
    assert_eq!(stranger.status, 403);
    assert!(
        stranger
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );

    // A browser session: the cookie POST /codec/session sets stands for the bearer token. The
    // service's own pages ask for it from their origin, which the codec's CORS list (the
    // Temporal Web UI's) does not name; no other origin may (no preflight is answered).
    let own_origin = api.url.trim_end_matches('/').to_owned();
    let session = api
        .send(
            reqwest::Method::POST,
            "/codec/session",
            Some(&ops),
            None,
            &[("origin", &own_origin)],
        )
        .await;
    assert_eq!(session.status, 204, "{}", session.text);
    for origin in ["http://localhost:8233", "http://evil.example"] {
        let preflight = api
            .send(
                reqwest::Method::OPTIONS,
                "/codec/session",
                None,
                None,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "authorization"),
                ],
            )
            .await;
        assert!(
            preflight
                .headers
                .get("access-control-allow-origin")
                .is_none(),
            "{origin} may not set the codec cookie: {:?}",
            preflight.headers
        );
    }
    let cookie = session.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/codec"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let by_cookie = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            None,
            Some(&encoded.json),
            &[("cookie", &pair), ("origin", "http://localhost:8233")],
        )
        .await;
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.text);
    assert_eq!(by_cookie.json, plain);
    assert_eq!(
        by_cookie.headers["access-control-allow-origin"],
        "http://localhost:8233"
    );
    let customer = api.token("cust-7", &[Role::Customer]);
    api.send(
        reqwest::Method::POST,
        "/codec/session",
        Some(&customer),
        None,
        &[],
    )
    .await
    .problem(403);
}

/// `/codec/decode` refuses `body` with a 422 whose detail says `why`.
async fn decode_refused(api: &GatewayProcess, token: &str, body: &Value, why: &str) {
    let answer = api
        .send(
            reqwest::Method::POST,
            "/codec/decode",
            Some(token),
            Some(body),
            &[],
        )
        .await;
    assert!(
        answer.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains(why),
        "{}",
        answer.text
    );
}

/// Every `failure` of an exported history: (where, its message, whether it carries
/// `encoded_attributes`).
fn failures_of(value: &Value) -> Vec<(String, String, bool)> {
    let mut found = Vec::new();
    walk_objects(value, "", &mut |map, path| {
        if let Some(message) = map.get("message").and_then(Value::as_str)
            && (map.contains_key("failureInfo")
                || map.contains_key("applicationFailureInfo")
                || map.contains_key("encodedAttributes"))
        {
            found.push((
                path.to_owned(),
                message.to_owned(),
                map.contains_key("encodedAttributes"),
            ));
        }
        true
    });
    found
}

/// A failure's message can quote what it failed on (a partner's answer, an input), so the
/// failure converter moves messages and stack traces into the encrypted `encoded_attributes`:
/// the stored history shows "Encoded failure" only, the codec endpoint reads the message back,
/// and the workflow and the gateway still read refusals in full.
#[tokio::test]
async fn failure_messages_are_stored_encrypted_and_read_back_in_clear() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    let api = stack.api();
    let ops = api.token("olga", &[Role::Operator]);
    // The partner's first two answers fail: the booking activity retries, and its last
    // failure is stored with the attempt that succeeded.
    stack.sim.answer_next_with(2, 503).await;
    let (id, _) = api.pay("cust-sealed-failure").await;
    api.wait_state(&ops, &id, "DELIVERED").await;

    let wf = workflow_id(&id);
    let (ok, raw, err) = stored_history(&stack, &wf);
    assert!(ok, "{err}");
    let history: Value = serde_json::from_str(&raw).expect("history JSON");
    let failures = failures_of(&history);
    assert!(
        !failures.is_empty(),
        "the retried booking left its failure in the history: {raw}"
    );
    for (path, message, encoded) in &failures {
        assert!(
            *encoded && message == "Encoded failure",
            "a failure message in clear at {path}: {message:?}"
        );
    }
    assert!(!raw.contains("partner answered"), "{raw}");
    assert_nothing_in_clear(&raw, &IN_PAYMENT);

    // Operators read it through the codec endpoint.
    let endpoint = format!("{}/codec", api.url);
    let auth = format!("Bearer {ops}");
    let (ok, decoded, err) = history_through_codec(&stack, &wf, &endpoint, &auth);
    assert!(ok, "{err}");
    decoded_holds(&decoded, &["partner answered 503"]);

    // A refusal's words still reach the caller: the gateway reads the encrypted message back.
    let refused = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &ops,
            &json!({"type": "CANCEL", "data": {"reason": "too late"}}),
        )
        .await;
    let problem = refused.problem(409);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("DELIVERED") && !detail.contains("Encoded failure"),
        "{}",
        refused.text
    );
}
