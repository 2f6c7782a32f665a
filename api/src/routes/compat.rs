//! The delivery API of the original Redis event-sourcing delivery app, kept for its clients:
//! `POST /deliveries/create`, `POST /event`, `GET /deliveries/{pk}/status`, with that app's
//! events, rules and JSON shapes (`{id, budget, notes, status}`; refusals are 400 `{detail}`).
//! Each delivery is a durable workflow (`CompatDeliveryWorkflow`); its status is served from the
//! Redis cache and rebuilt from the stored events when the cache is empty.

use std::sync::Arc;

use delivery_workflows::compat::{
    CompatCommand, CompatDelivery, CompatEventType, CompatStarted, normalize_data,
};
use delivery_workflows::{ClientError, RejectionCode};
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

/// The original app's error body. A 503 also names what the request may already have done, so
/// its retry converges on it instead of doing it twice.
#[derive(Debug, Clone, Object, Default)]
#[oai(skip_serializing_if_is_none)]
pub struct Detail {
    pub detail: String,
    /// The delivery a creation that timed out may have created.
    pub id: Option<String>,
    /// The event id (the `Idempotency-Key`) an event that timed out was sent under.
    pub event_id: Option<String>,
}

impl Detail {
    fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            ..Self::default()
        }
    }
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
    /// The `Idempotency-Key` was used before for another creation or another event: nothing was
    /// done.
    #[oai(status = 409)]
    Conflict(Json<Detail>),
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
    Conflict(Json<Detail>),
    Unavailable(Json<Detail>),
}

