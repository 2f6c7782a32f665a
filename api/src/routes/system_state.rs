//! `GET /api/state`: the whole system at a glance for dashboards — delivery orders by state,
//! today's confirmations and failures, the operator queue, drivers on the road, the latest
//! events, and the health of Temporal (with the task queue's pollers and backlog), PostgreSQL and
//! Redis. Computed at most once per 5 seconds: shared through Redis between gateways, and one
//! refresh at a time within a gateway, so a crowd of dashboards never stampedes the database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, TaskQueueType};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
use tokio::sync::Mutex;

use crate::auth::{BearerAuth, Role};
use crate::model::timestamp;
use crate::problem::ApiError;
use crate::routes::Tag;
use crate::state::AppState;

/// How long one computed state is served.
pub const STATE_TTL: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Totals {
    pub delivery_orders: i64,
    /// Created, picked up or delivered and not yet confirmed.
    pub active: i64,
    pub confirmed_today: i64,
    pub failed_today: i64,
    pub waiting_for_operator: i64,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DriverAssignment {
    pub driver: String,
    pub delivery_order_ids: Vec<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct LatestEvent {
    pub delivery_order_id: String,
    pub seq: u64,
    #[oai(rename = "type")]
    pub event_type: String,
    pub to_state: String,
    pub actor_kind: String,
    pub occurred_at: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SystemState {
    /// When this state was computed (it is served for up to 5 s).
    pub generated_at: String,
    /// Delivery orders per state (every state of the graph, zeros included).
    pub by_state: BTreeMap<String, i64>,
    pub totals: Totals,
    /// Drivers with a parcel on board, and which.
    pub active_drivers: Vec<DriverAssignment>,
    /// The 20 most recent events, newest first.
    pub latest_events: Vec<LatestEvent>,
    pub health: SystemHealth,
}

/// What the service runs on, each with `ok`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SystemHealth {
    /// Temporal, with the workers polling the task queue and its backlog.
    pub temporal: TemporalHealth,
    pub postgres: Reachable,
    pub redis: Reachable,
    /// The read-model projection: orders it cannot apply.
    pub projection: ProjectionHealth,
}

#[derive(Debug, Clone, Object)]
pub struct Reachable {
    /// It answered within 2 s.
    pub ok: bool,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TemporalHealth {
    /// Temporal answered for both task queues.
    pub ok: bool,
    pub task_queue: String,
    /// At least one worker polls for workflow tasks.
    pub workers_polling: bool,
    /// `workflow_tasks` and `activity_tasks`.
    pub queues: BTreeMap<String, QueueHealth>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QueueHealth {
    pub pollers: Option<u64>,
    /// Tasks waiting for a worker (absent when Temporal did not report it).
    pub backlog: Option<i64>,
    /// Why the rest is missing.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProjectionHealth {
    /// No order's projection is failing (false too when the read model did not answer).
    pub ok: bool,
    pub failing_orders: Option<i64>,
    /// The first orders whose projection fails with an error retrying cannot fix.
    pub failing: Option<Vec<FailingProjection>>,
    /// Anomalies the projection applied in the last day (see `read_model_anomalies`).
    pub anomalies_last_day: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct FailingProjection {
    pub delivery_order_id: String,
    pub version: i64,
    pub error: String,
    pub attempts: i64,
    pub since: String,
    pub last_failed_at: String,
}

/// The last computed state, and the lock that lets one request at a time compute it.
#[derive(Default)]
pub struct StateCache {
    last: std::sync::Mutex<Option<(Instant, Arc<SystemState>)>>,
    refresh: Mutex<()>,
}

impl StateCache {
    fn fresh(&self) -> Option<Arc<SystemState>> {
        let last = self.last.lock().expect("state cache lock");
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < STATE_TTL)
            .map(|(_, v)| Arc::clone(v))
    }

    fn store(&self, value: Arc<SystemState>) {
        *self.last.lock().expect("state cache lock") = Some((Instant::now(), value));
    }
}

/// `GET /api/state`, with the gateway's cache of it (one per app: the APIs are built once
/// where the app is assembled, see `app::openapi`).
#[derive(Default)]
pub struct StateApi {
    cache: StateCache,
}

#[OpenApi(tag = "Tag::System")]
impl StateApi {
    /// The system at a glance (operators, admins); cached for 5 s.
    #[oai(path = "/api/state", method = "get", operation_id = "system_state")]
    async fn system_state(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<SystemState>, ApiError> {
        auth.0.require(&[Role::Operator, Role::Admin])?;
        Ok(Json((*current(&self.cache, &state).await?).clone()))
    }
}

async fn current(cache: &StateCache, state: &AppState) -> Result<Arc<SystemState>, ApiError> {
    if let Some(value) = cache.fresh() {
        return Ok(value);
    }
    let _one_at_a_time = cache.refresh.lock().await;
    // Whoever held the lock before may have just refreshed it.
    if let Some(value) = cache.fresh() {
        return Ok(value);
    }
    // Another gateway's state; one this gateway cannot read (an older shape) is computed anew.
    let shared = state.read_model.shared_state().await.and_then(|text| {
        SystemState::parse_from_json(serde_json::from_str::<Value>(&text).ok()).ok()
    });
    if let Some(value) = shared {
        let value = Arc::new(value);
        cache.store(Arc::clone(&value));
        return Ok(value);
    }
    let value = Arc::new(
        compute(state)
            .await
            .map_err(|e| ApiError::unavailable("the read model is unavailable", &e))?,
    );
    state
        .read_model
        .share_state(&value.to_json_string(), STATE_TTL)
        .await;
    cache.store(Arc::clone(&value));
    Ok(value)
}

async fn compute(state: &AppState) -> Result<SystemState, sqlx::Error> {
    let overview = state.read_model.overview().await?;
    let graph = &*delivery_workflows::DELIVERY_ORDER_V1;
    let mut by_state: BTreeMap<String, i64> = delivery_workflows::State::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for (s, n) in &overview.by_state {
        by_state.insert(s.clone(), *n);
    }
    let count = |states: Vec<delivery_workflows::State>| -> i64 {
        states.iter().map(|s| by_state[s.as_str()]).sum()
    };
    let totals = Totals {
        delivery_orders: overview.by_state.values().sum(),
        active: count(graph.states_under_deadline()),
        confirmed_today: overview.confirmed_today,
        failed_today: overview.failed_today,
        waiting_for_operator: count(graph.states_awaiting_operator()),
    };
    Ok(SystemState {
        generated_at: timestamp(&Utc::now()),
        by_state,
        totals,
        active_drivers: overview
            .drivers
            .into_iter()
            .map(|(driver, delivery_order_ids)| DriverAssignment {
                driver,
                delivery_order_ids,
            })
            .collect(),
        latest_events: overview
            .latest
            .into_iter()
            .map(|e| LatestEvent {
                delivery_order_id: e.delivery_order_id,
                seq: e.seq,
                event_type: e.entry_type,
                to_state: e.to_state,
                actor_kind: e.actor_kind,
                occurred_at: timestamp(&e.occurred_at),
            })
            .collect(),
        health: health(state).await,
    })
}

/// Temporal with the workers on the task queue, PostgreSQL and Redis.
async fn health(state: &AppState) -> SystemHealth {
    let postgres = tokio::time::timeout(CHECK_TIMEOUT, state.read_model.ping_postgres()).await;
    let pong = tokio::time::timeout(CHECK_TIMEOUT, state.read_model.ping_redis()).await;
    SystemHealth {
        temporal: workers(state).await,
        postgres: Reachable {
            ok: matches!(postgres, Ok(Ok(_))),
        },
        redis: Reachable {
            ok: matches!(pong, Ok(Ok(_))),
        },
        projection: projection_health(state).await,
    }
}

/// Orders whose read-model projection fails with an error retrying cannot fix (their read model
/// stays behind until it is fixed), and the anomalies the projection applied in the last day.
async fn projection_health(state: &AppState) -> ProjectionHealth {
    match state.read_model.projection_health().await {
        Some(found) => ProjectionHealth {
            ok: found.failing_total == 0,
            failing_orders: Some(found.failing_total),
            failing: Some(
                found
                    .failing
                    .into_iter()
                    .map(|f| FailingProjection {
                        delivery_order_id: f.delivery_order_id,
                        version: f.version,
                        error: f.error,
                        attempts: f.attempts,
                        since: timestamp(&f.since),
                        last_failed_at: timestamp(&f.last_failed_at),
                    })
                    .collect(),
            ),
            anomalies_last_day: Some(found.anomalies_last_day),
            error: None,
        },
        None => ProjectionHealth {
            ok: false,
            failing_orders: None,
            failing: None,
            anomalies_last_day: None,
            error: Some("the read model did not answer".into()),
        },
    }
}

/// Pollers and backlog of the workflow and activity task queues.
async fn workers(state: &AppState) -> TemporalHealth {
    let mut queues = BTreeMap::new();
    let mut ok = true;
    for (name, kind) in [
        ("workflow_tasks", TaskQueueType::Workflow),
        ("activity_tasks", TaskQueueType::Activity),
    ] {
        let request = DescribeTaskQueueRequest {
            namespace: state.config.namespace.clone(),
            task_queue: Some(TaskQueue {
                name: state.config.task_queue.clone(),
                kind: TaskQueueKind::Normal as i32,
                ..Default::default()
            }),
            task_queue_type: kind as i32,
            report_stats: true,
            ..Default::default()
        };
        let mut service = state.orders.client().connection().workflow_service();
        let answer = tokio::time::timeout(
            CHECK_TIMEOUT,
            service.describe_task_queue(temporalio_client::tonic::Request::new(request)),
        )
        .await;
        let queue = match answer {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                QueueHealth {
                    pollers: Some(response.pollers.len() as u64),
                    backlog: response.stats.map(|s| s.approximate_backlog_count),
                    error: None,
                }
            }
            _ => {
                ok = false;
                QueueHealth {
                    pollers: None,
                    backlog: None,
                    error: Some("Temporal did not answer".into()),
                }
            }
        };
        queues.insert(name.to_owned(), queue);
    }
    let workers_polling = queues
        .get("workflow_tasks")
        .and_then(|q| q.pollers)
        .is_some_and(|n| n > 0);
    TemporalHealth {
        ok,
        task_queue: state.config.task_queue.clone(),
        workers_polling,
        queues,
    }
}
