//! The gateway's Prometheus metrics: requests per route and status, their latency, partner
//! webhooks by outcome, read-your-writes waits, and the read model's publishing backlog
//! (measured from the outbox when scraped).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use sqlx::PgPool;

#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub webhooks: IntCounterVec,
    pub min_version_wait: HistogramVec,
    outbox_pending: IntGauge,
    outbox_oldest_ms: IntGauge,
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
        let outbox_pending = IntGauge::new(
            "read_model_outbox_pending",
            "Read-model changes committed in PostgreSQL and not yet published to Redis",
        )?;
        let outbox_oldest_ms = IntGauge::new(
            "read_model_outbox_lag_milliseconds",
            "Age of the oldest change not yet published to Redis (0 when none waits)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(min_version_wait.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(outbox_oldest_ms.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            webhooks,
            min_version_wait,
            outbox_pending,
            outbox_oldest_ms,
        })
    }

    /// The text exposition, with the outbox gauges measured now (left as they were when
    /// PostgreSQL cannot be asked).
    pub async fn render(&self, pool: &PgPool) -> String {
        let backlog: Result<(i64, Option<f64>), _> = sqlx::query_as(
            "SELECT count(*), (EXTRACT(EPOCH FROM now() - min(created_at)) * 1000)::float8
             FROM read_model_outbox WHERE published_at IS NULL",
        )
        .fetch_one(pool)
        .await;
        if let Ok((pending, oldest_ms)) = backlog {
            self.outbox_pending.set(pending);
            self.outbox_oldest_ms.set(oldest_ms.unwrap_or(0.0) as i64);
        }
        let mut body = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut body) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(body).unwrap_or_default()
    }
}

/// The route template of a path, so metrics do not get one series per id.
pub fn route_label(path: &str) -> String {
    if crate::web::is_ui_path(path) {
        return crate::web::ROUTE_LABEL.to_owned();
    }
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let templated = match previous {
            "delivery-orders" if segment != "events" => "{id}",
            "tracking" => "{id}",
            "deliveries" if segment != "create" => "{pk}",
            "orderings" => "{ordering_id}",
            "partner-webhooks" => "{partner_id}",
            _ => segment,
        };
        out.push(templated);
        previous = segment;
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn ids_become_placeholders() {
        assert_eq!(
            route_label("/api/v1/delivery-orders/0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e/events"),
            "/api/v1/delivery-orders/{id}/events"
        );
        assert_eq!(
            route_label("/api/v1/orderings/ord-1/delivery-orders"),
            "/api/v1/orderings/{ordering_id}/delivery-orders"
        );
        assert_eq!(
            route_label("/api/v1/partner-webhooks/sim"),
            "/api/v1/partner-webhooks/{partner_id}"
        );
        assert_eq!(
            route_label("/api/v1/delivery-orders"),
            "/api/v1/delivery-orders"
        );
    }
}
