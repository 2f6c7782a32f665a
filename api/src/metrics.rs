//! The gateway's Prometheus metrics: requests per route and status, their latency, events per
//! type and outcome, partner webhooks by outcome, read-your-writes waits, and what is measured
//! when scraped: the read model's publishing backlog, the operator queue, open WebSockets, event
//! batches holding orders.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use delivery_read_model::ReadModel;
use futures::TryStreamExt;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use temporalio_client::{Client, WorkflowListOptions};

use crate::problem::ApiError;

/// Bound on the Temporal visibility query of a scrape: a slow Temporal must not hold `/metrics`.
const BATCH_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on all the gauges a scrape measures from PostgreSQL and Temporal together: past it the
/// scrape answers with the values measured before, well inside Prometheus' 10 s scrape timeout,
/// so an unreachable or hung database never costs the gateway its own series (the request
/// counters behind the 5xx alert among them) when they matter most.
const MEASURE_BUDGET: Duration = Duration::from_millis(2_500);
/// Those gauges are measured at most this often, however often `/metrics` is asked (it needs no
/// token): more scrapes cannot turn into more queries.
const MEASURE_EVERY: Duration = Duration::from_secs(5);
/// Most running batches a scrape lists (a batch runs for seconds; more would be an incident).
const BATCH_LIST_LIMIT: usize = 1_000;

#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    /// When the gauges from PostgreSQL and Temporal were last measured.
    measured_at: Arc<Mutex<Option<Instant>>>,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub webhooks: IntCounterVec,
    pub min_version_wait: HistogramVec,
    /// Looks at the read model by reads waiting for a `min_version`, by why they looked.
    pub min_version_lookups: IntCounterVec,
    live_updates_connected: IntGauge,
    outbox_pending: IntGauge,
    outbox_oldest_ms: IntGauge,
    /// Events sent to delivery orders (commands and partner webhooks) by type and outcome.
    events: IntCounterVec,
    event_latency: HistogramVec,
    operator_queue_size: IntGauge,
    orders_at_risk: IntGaugeVec,
    operator_queue_oldest_seconds: Gauge,
    websocket_connections: IntGauge,
    event_batches_open: IntGauge,
    event_batches_oldest_seconds: Gauge,
    /// Answers with a 5xx status, by problem code.
    pub server_errors: IntCounterVec,
    /// 1 when the last readiness check reached the dependency, 0 when not.
    pub dependency_up: IntGaugeVec,
    /// Open HTTP connections, and those a read deadline cut.
    pub connections: crate::connection_limit::ConnectionMetrics,
}

