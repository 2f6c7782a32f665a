//! The delivery API of the original Redis event-sourcing delivery app, kept for its clients:
//! `POST /deliveries/create`, `POST /event`, `GET /deliveries/{pk}/status`, with that app's
//! events, rules and JSON shapes (`{id, budget, notes, status}`; refusals are 400 `{detail}`).
//! Each delivery is a durable workflow (`CompatDeliveryWorkflow`); its status is served from the
//! Redis cache and rebuilt from the stored events when the cache is empty.

use std::sync::Arc;

use delivery_workflows::ClientError;
use delivery_workflows::compat::CompatCommand;
use delivery_workflows::compat::{CompatDelivery, CompatEventType, normalize_data};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{BearerAuth, Role};
use crate::problem::Problem;
use crate::ref_id::RefId;
use crate::routes::Tag;
use crate::state::AppState;

/// The original app's error body.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Detail {
    pub detail: String,
}

/// Every answer of the compatible API. One type for all of them, so that a request that does
/// not parse is answered here, in the original app's `{detail}` shape, instead of as a problem
/// document the original clients do not know.
#[derive(Debug, Clone, ApiResponse)]
#[oai(bad_request_handler = "malformed")]
pub enum CompatAnswer {
    /// The delivery's status: `{id, budget, notes, status, ...}`.
    #[oai(status = 200)]
    Ok(Json<Any<Value>>),
    /// Refused by the rules (not enough budget or quantity, already started, ...) or malformed
    /// (including a body that is not JSON).
    #[oai(status = 400)]
    BadRequest(Json<Detail>),
    /// No or an invalid bearer token (a problem document, as everywhere else in the gateway).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// The token's roles do not allow it (operator, admin or order_management needed).
    #[oai(status = 403)]
    Forbidden(Json<Detail>),
    #[oai(status = 404)]
    NotFound(Json<Detail>),
    /// The body is larger than the gateway accepts (a problem document, from the gateway's
    /// edge, before this API sees the request).
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// Too many requests from this caller (a problem document, from the gateway's edge).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// A dependency (Temporal, PostgreSQL) cannot serve the request now: retry after
    /// `Retry-After` seconds, as every other 503 of the gateway says.
    #[oai(status = 503)]
    Unavailable(Json<Detail>, #[oai(header = "Retry-After")] u64),
}

/// A refusal of the compatible API (every [`CompatAnswer`] but the status).
#[derive(Debug, Clone)]
pub enum CompatFailure {
    BadRequest(Json<Detail>),
    Forbidden(Json<Detail>),
    NotFound(Json<Detail>),
    Unavailable(Json<Detail>),
}

impl From<Result<Json<Any<Value>>, CompatFailure>> for CompatAnswer {
    fn from(result: Result<Json<Any<Value>>, CompatFailure>) -> Self {
        match result {
            Ok(body) => Self::Ok(body),
            Err(CompatFailure::BadRequest(d)) => Self::BadRequest(d),
            Err(CompatFailure::Forbidden(d)) => Self::Forbidden(d),
            Err(CompatFailure::NotFound(d)) => Self::NotFound(d),
            Err(CompatFailure::Unavailable(d)) => Self::Unavailable(d, RETRY_AFTER_SECS),
        }
    }
}

/// A request that did not parse: a missing or malformed token is 401 as everywhere else; any
/// other is the original app's 400 `{detail}`.
fn malformed(error: poem::Error) -> CompatAnswer {
    if error.is::<poem_openapi::error::AuthorizationError>() {
        let problem = crate::problem::ApiError::unauthorized(
            "this needs a bearer token: Authorization: Bearer <JWT>",
        );
        if let crate::problem::ApiError::Unauthorized(body, challenge) = problem {
            return CompatAnswer::Unauthorized(body, challenge);
        }
    }
    CompatAnswer::BadRequest(Json(Detail {
        detail: error.to_string(),
    }))
}

fn refused(detail: impl Into<String>) -> CompatFailure {
    CompatFailure::BadRequest(Json(Detail {
        detail: detail.into(),
    }))
}

fn not_found() -> CompatFailure {
    CompatFailure::NotFound(Json(Detail {
        detail: "Delivery not found".into(),
    }))
}

/// What a 503 of this API asks a client to wait before retrying.
const RETRY_AFTER_SECS: u64 = 1;

fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> CompatFailure {
    tracing::error!(cause = %cause, "{what}");
    CompatFailure::Unavailable(Json(Detail {
        detail: format!("{what}; retry shortly"),
    }))
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct CreateDelivery {
    /// `CREATE_DELIVERY`.
    #[oai(rename = "type")]
    pub event_type: String,
    /// `{budget, notes}` (an object, or a JSON string of one as the original clients sent it).
    pub data: Any<Value>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct DeliveryEvent {
    pub delivery_id: String,
    /// `START_DELIVERY`, `PICKUP_PRODUCTS {purchase_price, quantity}`,
    /// `DELIVER_PRODUCTS {sell_price, quantity}`, `INCREASE_BUDGET {budget}`.
    #[oai(rename = "type")]
    pub event_type: String,
    pub data: Option<Any<Value>>,
}

#[derive(Default)]
pub struct CompatApi;

const ROLES: &[Role] = &[Role::Operator, Role::Admin, Role::OrderManagement];

#[OpenApi(tag = "Tag::Compat")]
impl CompatApi {
    /// Create a delivery (`CREATE_DELIVERY {budget, notes}`): status `ready`.
    #[oai(
        path = "/deliveries/create",
        method = "post",
        operation_id = "compat_create_delivery"
    )]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        body: Json<CreateDelivery>,
    ) -> CompatAnswer {
        create(auth, state, body).await.into()
    }

