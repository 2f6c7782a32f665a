//! How the processes behave as deployed: the graph version a worker's deployment declares
//! (`DELIVERY_GRAPH_VERSION`, from k8s/ and the CloudFormation graph stack) must be the one it was
//! built with, and k8s/ must say so; the prod worker colours' build ids; the gateway's drain on
//! SIGTERM and the grace period k8s gives it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use delivery_api::SHUTDOWN_DRAIN;
use delivery_api::auth::Role;
use delivery_tests::processes::worker_binary;
use delivery_tests::*;
use delivery_worker::graph_version::compiled_graph_version;
use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_worker_refuses_to_start_with_another_graph_version() {
    let other = (compiled_graph_version() + 1).to_string();
    // No Temporal at this address: the worker must stop before it ever connects.
    let output = Command::new(worker_binary())
        .envs(payload_key_env())
        .env("DELIVERY_GRAPH_VERSION", &other)
        .env(
            "TEMPORAL_ADDRESS",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("WORKER_METRICS_PORT", "0")
        .env("LOG_FORMAT", "text")
        .output()
        .expect("running delivery-worker");
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the worker started anyway: {log}");
    assert!(
        log.contains("DELIVERY_GRAPH_VERSION is") && log.contains(&other),
        "the worker stopped for another reason: {log}"
    );
}

#[tokio::test]
async fn a_worker_deployed_with_its_own_graph_version_starts() {
    let temporal = temporal_server().await;
    let version = compiled_graph_version().to_string();
    let sim = SimProcess::start(temporal, &[]).await;
    // `start` returns once /healthz answers, i.e. after the version check let it through.
    let worker = WorkerProcess::start(
        temporal,
        &format!("test-{}", uuid::Uuid::new_v4()),
        &sim.url,
        &[("DELIVERY_GRAPH_VERSION", &version)],
    )
    .await;
    let metrics = reqwest::get(&worker.metrics_url).await.expect("metrics");
    assert!(
        metrics.status().is_success(),
        "the worker serves its metrics"
    );
}

/// Every YAML file under `dir`, recursively.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every document of a YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// The values `value` gives the setting `name`: as a ConfigMap key (`NAME: value`), as a
/// container's `env` entry (`{name: NAME, value: ...}`), also inside kustomize patches (YAML in
/// a string).
fn settings(value: &Value, name: &str, found: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            if map.get("name").and_then(Value::as_str) == Some(name)
                && let Some(v) = map.get("value")
            {
                found.push(scalar(v));
            }
            for (key, v) in map {
                match key.as_str() {
                    Some(key) if key == name => found.push(scalar(v)),
                    Some("patch") => {
                        let patch: Value = serde_yaml::from_str(v.as_str().unwrap_or_default())
                            .expect("a kustomize patch is YAML");
                        settings(&patch, name, found);
                    }
                    _ => settings(v, name, found),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| settings(v, name, found)),
        _ => {}
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{other:?} is not a scalar setting"),
    }
}

/// Each place k8s/ declares `name`, as (file, value).
fn k8s_settings(name: &str) -> Vec<(String, String)> {
    let root = workspace_root();
    let mut all = Vec::new();
    for path in yaml_files(&root.join("k8s")) {
        for document in yaml_documents(&path) {
            let mut found = Vec::new();
            settings(&document, name, &mut found);
            let file = path.strip_prefix(&root).unwrap().display().to_string();
            all.extend(found.into_iter().map(|v| (file.clone(), v)));
        }
    }
    all
}

/// Whether a setting's name says it holds a credential (or a URL that carries one).
fn is_credential(name: &str) -> bool {
    [
        "SECRET",
        "PASSWORD",
        "TOKEN",
        "_KEY",
        "KEYS",
        "DATABASE_URL",
        "REDIS_URL",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Every credential-like setting in `value` given a literal: a container `env` entry with
/// `value:` instead of `valueFrom:`, or a ConfigMap / kustomize literal of that name (also
/// inside kustomize patches).
fn literal_credentials(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            if let Some(name) = map.get("name").and_then(Value::as_str)
                && map.contains_key("value")
                && is_credential(name)
            {
                found.push(format!("env {name} with a literal value"));
            }
            for (key, v) in map {
                match key.as_str() {
                    Some("patch") => {
                        let patch: Value = serde_yaml::from_str(v.as_str().unwrap_or_default())
                            .expect("a kustomize patch is YAML");
                        literal_credentials(&patch, found);
                    }
                    Some("data" | "stringData") => {
                        for key in v.as_mapping().into_iter().flatten().map(|(k, _)| k) {
                            let key = key.as_str().unwrap_or_default();
                            if is_credential(key) {
                                found.push(format!("{key} as a literal in data"));
                            }
                        }
                    }
                    Some("literals") => {
                        for literal in v.as_sequence().into_iter().flatten() {
                            let literal = literal.as_str().unwrap_or_default();
                            let key = literal.split('=').next().unwrap_or_default();
                            if is_credential(key) {
                                found.push(format!("{key} as a kustomize literal"));
                            }
                        }
                    }
                    _ => literal_credentials(v, found),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| literal_credentials(v, found)),
        _ => {}
    }
}

/// k8s/ refers to secrets and never holds one: no Secret manifest or secret generator, and every
/// credential a container reads comes from a `secretKeyRef` (the Secrets are made outside the
/// repository, docs/runbooks/rotate-secrets.md).
#[test]
fn k8s_refers_to_secrets_and_holds_no_secret_value() {
    let root = workspace_root();
    let mut findings = Vec::new();
    let mut references = 0;
    for path in yaml_files(&root.join("k8s")) {
        let file = path.strip_prefix(&root).unwrap().display().to_string();
        for document in yaml_documents(&path) {
            if document.get("kind").and_then(Value::as_str) == Some("Secret") {
                findings.push(format!("{file}: a Secret manifest"));
            }
            if document.get("secretGenerator").is_some() {
                findings.push(format!("{file}: a kustomize secretGenerator"));
            }
            let mut found = Vec::new();
            literal_credentials(&document, &mut found);
            findings.extend(found.into_iter().map(|f| format!("{file}: {f}")));
            let text = serde_yaml::to_string(&document).unwrap();
            references += text.matches("secretKeyRef").count();
        }
    }
    assert!(findings.is_empty(), "secret values in k8s/: {findings:#?}");
    assert!(
        references >= 6,
        "the containers read their credentials from Secrets ({references} references)"
    );
}

/// The graph version k8s/ deploys the workers with is the one compiled into them: a worker whose
/// ConfigMap says otherwise refuses to start (the test above), so a stale ConfigMap would stop
/// every worker of a release.
#[test]
fn k8s_declares_the_compiled_graph_version() {
    let declared = k8s_settings("DELIVERY_GRAPH_VERSION");
    assert!(
        declared
            .iter()
            .any(|(file, _)| file == "k8s/base/configmap.yaml"),
        "the base ConfigMap declares DELIVERY_GRAPH_VERSION: {declared:?}"
    );
    let compiled = compiled_graph_version().to_string();
    for (file, version) in &declared {
        assert_eq!(
            version, &compiled,
            "{file}: DELIVERY_GRAPH_VERSION is {version}, the workers are built with graph version {compiled}"
        );
    }
}

/// One prod worker colour as its overlay declares it.
#[derive(Debug)]
struct Colour {
    name: &'static str,
    image_tag: String,
    build_id: String,
    replicas: u64,
}

fn colour(name: &'static str) -> Colour {
    let path = workspace_root().join(format!("k8s/overlays/prod/{name}/kustomization.yaml"));
    let kustomization = yaml_documents(&path).remove(0);
    let image_tag = kustomization["images"][0]["newTag"]
        .as_str()
        .expect("the colour's image tag")
        .to_owned();
    let patch: Value = serde_yaml::from_str(
        kustomization["patches"][0]["patch"]
            .as_str()
            .expect("the colour's patch"),
    )
    .unwrap();
    let replicas = patch["spec"]["replicas"].as_u64().expect("replicas");
    let mut build_ids = Vec::new();
    settings(&patch, "TEMPORAL_WORKER_BUILD_ID", &mut build_ids);
    assert_eq!(build_ids.len(), 1, "{name}: one build id: {build_ids:?}");
    Colour {
        name,
        image_tag,
        build_id: build_ids.remove(0),
        replicas,
    }
}

/// Each colour polls under the build id of the image it runs (docs/runbooks/deploy.md: build id
/// = image tag), and two colours that run at once are two versions: the same id on both would
/// make them one version, and a switch of the current version would move nothing.
#[test]
fn prod_worker_colours_are_versions_of_their_own_images() {
    let colours = [colour("blue"), colour("green")];
    for c in &colours {
        assert_eq!(
            c.build_id, c.image_tag,
            "{}: TEMPORAL_WORKER_BUILD_ID is not the image tag",
            c.name
        );
    }
    let running: Vec<&Colour> = colours.iter().filter(|c| c.replicas > 0).collect();
    assert!(!running.is_empty(), "one colour is live: {colours:?}");
    if let [a, b] = running.as_slice() {
        assert_ne!(
            a.build_id, b.build_id,
            "both colours run with the same build id: {colours:?}"
        );
    }
}

/// Kubernetes sends SIGTERM after the preStop hook and kills the container when the grace period
/// ends, counted from the start of the hook: the period must hold the hook's sleep and the
/// gateway's whole drain, or requests still draining are cut by SIGKILL.
#[test]
fn the_gateway_grace_period_covers_pre_stop_and_the_drain() {
    let root = workspace_root();
    let deployment = yaml_documents(&root.join("k8s/base/gateway-deployment.yaml")).remove(0);
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let container = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api")
        .expect("the api container");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("the preStop sleep");
    assert!(
        grace >= pre_stop + SHUTDOWN_DRAIN.as_secs(),
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} s + drain {} s",
        SHUTDOWN_DRAIN.as_secs()
    );
    // No overlay changes either, or this test would have to read it.
    for path in yaml_files(&root.join("k8s/overlays")) {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("terminationGracePeriodSeconds") && !text.contains("preStop"),
            "{} changes the gateway's termination: check it here",
            path.display()
        );
    }
}

/// The request head of a payment event of `len` body bytes.
fn payment_head(token: &str, len: usize) -> String {
    format!(
        "POST /api/v1/payment-events HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Reads until the end of an answer's head (or the connection's end); what was read.
async fn answer_head(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// SIGTERM (after the preStop hook, in Kubernetes): the gateway stops accepting connections at
/// once, lets a request in flight finish, and exits within its drain bound even though another
/// request never completes.
#[tokio::test]
async fn the_gateway_drains_in_flight_requests_on_sigterm_and_exits_within_its_bound() {
    let mut stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    let gateway = stack.gateway.as_mut().expect("a gateway");
    let port = gateway.port;
    let token = gateway.token("payments", &[Role::PaymentService]);

    // In flight: its head and half its body are in when the signal comes.
    let body = serde_json::to_vec(&payment_event(&new_payment_id(), "drain-customer")).unwrap();
    let half = body.len() / 2;
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    in_flight
        .write_all(payment_head(&token, body.len()).as_bytes())
        .await
        .unwrap();
    in_flight.write_all(&body[..half]).await.unwrap();
    // Never finished: a body that stops after one byte (its read deadline, 30 s, is past the
    // drain bound).
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stalled
        .write_all(payment_head(&token, body.len()).as_bytes())
        .await
        .unwrap();
    stalled.write_all(&body[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    gateway.terminate();
    let signalled = Instant::now();

    // New connections are refused while the process still drains.
    let refused = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if signalled.elapsed() > Duration::from_secs(3) => break false,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(
        refused,
        "a new connection was still accepted 3 s after SIGTERM"
    );
    assert!(
        gateway.wait_exit(Duration::ZERO).await.is_none(),
        "the gateway exited at once instead of draining"
    );

    // The request in flight finishes, and is answered.
    in_flight.write_all(&body[half..]).await.unwrap();
    let answer = tokio::time::timeout(SHUTDOWN_DRAIN, answer_head(&mut in_flight))
        .await
        .expect("the request in flight is answered within the drain");
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the request in flight was not served: {answer:?}"
    );

    // The stalled one holds the process only until the drain bound.
    let status = gateway
        .wait_exit(SHUTDOWN_DRAIN + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running {SHUTDOWN_DRAIN:?} + 5 s after SIGTERM"));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= SHUTDOWN_DRAIN - Duration::from_secs(1),
        "exited after {took:?}: the stalled request was not given the drain"
    );
    let cut = answer_head(&mut stalled).await;
    assert!(
        !cut.starts_with("HTTP/1.1 2"),
        "the stalled request cannot have been served: {cut:?}"
    );
}
