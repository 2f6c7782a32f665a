//! Where a phase's time went: the gateways', the workers' and the Temporal server's metrics
//! scraped before and after the phase, their change summarised per segment of a command's path
//! (gateway → Temporal RPC → workflow task → persistence → answer).

use std::fmt::Write as _;

use crate::scrape::{HistogramDelta, Series, Snapshot, counter_delta, gauge, histogram_delta};

/// The metrics endpoints of one run.
#[derive(Clone)]
pub(crate) struct Probe {
    http: reqwest::Client,
    pub(crate) gateways: Vec<String>,
    pub(crate) workers: Vec<String>,
    /// The Temporal server's (`--metrics-port`), when known.
    pub(crate) server: Option<String>,
}

/// The three sides at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scrape {
    gateway: Snapshot,
    worker: Snapshot,
    server: Snapshot,
}

impl Probe {
    pub(crate) fn new(gateways: Vec<String>, workers: Vec<String>, server: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            gateways,
            workers,
            server,
        }
    }

    async fn text(&self, url: &str) -> String {
        let answer = self
            .http
            .get(url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            Ok(r) => {
                eprintln!("scraping {url}: {}", r.status());
                String::new()
            }
            Err(error) => {
                eprintln!("scraping {url}: {error}");
                String::new()
            }
        }
    }

    pub(crate) async fn scrape(&self) -> Scrape {
        let mut scrape = Scrape::default();
        for url in &self.gateways {
            scrape.gateway.add(&self.text(url).await);
        }
        for url in &self.workers {
            scrape.worker.add(&self.text(url).await);
        }
        if let Some(url) = &self.server {
            scrape.server.add(&self.text(url).await);
        }
        scrape
    }
}

/// Long polls wait by design: their latency says nothing about a command's.
fn not_a_poll(s: &Series) -> bool {
    !s.label("operation").starts_with("Poll")
}

fn seconds(v: Option<f64>) -> String {
    v.map(|s| format!("{:.2} ms", s * 1000.0))
        .unwrap_or_else(|| "–".into())
}

fn line(out: &mut String, side: &str, what: &str, h: &HistogramDelta) {
    let _ = writeln!(
        out,
        "| {side} | {what} | {:.0} | {} | {} | {} |",
        h.count,
        seconds(h.mean()),
        seconds(h.quantile(0.5)),
        seconds(h.quantile(0.99)),
    );
}

/// Every group of a histogram's change, as lines; at most `limit`, by total time spent.
#[allow(clippy::too_many_arguments)]
fn lines(
    out: &mut String,
    side: &str,
    label: &str,
    before: &Snapshot,
    after: &Snapshot,
    family: &str,
    keep: &dyn Fn(&Series) -> bool,
    by: &[&str],
    limit: usize,
) {
    let mut groups: Vec<_> = histogram_delta(before, after, family, keep, by)
        .into_iter()
        .collect();
    groups.sort_by(|a, b| b.1.sum.total_cmp(&a.1.sum));
    for (group, h) in groups.into_iter().take(limit) {
        let what = match (label.is_empty(), group.is_empty()) {
            (_, true) => label.to_owned(),
            (true, false) => group,
            (false, false) => format!("{label} {group}"),
        };
        line(out, side, &what, &h);
    }
}

/// The breakdown of one phase: a table of segments (observations, mean, estimated p50 and p99
/// from the histogram buckets) and a line of worker counters.
pub(crate) fn report(phase: &str, before: &Scrape, after: &Scrape) -> String {
    let mut out = format!(
        "\n#### {phase}\n| side | segment | n | mean | ≈p50 | ≈p99 |\n|---|---|---|---|---|---|\n"
    );
    let all = |_: &Series| true;
    let (g0, g1) = (&before.gateway, &after.gateway);
    lines(
        &mut out,
        "gateway",
        "HTTP",
        g0,
        g1,
        "delivery_api_http_request_duration_seconds",
        &|s| s.label("method") != "GET",
        &["method", "route"],
        4,
    );
    lines(
        &mut out,
        "gateway",
        "Temporal update apply_event",
        g0,
        g1,
        "delivery_api_event_duration_seconds",
        &all,
        &["type"],
        4,
    );
    let (s0, s1) = (&before.server, &after.server);
    lines(
        &mut out,
        "Temporal frontend",
        "",
        s0,
        s1,
        "service_latency",
        &|s| s.label("service_name") == "frontend" && not_a_poll(s),
        &["operation"],
        4,
    );
    lines(
        &mut out,
        "Temporal history",
        "",
        s0,
        s1,
        "service_latency",
        &|s| s.label("service_name") == "history" && not_a_poll(s),
        &["operation"],
        5,
    );
    lines(
        &mut out,
        "Temporal persistence",
        "",
        s0,
        s1,
        "persistence_latency",
        &all,
        &["operation"],
        5,
    );
    let (w0, w1) = (&before.worker, &after.worker);
    lines(
        &mut out,
        "worker",
        "workflow task schedule-to-start",
        w0,
        w1,
        "temporal_workflow_task_schedule_to_start_latency_seconds",
        &all,
        &[],
        1,
    );
    lines(
        &mut out,
        "worker",
        "workflow task execution",
        w0,
        w1,
        "temporal_workflow_task_execution_latency_seconds",
        &all,
        &["workflow_type"],
        3,
    );
    lines(
        &mut out,
        "worker",
        "workflow task replay",
        w0,
        w1,
        "temporal_workflow_task_replay_latency_seconds",
        &all,
        &["workflow_type"],
        3,
    );
    lines(
        &mut out,
        "worker",
        "activity schedule-to-start",
        w0,
        w1,
        "temporal_activity_schedule_to_start_latency_seconds",
        &all,
        &[],
        1,
    );
    lines(
        &mut out,
        "worker",
        "activity execution",
        w0,
        w1,
        "temporal_activity_execution_latency_seconds",
        &all,
        &["activity_type"],
        3,
    );
    let count = |name: &str| counter_delta(w0, w1, name, &all);
    let slots = |kind: &str| {
        gauge(w1, "temporal_worker_task_slots_available", &|s| {
            s.label("worker_type") == kind
        })
        .map(|v| format!("{v:.0}"))
        .unwrap_or_else(|| "–".into())
    };
    let _ = writeln!(
        out,
        "\nworker counters: workflow tasks polled {:.0}, empty workflow polls {:.0}, sticky cache hits {:.0} / misses {:.0} (cached now {}), forced evictions {:.0}, activity tasks {:.0}; free slots after: workflow {}, activity {}",
        count("temporal_workflow_task_queue_poll_succeed_total"),
        count("temporal_workflow_task_queue_poll_empty_total"),
        count("temporal_sticky_cache_hit_total"),
        count("temporal_sticky_cache_miss_total"),
        gauge(w1, "temporal_sticky_cache_size", &all)
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "–".into()),
        count("temporal_sticky_cache_total_forced_eviction_total"),
        count("temporal_activity_task_received_total"),
        slots("WorkflowWorker"),
        slots("ActivityWorker"),
    );
    out
}
