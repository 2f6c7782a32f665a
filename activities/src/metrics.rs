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