impl From<Result<Json<Any<Value>>, CompatFailure>> for CompatAnswer {
    fn from(result: Result<Json<Any<Value>>, CompatFailure>) -> Self {
        match result {
            Ok(body) => Self::Ok(body),
            Err(CompatFailure::BadRequest(d)) => Self::BadRequest(d),
            Err(CompatFailure::Forbidden(d)) => Self::Forbidden(d),
            Err(CompatFailure::NotFound(d)) => Self::NotFound(d),
            Err(CompatFailure::Conflict(d)) => Self::Conflict(d),
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
    CompatAnswer::BadRequest(Json(Detail::new(error.to_string())))
}

fn refused(detail: impl Into<String>) -> CompatFailure {
    CompatFailure::BadRequest(Json(Detail::new(detail)))
}

fn not_found() -> CompatFailure {
    CompatFailure::NotFound(Json(Detail::new("Delivery not found")))
}

fn key_reused(detail: impl Into<String>) -> CompatFailure {
    CompatFailure::Conflict(Json(Detail::new(detail)))
}

/// What a 503 of this API asks a client to wait before retrying.
const RETRY_AFTER_SECS: u64 = 1;

fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> CompatFailure {
    unavailable_with(
        what,
        cause,
        format!("{what}; retry shortly"),
        Detail::default(),
    )
}

/// A 503 whose body says what the request may have done (`detail` says how to retry).
fn unavailable_with(
    what: &str,
    cause: &dyn std::fmt::Display,
    detail: String,
    named: Detail,
) -> CompatFailure {
    tracing::error!(cause = %cause, id = named.id, event_id = named.event_id, "{what}");
    CompatFailure::Unavailable(Json(Detail { detail, ..named }))
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
    /// Create a delivery (`CREATE_DELIVERY {budget, notes}`): status `ready`. With an
    /// `Idempotency-Key` a retry finds the delivery the first attempt created (its current
    /// status) instead of creating another; the same key with other data is 409.
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
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<RefId>>,
    ) -> CompatAnswer {
        create(auth, state, body, idempotency_key).await.into()
    }

    /// Apply an event to a delivery; answers its new status. The `Idempotency-Key` is the
    /// event's id: the same event again answers the current status without applying it twice,
    /// another event under it is 409. A 503 names the id the event was sent under.
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

/// Namespace of the delivery ids derived from a caller's creation `Idempotency-Key`.
const CREATION_NAMESPACE: Uuid = Uuid::from_u128(0x5c0f_7d1e_4b8a_4e6f_9a31_c2d4_e5f6_0718);

async fn create(
    auth: BearerAuth,
    state: Data<&Arc<AppState>>,
    body: Json<CreateDelivery>,
    idempotency_key: Header<Option<RefId>>,
) -> Result<Json<Any<Value>>, CompatFailure> {
    allowed(&auth)?;
    if CompatEventType::parse(&body.0.event_type) != Some(CompatEventType::CreateDelivery) {
        return Err(refused("type must be CREATE_DELIVERY"));
    }
    let data = normalize_data(body.0.data.0).map_err(|e| refused(e.0))?;
    // A key names one delivery of its caller, so a retry under it reaches the same workflow.
    let uuid = match &idempotency_key.0 {
        Some(key) => Uuid::new_v5(
            &CREATION_NAMESPACE,
            format!("{}:{key}", auth.0.sub).as_bytes(),
        ),
        None => Uuid::now_v7(),
    };
    let id = uuid.to_string();
    // The request's log lines (and its error, if any) name the delivery, as for orders.
    tracing::Span::current().record("delivery_order_id", id.as_str());
    let delivery = CompatDelivery::create(&id, &data).map_err(|e| refused(e.0))?;
    let started = state.compat.start(&id, data).await.map_err(|e| {
        let next = if idempotency_key.0.is_some() {
            "retry with the same Idempotency-Key: the retry finds this delivery if it was created"
        } else {
            "this request carried no Idempotency-Key, so a retry creates another delivery; read \
             this one's status to learn whether it exists, and send an Idempotency-Key next time"
        };
        unavailable_with(
            "the workflow engine did not answer",
            &e,
            format!(
                "the workflow engine did not answer; delivery {id} may have been created. {next}"
            ),
            Detail {
                id: Some(id.clone()),
                ..Detail::default()
            },
        )
    })?;
    match started {
        CompatStarted::New => {
            state.read_model.cache_compat(&delivery).await;
            Ok(Json(Any(shape(&delivery))))
        }
        // A retry: the delivery as it is now (its first status until an event is projected).
        CompatStarted::Existing => {
            let current = state
                .read_model
                .compat_delivery(uuid)
                .await
                .map_err(|e| unavailable("the event store is unavailable", &e))?;
            Ok(Json(Any(shape(current.as_ref().unwrap_or(&delivery)))))
        }
        CompatStarted::IdReused => Err(key_reused(
            "this Idempotency-Key already created a delivery with other data; nothing was created",
        )),
    }
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
    tracing::Span::current().record("delivery_order_id", id.to_string());
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
    let event_id = idempotency_key
        .0
        .map(String::from)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let command = CompatCommand {
        event_id: event_id.clone(),
        event_type,
        data,
    };
    match state.compat.apply(&id.to_string(), command).await {
        Ok(delivery) => {
            state.read_model.cache_compat(&delivery).await;
            Ok(Json(Any(shape(&delivery))))
        }
        Err(ClientError::Refused(refusal))
            if refusal.code() == RejectionCode::IdempotencyConflict =>
        {
            Err(key_reused(refusal.message()))
        }
        Err(ClientError::Refused(refusal)) => Err(refused(refusal.message())),
        Err(ClientError::Completed) => Err(refused("Delivery already completed")),
        Err(ClientError::NotFound) => Err(not_found()),
        // Temporal may have admitted the event: a retry under its id converges on it.
        Err(e @ ClientError::Unavailable(_)) => Err(unavailable_with(
            "the workflow engine did not answer",
            &e,
            format!(
                "the workflow engine did not answer; the event may still be applied. Retry with \
                 Idempotency-Key: {event_id} and the answer is its outcome, never a second event"
            ),
            Detail {
                event_id: Some(event_id),
                ..Detail::default()
            },
        )),
    }
}

async fn status(
    auth: BearerAuth,
    state: Data<&Arc<AppState>>,
    pk: Path<String>,
) -> Result<Json<Any<Value>>, CompatFailure> {
    allowed(&auth)?;
    let id = parse_id(&pk.0)?;
    tracing::Span::current().record("delivery_order_id", id.to_string());
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
        Err(CompatFailure::Forbidden(Json(Detail::new(
            "this needs one of the roles: operator, admin, order_management",
        ))))
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
