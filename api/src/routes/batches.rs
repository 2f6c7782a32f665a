//! `POST /api/v1/event-batches`: events for one or several delivery orders, applied in order,
//! all or none, under one correlation id (see `EventBatchWorkflow`).

use std::sync::Arc;
use std::time::Duration;

use delivery_workflows::batch::{BatchInput, BatchItem, BatchResult, BatchRun};
use delivery_workflows::{Actor, EventEnvelope, EventType as DomainEventType, RejectionCode};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use crate::apply::sending_role;
use crate::auth::{BearerAuth, Role};
use crate::model::{EventType, State};
use crate::problem::ApiError;
use crate::ref_id::RefId;
use crate::request_id::explicit_correlation_id;
use crate::routes::{Tag, caller_event_id, delivery_order_id};
use crate::state::AppState;

/// Longest a caller waits for a batch to finish.
const BATCH_WAIT: Duration = Duration::from_secs(60);
const BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x0b7c_52f1_93d4_4a6e_8c21_5e0f_d2a9_7b13);

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct BatchEvent {
    pub delivery_order_id: String,
    #[oai(rename = "type")]
    pub event_type: EventType,
    pub data: Option<Any<Value>>,
    pub event_id: Option<RefId>,
    /// The role the event is sent as, when the token holds several that may send it (default:
    /// the first of them), as on `POST /delivery-orders/{id}/events`.
    pub sent_as: Option<Role>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct EventBatch {
    /// Carried into every audit row of the batch (and `BatchRolledBack`); default: the
    /// `X-Correlation-Id` header, else the batch id.
    pub correlation_id: Option<RefId>,
    #[oai(validator(min_items = 1, max_items = 100))]
    pub events: Vec<BatchEvent>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BatchOrderResult {
    pub delivery_order_id: String,
    pub state: State,
    pub version: u64,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BatchApplied {
    pub batch_id: String,
    pub correlation_id: String,
    /// Each delivery order of the batch after it, in order of first appearance.
    pub results: Vec<BatchOrderResult>,
}

#[derive(ApiResponse)]
pub enum BatchResponse {
    /// Every event applied.
    #[oai(status = 200)]
    Applied(Json<BatchApplied>),
}

#[derive(Default)]
pub struct BatchesApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Commands")]
impl BatchesApi {
    /// Apply events atomically: all in order, or none (409 names the failing event by its
    /// position, and `BatchRolledBack` is published). While a batch runs, its orders refuse
    /// other commands (409 `locked-by-batch`); partner webhooks get 503 `locked-by-batch` with
    /// `Retry-After`, which partners retry.
    /// `Idempotency-Key` makes a retry join the same batch; the same key with other events is
    /// 409 `idempotency-key-reused`, and nothing is applied.
    #[oai(
        path = "/event-batches",
        method = "post",
        operation_id = "apply_event_batch"
    )]
    async fn apply_batch(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<EventBatch>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<RefId>>,
    ) -> Result<BatchResponse, ApiError> {
        let caller = auth.0;
        caller.require(&[Role::Operator, Role::Partner, Role::Admin])?;
        let batch_id = match &idempotency_key.0 {
            Some(key) => Uuid::new_v5(&BATCH_NAMESPACE, format!("{}:{key}", caller.sub).as_bytes()),
            None => Uuid::new_v4(),
        }
        .to_string();
        let correlation_id = body
            .0
            .correlation_id
            .clone()
            .map(String::from)
            .or_else(|| explicit_correlation_id(req))
            .unwrap_or_else(|| batch_id.clone());
        let mut items = Vec::with_capacity(body.0.events.len());
        for (index, event) in body.0.events.into_iter().enumerate() {
            let id = delivery_order_id(&event.delivery_order_id)
                .map_err(|e| at(index, e))?
                .to_string();
            let event_type = DomainEventType::from(event.event_type);
            let role =
                sending_role(&caller, event_type, event.sent_as).map_err(|e| at(index, e))?;
            let event_id = event
                .event_id
                .map(String::from)
                .unwrap_or_else(|| format!("{batch_id}:{index}"));
            caller_event_id(&event_id).map_err(|e| at(index, e))?;
            items.push(BatchItem {
                delivery_order_id: id,
                event: EventEnvelope {
                    event_id,
                    event_type,
                    data: event.data.map(|d| d.0).unwrap_or(Value::Null),
                    actor: Actor::new(role.actor_kind(), caller.sub.clone()),
                    correlation_id: Some(correlation_id.clone()),
                    pickup_id: None,
                },
            });
        }
        let event_types: Vec<&'static str> =
            items.iter().map(|i| i.event.event_type.as_str()).collect();
        let input = BatchInput {
            batch_id: batch_id.clone(),
            correlation_id: correlation_id.clone(),
            items,
            lease_ms: Some(state.config.batch_lease.as_millis() as u64),
        };
        let answer = match state.batches.run(input, BATCH_WAIT).await {
            Ok(BatchRun::IdReused) => Err(ApiError::conflict(
                "idempotency-key-reused",
                "this Idempotency-Key already named a batch of other events; nothing was applied \
                 (send these events under a new key)",
            )),
            Ok(BatchRun::Finished(BatchResult::Committed { results })) => {
                Ok(BatchResponse::Applied(Json(BatchApplied {
                    batch_id,
                    correlation_id,
                    results: results
                        .into_iter()
                        .map(|r| BatchOrderResult {
                            delivery_order_id: r.delivery_order_id,
                            state: r.state.into(),
                            version: r.version,
                        })
                        .collect(),
                })))
            }
            // An order the caller may not act on, or none at all: answered as `/events` answers
            // it, the same for both, so a batch cannot tell which ids exist.
            Ok(BatchRun::Finished(BatchResult::RolledBack {
                failed_event_index,
                delivery_order_id,
                code: Some(RejectionCode::NotYourOrder | RejectionCode::NoSuchOrder),
                ..
            })) => Err(at(
                failed_event_index,
                ApiError::delivery_order_not_found(&delivery_order_id),
            )),
            Ok(BatchRun::Finished(BatchResult::RolledBack {
                failed_event_index,
                delivery_order_id,
                reason,
                ..
            })) => Err(ApiError::batch_rolled_back(
                failed_event_index,
                &delivery_order_id,
                &batch_id,
                &reason,
            )),
            Err(error) => Err(ApiError::undecided_batch(
                &batch_id,
                idempotency_key.0.is_some(),
                &error,
            )),
        };
        // Every event of the batch shares its fate: counted with the batch's outcome, as
        // `/events` counts one event.
        let outcome = match &answer {
            Ok(_) => "applied",
            Err(problem) => problem.code(),
        };
        for event_type in event_types {
            state.metrics.count_event(event_type, outcome);
        }
        answer
    }
}

/// A refusal of one event, saying which.
fn at(index: usize, error: ApiError) -> ApiError {
    error.with_event_index(index)
}