    /// Apply an event to a delivery; answers its new status.
    #[oai(path = "/event", method = "post", operation_id = "compat_event")]
    async fn event(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        body: Json<DeliveryEvent>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<RefId>>,
    ) -> CompatAnswer {
        event(auth, state, body, idempotency_key).await.into()
    }

    /// A delivery's status: from the cache, else rebuilt from its stored events.
    #[oai(
        path = "/deliveries/:pk/status",
        method = "get",
        operation_id = "compat_status"
    )]
    async fn status(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        pk: Path<String>,
    ) -> CompatAnswer {
        status(auth, state, pk).await.into()
    }
}

async fn create(
    auth: BearerAuth,
    state: Data<&Arc<AppState>>,
    body: Json<CreateDelivery>,
) -> Result<Json<Any<Value>>, CompatFailure> {
    allowed(&auth)?;
    if CompatEventType::parse(&body.0.event_type) != Some(CompatEventType::CreateDelivery) {
        return Err(refused("type must be CREATE_DELIVERY"));
    }
    let data = normalize_data(body.0.data.0).map_err(|e| refused(e.0))?;
    let id = Uuid::now_v7().to_string();
    let delivery = CompatDelivery::create(&id, &data).map_err(|e| refused(e.0))?;
    state
        .compat
        .start(&id, data)
        .await
        .map_err(|e| unavailable("the workflow engine did not answer", &e))?;
    state.read_model.cache_compat(&delivery).await;
    Ok(Json(Any(shape(&delivery))))
}

async fn event(
    auth: BearerAuth,
    state: Data<&Arc<AppState>>,
    body: Json<DeliveryEvent>,
    idempotency_key: Header<Option<RefId>>,
) -> Result<Json<Any<Value>>, CompatFailure> {
    allowed(&auth)?;
    let event = body.0;
    let id = parse_id(&event.delivery_id)?;
    let event_type = match CompatEventType::parse(&event.event_type) {
        Some(CompatEventType::CreateDelivery) => {
            return Err(refused("create deliveries with POST /deliveries/create"));
        }
        Some(kind) => kind,
        None => {
            return Err(refused(format!(
                "unknown event type {:?}",
                event.event_type
            )));
        }
    };
    let data =
        normalize_data(event.data.map(|d| d.0).unwrap_or(Value::Null)).map_err(|e| refused(e.0))?;
    let command = CompatCommand {
        event_id: idempotency_key
            .0
            .map(String::from)
            .unwrap_or_else(|| Uuid::new_v4().to_string()),
        event_type,
        data,
    };
    match state.compat.apply(&id.to_string(), command).await {
        Ok(delivery) => {
            state.read_model.cache_compat(&delivery).await;
            Ok(Json(Any(shape(&delivery))))
        }
        Err(ClientError::Refused(refusal)) => Err(refused(refusal.message())),
        Err(ClientError::Completed) => Err(refused("Delivery already completed")),
        Err(ClientError::NotFound) => Err(not_found()),
        Err(e @ ClientError::Unavailable(_)) => {
            Err(unavailable("the workflow engine did not answer", &e))
        }
    }
}

async fn status(
    auth: BearerAuth,
    state: Data<&Arc<AppState>>,
    pk: Path<String>,
) -> Result<Json<Any<Value>>, CompatFailure> {
    allowed(&auth)?;
    let id = parse_id(&pk.0)?;
    let delivery = state
        .read_model
        .compat_delivery(id)
        .await
        .map_err(|e| unavailable("the event store is unavailable", &e))?
        .ok_or_else(not_found)?;
    Ok(Json(Any(shape(&delivery))))
}

fn allowed(auth: &BearerAuth) -> Result<(), CompatFailure> {
    if auth.0.has_any(ROLES) {
        Ok(())
    } else {
        Err(CompatFailure::Forbidden(Json(Detail {
            detail: "this needs one of the roles: operator, admin, order_management".into(),
        })))
    }
}

/// Delivery ids are UUIDs; anything else names no delivery.
fn parse_id(text: &str) -> Result<Uuid, CompatFailure> {
    delivery_workflows::validation::check_delivery_order_id(text).map_err(|_| not_found())?;
    Uuid::parse_str(text).map_err(|_| not_found())
}

/// The original app's shape: `{id, budget, notes, status}` plus the pickup and delivery fields
/// once set.
fn shape(delivery: &CompatDelivery) -> Value {
    let mut value = serde_json::to_value(delivery).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("version");
    }
    value
}
