//! Liveness, readiness and metrics.

use std::sync::Arc;
use std::time::Duration;

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Map, Value, json};

use crate::model::{Health, Readiness, UiConfig};
use crate::problem::ApiError;
use crate::routes::Tag;
use crate::state::AppState;

/// Bound on each readiness check, so a hung dependency shows as down instead of hanging the probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(PlainText<String>),
}

#[derive(Default)]
pub struct SystemApi;

#[OpenApi(tag = "Tag::System")]
impl SystemApi {
    /// Liveness: the process serves requests.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Settings of this deployment for the web UI (no token needed: nothing secret).
    #[oai(path = "/api/v1/ui-config", method = "get", operation_id = "ui_config")]
    async fn ui_config(&self, state: Data<&Arc<AppState>>) -> Json<UiConfig> {
        let config = &state.config;
        Json(UiConfig {
            workflow_url_template: config.temporal_web_ui.as_ref().map(|ui| {
                format!(
                    "{ui}/namespaces/{}/workflows/{}",
                    config.namespace,
                    delivery_workflows::workflow_id("{delivery_order_id}")
                )
            }),
            map_tile_url: config.map_tiles.as_ref().map(|t| t.url.clone()),
        })
    }

    /// Readiness: whether this gateway should receive traffic. Temporal, PostgreSQL and Redis are
    /// shared by every gateway, so one of them down is the same on each: pulling them all would
    /// turn a partial outage (Temporal down: reads still served; PostgreSQL down: orders read
    /// from the Redis cache, commands applied; Redis down: reads from PostgreSQL) into a total
    /// one, with connection errors where callers would get a problem with `Retry-After`. So a
    /// dependency down answers 200 `degraded`, naming it and what answers 503 meanwhile
    /// (`impaired`); only a gateway that reaches none of the three is not ready (503).
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> Result<Json<Readiness>, ApiError> {
        let (temporal, postgres, redis) = tokio::join!(
            check(async {
                let mut service = state.orders.client().connection().workflow_service();
                service
                    .get_system_info(temporalio_client::tonic::Request::new(Default::default()))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_owned())
            }),
            check(async {
                state
                    .read_model
                    .ping_postgres()
                    .await
                    .map_err(|e| e.to_string())
            }),
            check(async {
                state
                    .read_model
                    .ping_redis()
                    .await
                    .map_err(|e| e.to_string())
            }),
        );
        let mut checks = Map::new();
        checks.insert("temporal".into(), temporal);
        checks.insert("postgres".into(), postgres);
        checks.insert("redis".into(), redis);
        for (dependency, check) in &checks {
            let up = check["ok"] == Value::Bool(true);
            state
                .metrics
                .dependency_up
                .with_label_values(&[dependency.as_str()])
                .set(i64::from(up));
        }
        let down: Vec<&str> = checks
            .iter()
            .filter(|(_, check)| check["ok"] != Value::Bool(true))
            .map(|(dependency, _)| dependency.as_str())
            .collect();
        if down.len() == checks.len() {
            return Err(ApiError::not_ready(checks));
        }
        let impaired: Vec<String> = down
            .iter()
            .filter_map(|d| impaired_by(d))
            .map(String::from)
            .collect();
        Ok(Json(Readiness {
            status: if down.is_empty() { "ready" } else { "degraded" }.into(),
            impaired,
            checks: Any(checks),
        }))
    }

    /// Prometheus metrics: requests and latency per route, events per type, partner webhooks,
    /// read-your-writes waits, the read model's publishing backlog, the operator queue, open
    /// WebSockets (docs/metrics.md lists them all).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&Arc<AppState>>) -> MetricsResponse {
        MetricsResponse::Ok(PlainText(
            state
                .metrics
                .render(
                    &state.read_model,
                    crate::metrics::LiveState {
                        sockets: state.sockets.held(),
                        connected: state.live.is_connected(),
                    },
                    state.orders.client(),
                    &state.config.task_queue,
                )
                .await,
        ))
    }
}

/// What answers 503 (or serves less) while `dependency` is down.
fn impaired_by(dependency: &str) -> Option<&'static str> {
    Some(match dependency {
        "temporal" => {
            "commands, creation, batches and the compatible API's writes answer 503; reads are served"
        }
        "postgres" => {
            "lists, search, trails, charts and reads the Redis cache misses answer 503; commands are applied and cached orders read"
        }
        "redis" => "reads come from PostgreSQL; live updates and the cache wait for Redis",
        _ => return None,
    })
}

/// One dependency's state. The cause is logged; the probe shows it only in short.
async fn check(probe: impl Future<Output = Result<(), String>>) -> Value {
    let started = std::time::Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => json!({"ok": true, "latency_ms": started.elapsed().as_millis() as u64}),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            json!({"ok": false, "error": "not reachable"})
        }
        Err(_) => {
            json!({"ok": false, "error": format!("no answer within {} s", CHECK_TIMEOUT.as_secs())})
        }
    }
}
