//! Prometheus metrics of partner calls, registered into the worker's registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct PartnerMetrics {
    /// Calls by operation and outcome (`ok`, `rejected`, `error`, `circuit_open`).
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// 1 while the circuit breaker refuses calls.
    pub circuit_open: IntGauge,
}

impl PartnerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.latency.clone()))?;
        registry.register(Box::new(metrics.circuit_open.clone()))?;
        Ok(metrics)
    }

    /// Metrics that are counted but exported nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            requests: IntCounterVec::new(
                Opts::new("partner_requests_total", "Delivery partner API calls"),
                &["operation", "outcome"],
            )
            .expect("valid metric"),
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "partner_request_seconds",
                    "Delivery partner API call latency",
                ),
                &["operation"],
            )
            .expect("valid metric"),
            circuit_open: IntGauge::new(
                "partner_circuit_open",
                "1 while the partner circuit breaker is open",
            )
            .expect("valid metric"),
        }
    }
}

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
}

impl ProjectionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            lag: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "read_model_projection_lag_seconds",
                    "Time from an applied event to its commit in the read model",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )?,
            failures: prometheus::IntCounter::new(
                "read_model_projection_failures_total",
                "Read-model projection attempts that failed and are retried",
            )?,
            transitions: IntCounterVec::new(
                Opts::new(
                    "transitions_total",
                    "Transitions committed to the read model by event type, new state and failure reason",
                ),
                &["type", "to_state", "failure_reason"],
            )?,
        };
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.transitions.clone()))?;
        Ok(metrics)
    }
}
