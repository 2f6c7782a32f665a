//! The ceiling: what the same Temporal server does for a workflow and an update that do nothing.
//! `delivery-bench noop-worker` is a worker process with one no-op workflow on a task queue of its
//! own (the Temporal SDK's defaults, no payload codec, its SDK metrics on `/metrics`); the bench
//! starts it beside the stack and drives it at the concurrency of our own write phases, so each
//! of our write figures can be read as a share of what Temporal alone gives on this machine.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use delivery_worker::metrics_server::MetricsServer;
use delivery_worker::sdk_metrics;
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowStartOptions,
};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::measure::{Outcome, Row};
use crate::run_concurrently;

pub(crate) use noop::NoopWorkflow;

mod noop {
    // The workflow macros generate public items for the workflow's definition.
    #![allow(unreachable_pub)]

    use temporalio_macros::{workflow, workflow_methods};
    use temporalio_sdk::{
        SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
    };

    /// Completes once it has accepted the number of updates its input names (0: at once).
    #[workflow]
    pub struct NoopWorkflow {
        expected: u32,
        accepted: u32,
    }

    #[workflow_methods]
    impl NoopWorkflow {
        #[init]
        pub fn new(_ctx: &WorkflowContextView, expected: u32) -> Self {
            Self {
                expected,
                accepted: 0,
            }
        }

        #[run]
        pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
            ctx.wait_condition(|s| s.accepted >= s.expected).await?;
            Ok(ctx.state(|s| s.accepted))
        }

        #[update(name = "noop")]
        pub fn noop(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: u32) -> u32 {
            self.accepted += 1;
            self.accepted
        }
    }
}

/// `delivery-bench noop-worker`: runs the no-op workflow's worker until killed.
/// `TEMPORAL_ADDRESS`, `BENCH_NOOP_QUEUE`, `BENCH_NOOP_METRICS_PORT`.
pub(crate) async fn run_worker() -> anyhow::Result<()> {
    let address = std::env::var("TEMPORAL_ADDRESS").context("TEMPORAL_ADDRESS")?;
    let address = address
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let queue = std::env::var("BENCH_NOOP_QUEUE").context("BENCH_NOOP_QUEUE")?;
    let port: u16 = std::env::var("BENCH_NOOP_METRICS_PORT")
        .context("BENCH_NOOP_METRICS_PORT")?
        .parse()
        .context("BENCH_NOOP_METRICS_PORT is a port")?;
    let (registry, meter) = sdk_metrics::sdk_registry()?;
    let options = RuntimeOptions::builder()
        .telemetry_options(sdk_metrics::telemetry_options(meter))
        .build()
        .map_err(anyhow::Error::msg)?;
    let runtime = Runtime::from_current_tokio(options).context("the Temporal runtime")?;
    let client = delivery_tests::temporal::raw_client(&address).await?;
    let options = WorkerOptions::new(queue)
        .register_workflow::<NoopWorkflow>()
        .context("registering NoopWorkflow")?
        .build();
    let mut worker = Worker::new(&runtime, client, options).context("the no-op worker")?;
    let metrics = MetricsServer::bind("127.0.0.1", port, vec![registry]).await?;
    tokio::spawn(metrics.run_until(std::future::pending()));
    worker.run().await.context("the no-op worker")
}

/// The no-op worker process, killed when dropped.
pub(crate) struct NoopWorker {
    child: Child,
    pub(crate) queue: String,
    pub(crate) metrics_url: String,
}

impl NoopWorker {
    pub(crate) async fn start(temporal_url: &str) -> anyhow::Result<Self> {
        let queue = format!("bench-noop-{}", uuid::Uuid::new_v4());
        let port = delivery_tests::free_port();
        let mut child = Command::new(std::env::current_exe()?)
            .arg("noop-worker")
            .env("TEMPORAL_ADDRESS", temporal_url)
            .env("BENCH_NOOP_QUEUE", &queue)
            .env("BENCH_NOOP_METRICS_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the no-op worker")?;
        let health = format!("http://127.0.0.1:{port}/healthz");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the no-op worker exited with {status}");
            }
            if http
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Self {
                    child,
                    queue,
                    metrics_url: format!("http://127.0.0.1:{port}/metrics"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the no-op worker did not answer {health} in 30 s")
    }
}

impl Drop for NoopWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn new_id() -> String {
    format!("bench-noop-{}", uuid::Uuid::new_v4())
}

fn start_options(queue: &str, id: &str) -> WorkflowStartOptions {
    WorkflowStartOptions::new(queue, id.to_owned()).build()
}

/// `count` no-op workflows started, `concurrency` at a time: the start call's latency (what our
/// creation waits for at the least).
pub(crate) async fn starts(client: &Client, queue: &str, count: usize, concurrency: usize) -> Row {
    let seeds: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    let samples = run_concurrently(&seeds, concurrency, |_| {
        let (client, queue) = (client.clone(), queue.to_owned());
        async move {
            let started = Instant::now();
            client
                .start_workflow(NoopWorkflow::run, 0, start_options(&queue, &new_id()))
                .await
                .map_err(|e| format!("start: {e}"))?;
            Outcome::Ok(started.elapsed())
        }
    })
    .await;
    Row::throughput("no-op workflow start (start call answered)", &samples)
}

/// `count` no-op workflows from the start call to their result (one workflow task each).
pub(crate) async fn completions(
    client: &Client,
    queue: &str,
    count: usize,
    concurrency: usize,
) -> Row {
    let seeds: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    let samples = run_concurrently(&seeds, concurrency, |_| {
        let (client, queue) = (client.clone(), queue.to_owned());
        async move {
            let started = Instant::now();
            let handle = client
                .start_workflow(NoopWorkflow::run, 0, start_options(&queue, &new_id()))
                .await
                .map_err(|e| format!("start: {e}"))?;
            handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .map_err(|e| format!("result: {e}"))?;
            Outcome::Ok(started.elapsed())
        }
    })
    .await;
    Row::throughput("no-op workflow start → completed", &samples)
}

/// `count` running no-op workflows, then one update each, `concurrency` in flight: the update's
/// round trip to completed (what our command's update needs at the least).
pub(crate) async fn updates(client: &Client, queue: &str, count: usize, concurrency: usize) -> Row {
    let mut ids = Vec::with_capacity(count);
    let mut failed_starts = Vec::new();
    for _ in 0..count {
        let id = new_id();
        match client
            .start_workflow(NoopWorkflow::run, 1, start_options(queue, &id))
            .await
        {
            Ok(_) => ids.push(id),
            Err(e) => failed_starts.push(format!("start before the update: {e}")),
        }
    }
    let mut samples = run_concurrently(&ids, concurrency, |id| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            client
                .get_workflow_handle::<NoopWorkflow>(id)
                .execute_update(
                    NoopWorkflow::noop,
                    1,
                    WorkflowExecuteUpdateOptions::default(),
                )
                .await
                .map_err(|e| format!("update: {e}"))?;
            Outcome::Ok(started.elapsed())
        }
    })
    .await;
    samples.add_failures(failed_starts);
    Row::throughput("no-op update round trip (to completed)", &samples)
}
