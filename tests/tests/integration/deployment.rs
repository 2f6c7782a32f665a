//! How the worker behaves as deployed: the graph version its deployment declares
//! (`DELIVERY_GRAPH_VERSION`, from k8s/ and the CloudFormation graph stack) must be the one it was
//! built with.

use std::process::Command;

use delivery_tests::processes::worker_binary;
use delivery_tests::*;
use delivery_worker::graph_version::compiled_graph_version;

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