impl ApiMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("delivery_api".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["method", "route"],
        )?;
        let webhooks = IntCounterVec::new(
            Opts::new("partner_webhooks_total", "Partner webhook calls by outcome"),
            &["partner", "outcome"],
        )?;
        let min_version_wait = HistogramVec::new(
            HistogramOpts::new(
                "read_your_writes_wait_seconds",
                "How long reads with min_version waited for the projection",
            )
            .buckets(vec![
                0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["outcome"],
        )?;
        let min_version_lookups = IntCounterVec::new(
            Opts::new(
                "read_your_writes_lookups_total",
                "Looks at the read model by reads with min_version: start (once per read), announced (woken by the live update of the version), resync (live updates may have been missed), fallback (every second while live updates are disconnected)",
            ),
            &["reason"],
        )?;
        for reason in LOOKUP_REASONS {
            min_version_lookups.with_label_values(&[reason]);
        }
        let live_updates_connected = IntGauge::new(
            "live_updates_connected",
            "1 while the gateway's subscription to the relay's live updates stands (sockets and min_version waits are woken by it), else 0",
        )?;
        let outbox_pending = IntGauge::new(
            "read_model_outbox_pending",
            "Read-model changes committed in PostgreSQL and not yet published to Redis",
        )?;
        let outbox_oldest_ms = IntGauge::new(
            "read_model_outbox_lag_milliseconds",
            "Age of the oldest change not yet published to Redis (0 when none waits)",
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "events_total",
                "Events sent to delivery orders by type and outcome (applied, duplicate, or the problem code)",
            ),
            &["type", "outcome"],
        )?;
        let event_latency = HistogramVec::new(
            HistogramOpts::new(
                "event_duration_seconds",
                "Time to apply an event through its workflow's update, by type",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["type"],
        )?;
        let operator_queue_size = IntGauge::new(
            "operator_queue_size",
            "Delivery orders waiting for an operator (PENDING_BY_OPERATOR in the read model)",
        )?;
        let operator_queue_oldest_seconds = Gauge::new(
            "operator_queue_oldest_seconds",
            "How long the longest-waiting delivery order has waited for an operator (0 when none)",
        )?;
        let orders_at_risk = IntGaugeVec::new(
            Opts::new(
                "orders_at_risk",
                "Delivery orders whose deadline falls within the next 2 hours (or passed unfired), by timer (pickup_deadline, delivery_deadline, auto_confirm)",
            ),
            &["timer"],
        )?;
        let websocket_connections = IntGauge::new(
            "websocket_connections",
            "WebSocket clients connected to this gateway now",
        )?;
        let event_batches_open = IntGauge::new(
            "event_batches_open",
            "Event batches running now: each holds its delivery orders from its prepare to its commit or abort",
        )?;
        let event_batches_oldest_seconds = Gauge::new(
            "event_batches_oldest_seconds",
            "Age of the oldest running event batch (0 when none runs)",
        )?;
        let server_errors = IntCounterVec::new(
            Opts::new(
                "server_errors_total",
                "Answers with a 5xx status, by problem code (dependency-unavailable, internal-error, ...)",
            ),
            &["kind"],
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "dependency_up",
                "1 when the last /readyz check reached the dependency (temporal, postgres, redis), else 0",
            ),
            &["dependency"],
        )?;
        registry.register(Box::new(dependency_up.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(event_latency.clone()))?;
        registry.register(Box::new(operator_queue_size.clone()))?;
        registry.register(Box::new(operator_queue_oldest_seconds.clone()))?;
        // Every timer at 0 from the start, so the alert sees a series before any order is late.
        for timer in AT_RISK_TIMERS {
            orders_at_risk.with_label_values(&[timer]);
        }
        registry.register(Box::new(orders_at_risk.clone()))?;
        registry.register(Box::new(websocket_connections.clone()))?;
        registry.register(Box::new(event_batches_open.clone()))?;
        registry.register(Box::new(event_batches_oldest_seconds.clone()))?;
        // The kinds the gateway raises, at 0 from the start so rates and alerts see them.
        for kind in ["dependency-unavailable", "internal-error", "not-ready"] {
            server_errors.with_label_values(&[kind]);
        }
        registry.register(Box::new(server_errors.clone()))?;
        let connections = crate::connection_limit::ConnectionMetrics {
            open: IntGauge::new(
                "http_connections_open",
                "HTTP connections open at this gateway (at most HTTP_MAX_CONNECTIONS)",
            )?,
            deadline_cuts: IntCounterVec::new(
                Opts::new(
                    "http_read_deadline_closes_total",
                    "Connections closed because a request head or body was not read within HTTP_HEADER_TIMEOUT_SECS / HTTP_BODY_TIMEOUT_SECS",
                ),
                &["phase"],
            )?,
            refused_per_peer: IntCounter::new(
                "http_connections_refused_per_peer_total",
                "Connections closed on arrival because their peer address held HTTP_MAX_CONNECTIONS_PER_PEER already",
            )?,
        };
        for phase in ["header", "body"] {
            connections.deadline_cuts.with_label_values(&[phase]);
        }
        registry.register(Box::new(connections.open.clone()))?;
        registry.register(Box::new(connections.deadline_cuts.clone()))?;
        registry.register(Box::new(connections.refused_per_peer.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(min_version_wait.clone()))?;
        registry.register(Box::new(min_version_lookups.clone()))?;
        registry.register(Box::new(live_updates_connected.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(outbox_oldest_ms.clone()))?;
        Ok(Self {
            connections,
            registry,
            measured_at: Arc::default(),
            requests,
            latency,
            webhooks,
            min_version_wait,
            min_version_lookups,
            live_updates_connected,
            outbox_pending,
            outbox_oldest_ms,
            events,
            event_latency,
            operator_queue_size,
            operator_queue_oldest_seconds,
            orders_at_risk,
            websocket_connections,
            event_batches_open,
            event_batches_oldest_seconds,
            server_errors,
            dependency_up,
        })
    }

    /// Counts and times one event sent to a delivery order.
    pub fn observe_event(
        &self,
        event_type: &str,
        result: &Result<crate::model::EventApplied, ApiError>,
        elapsed: std::time::Duration,
    ) {
        let outcome = match result {
            Ok(applied) if applied.applied => "applied",
            Ok(_) => "duplicate",
            Err(problem) => problem.code(),
        };
        self.count_event(event_type, outcome);
        self.event_latency
            .with_label_values(&[event_type])
            .observe(elapsed.as_secs_f64());
    }

    /// One event sent to a delivery order, by type and outcome (a batch counts each of its
    /// events with the batch's outcome).
    pub fn count_event(&self, event_type: &str, outcome: &str) {
        self.events.with_label_values(&[event_type, outcome]).inc();
    }

    /// The text exposition, with the gauges measured now (those from PostgreSQL or Temporal are
    /// left as they were when it cannot be asked).
    pub async fn render(
        &self,
        read_model: &ReadModel,
        live: LiveState,
        temporal: &Client,
        task_queue: &str,
    ) -> String {
        self.websocket_connections
            .set(i64::try_from(live.sockets).unwrap_or(i64::MAX));
        self.live_updates_connected.set(i64::from(live.connected));
        if self.measure_due() {
            let measured = tokio::time::timeout(MEASURE_BUDGET, async {
                tokio::join!(
                    self.measure_operator_queue(read_model),
                    self.measure_batches(temporal, task_queue),
                    self.measure_at_risk(read_model),
                    self.measure_outbox(read_model),
                )
            })
            .await;
            if measured.is_err() {
                tracing::warn!(
                    budget_ms = MEASURE_BUDGET.as_millis() as u64,
                    "the read model or Temporal did not answer the scrape's queries in time; \
                     their gauges keep the values measured before"
                );
            }
        }
        let mut body = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut body) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(body).unwrap_or_default()
    }
}

impl ApiMetrics {
    /// Whether the gauges from PostgreSQL and Temporal are due for measuring (and if so, marks
    /// them measured now, so concurrent scrapes do not measure them again).
    fn measure_due(&self) -> bool {
        let mut measured_at = self.measured_at.lock().unwrap_or_else(|e| e.into_inner());
        let due = measured_at.is_none_or(|at| at.elapsed() >= MEASURE_EVERY);
        if due {
            *measured_at = Some(Instant::now());
        }
        due
    }

    async fn measure_outbox(&self, read_model: &ReadModel) {
        if let Ok((pending, oldest_ms)) = read_model.outbox_backlog().await {
            self.outbox_pending.set(pending);
            self.outbox_oldest_ms.set(oldest_ms.unwrap_or(0.0) as i64);
        }
    }
}

/// Why a read waiting for a `min_version` looked at the read model.
pub const LOOKUP_REASONS: [&str; 4] = ["start", "announced", "resync", "fallback"];

/// What a scrape reports of the live updates.
pub struct LiveState {
    /// WebSockets open now.
    pub sockets: usize,
    /// Whether the subscription to the relay's live updates stands.
    pub connected: bool,
}

/// The timers of the graph, as `orders_at_risk` labels them.
const AT_RISK_TIMERS: [&str; 3] = ["pickup_deadline", "delivery_deadline", "auto_confirm"];
/// The window of `orders_at_risk`: the operations dashboard's default.
const AT_RISK_WINDOW: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

impl ApiMetrics {
    /// Orders whose deadline falls within the next two hours, by timer (the same read as
    /// `GET /operator/at-risk?within=2h`).
    async fn measure_at_risk(&self, read_model: &ReadModel) {
        match read_model.at_risk_counts(AT_RISK_WINDOW).await {
            Ok(counts) => {
                for timer in AT_RISK_TIMERS {
                    let n = counts
                        .iter()
                        .find(|(t, _)| t == timer)
                        .map_or(0, |(_, n)| *n);
                    self.orders_at_risk.with_label_values(&[timer]).set(n);
                }
            }
            Err(error) => tracing::warn!(%error, "counting the orders at risk failed"),
        }
    }

    /// Size and oldest wait of the operator queue; an order waits since it entered
    /// PENDING_BY_OPERATOR (as `GET /operator/queue` orders it).
    async fn measure_operator_queue(&self, read_model: &ReadModel) {
        let queue = read_model.operator_queue_size().await;
        match queue {
            Ok((size, oldest)) => {
                self.operator_queue_size.set(size);
                self.operator_queue_oldest_seconds
                    .set(oldest.unwrap_or(0.0).max(0.0));
            }
            Err(error) => tracing::warn!(%error, "measuring the operator queue failed"),
        }
    }

    /// Running event batches of this task queue and the age of the oldest, from Temporal's
    /// visibility (the holds themselves live in each order's workflow).
    async fn measure_batches(&self, temporal: &Client, task_queue: &str) {
        let query = format!(
            "WorkflowType = 'EventBatchWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{}'",
            task_queue.replace('\'', "")
        );
        let listing = temporal
            .list_workflows(
                query,
                WorkflowListOptions::builder()
                    .limit(BATCH_LIST_LIMIT)
                    .build(),
            )
            .map_ok(|run| run.start_time())
            .try_collect::<Vec<_>>();
        match tokio::time::timeout(BATCH_QUERY_TIMEOUT, listing).await {
            Ok(Ok(starts)) => {
                self.event_batches_open
                    .set(i64::try_from(starts.len()).unwrap_or(i64::MAX));
                let now = SystemTime::now();
                let oldest = starts
                    .into_iter()
                    .flatten()
                    .filter_map(|start| now.duration_since(start).ok())
                    .max()
                    .unwrap_or_default();
                self.event_batches_oldest_seconds.set(oldest.as_secs_f64());
            }
            Ok(Err(error)) => tracing::warn!(%error, "measuring event batches failed"),
            Err(_) => tracing::warn!("measuring event batches: Temporal did not answer in time"),
        }
    }
}
