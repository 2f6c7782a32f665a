//! `make bench` in miniature: the load generator with tiny counts (`BENCH_SMOKE=1`) runs every
//! phase — the no-op ceiling, creation, commands, read-model lag, the compatible API, reads,
//! WebSockets, open workflows — against this run's Temporal server, and ends with no failed
//! request. No timing is judged: the figures are printed, not asserted.

use std::time::Duration;

use delivery_tests::processes::binary;
use delivery_tests::*;

#[tokio::test]
async fn every_bench_phase_completes_without_a_failure() {
    let temporal = temporal_server().await;
    let mut command = tokio::process::Command::new(binary("delivery-bench", "DELIVERY_BENCH_BIN"));
    command
        .env("BENCH_SMOKE", "1")
        .env("TEMPORAL_ADDRESS", temporal.url())
        .env("DATABASE_URL", database_url().await)
        .env(
            "DELIVERY_WORKER_BIN",
            binary("delivery-worker", "DELIVERY_WORKER_BIN"),
        )
        .env(
            "DELIVERY_API_BIN",
            binary("delivery-api", "DELIVERY_API_BIN"),
        )
        .env("PARTNER_SIM_BIN", binary("partner-sim", "PARTNER_SIM_BIN"))
        .kill_on_drop(true);
    match &temporal.metrics_url {
        Some(url) => command.env("TEMPORAL_METRICS_URL", url),
        None => command.env_remove("TEMPORAL_METRICS_URL"),
    };
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the smoke bench finishes within 5 minutes")
        .expect("running delivery-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the smoke bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for row in [
        "| no-op workflow start (start call answered) |",
        "| no-op workflow start → completed |",
        "| no-op update round trip (to completed) |",
        "| creation via payment events",
        "| event command round trip",
        "| event → read model lag",
        "| compat POST /deliveries/create",
        "| compat POST /event",
        "| compat GET /deliveries/{id}/status",
        "| GET delivery order (64 in flight) |",
        "| GET tracking (64 in flight) |",
        "| WebSocket push",
        "| open delivery workflows held",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    assert!(stdout.contains("no request failed"), "{stdout}");
    // The breakdown saw the worker's SDK metrics and, when it is known, the server's.
    assert!(
        stdout.contains("| worker | workflow task schedule-to-start |"),
        "{stdout}"
    );
    if temporal.metrics_url.is_some() {
        assert!(
            stdout.contains("| Temporal frontend | StartWorkflowExecution |"),
            "{stdout}"
        );
    }
}
