//! Prometheus metrics of the projection and the relay, registered into the worker's registry.

use prometheus::{HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Prometheus metrics of the read-model projection.
#[derive(Clone)]
pub struct ProjectionMetrics {
    /// From an event's `occurred_at` in the workflow to its commit in the read model.
    pub lag: prometheus::Histogram,
    /// Projection attempts that failed (and will be retried).
    pub failures: prometheus::IntCounter,
    /// Transitions committed to the read model, by event type, new state and failure reason
    /// (deadline misses are `failure_reason` `PICKUP_TIMEOUT` / `DELIVERY_TIMEOUT`).
    pub transitions: IntCounterVec,
    /// Orders whose projection failed with an error retrying cannot fix (counted once per
    /// order and failure episode; the order is listed in `/api/state` until it projects).
    pub permanent_failures: prometheus::IntCounter,
    /// Events applied although they did not look right, by kind (`event_id_collision`,
    /// `seq_content_mismatch`).
    pub anomalies: IntCounterVec,
}

impl ProjectionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.permanent_failures.clone()))?;
        registry.register(Box::new(metrics.anomalies.clone()))?;
        // Known kinds start at 0 so an alert can tell "none yet" from "not scraped".
        for kind in crate::audit::ANOMALY_KINDS {
            metrics.anomalies.with_label_values(&[kind]);
        }
        registry.register(Box::new(metrics.transitions.clone()))?;
        Ok(metrics)
    }

    /// Metrics that are counted but exported nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            lag: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "read_model_projection_lag_seconds",
                    "Time from an applied event to its commit in the read model",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )
            .expect("valid metric"),
            failures: prometheus::IntCounter::new(
                "read_model_projection_failures_total",
                "Read-model projection attempts that failed and are retried",
            )
            .expect("valid metric"),
            permanent_failures: prometheus::IntCounter::new(
                "read_model_projection_permanent_failures_total",
                "Orders whose read-model projection fails with an error retrying cannot fix",
            )
            .expect("valid metric"),
            anomalies: IntCounterVec::new(
                Opts::new(
                    "read_model_projection_anomalies_total",
                    "Events the projection applied as the workflow says although they collided with the read model",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            transitions: IntCounterVec::new(
                Opts::new(
                    "transitions_total",
                    "Transitions committed to the read model by event type, new state and failure reason",
                ),
                &["type", "to_state", "failure_reason"],
            )
            .expect("valid metric"),
        }
    }
}

/// 1 while this worker's outbox relay holds the lease and publishes to Redis (exactly one worker
/// of a deployment shows 1 once the lease is taken), 0 while it stands by.
pub fn register_relay_leader(registry: &Registry) -> prometheus::Result<IntGauge> {
    let gauge = IntGauge::new(
        "outbox_relay_leader",
        "1 while this worker's outbox relay holds the lease and publishes to Redis",
    )?;
    registry.register(Box::new(gauge.clone()))?;
    Ok(gauge)
}
