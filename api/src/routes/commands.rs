//! Commands: payment intake, manual creation, events for a delivery order.

use std::sync::Arc;

use delivery_workflows::delivery_order::client::Started;
use delivery_workflows::{
    Actor, DeliveryOrderInput, EventEnvelope, EventType as DomainEventType, ItemFormat, workflow_id,
};
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::apply::{apply, sending_role};
use crate::auth::{BearerAuth, Caller, Role};
use crate::model::{
    Address, DeliveryOrderCreated, EventApplied, EventCommand, Item, ManualDeliveryOrder,
    NoDeliveryRequired, PaymentSucceeded, State,
};
use crate::problem::ApiError;
use crate::request_id::{RequestIds, explicit_correlation_id};
use crate::routes::{Tag, caller_event_id, delivery_order_id};
use crate::state::AppState;

/// Namespace of delivery order ids derived from idempotency keys (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_7a3e_0b6f_4e29_9f3a_2c8d_41e7_b960);

/// The delivery order a payment creates: derived from its `payment_id`, so a repeated payment
/// names the same order (and a client can know the id before the answer arrives).
pub fn delivery_order_id_of_payment(payment_id: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("payment:{payment_id}").as_bytes())
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// A new delivery order was started.
    #[oai(status = 201)]
    Created(
        Json<DeliveryOrderCreated>,
        #[oai(header = "Location")] String,
    ),
    /// This payment (or idempotency key) had started it already: the same body as then.
    #[oai(status = 200)]
    Existing(
        Json<DeliveryOrderCreated>,
        #[oai(header = "Location")] String,
    ),
    /// Nothing to deliver: the payment holds no physical item.
    #[oai(status = 202)]
    NoDelivery(Json<NoDeliveryRequired>),
}

#[derive(ApiResponse)]
pub enum EventResponse {
    /// Applied, or applied before under this event id (`applied: false`).
    #[oai(status = 200)]
    Ok(Json<EventApplied>),
}

#[derive(Default)]
pub struct CommandsApi;

/// The fields creation needs, from either entry point.
struct Creation {
    payment_id: Option<String>,
    ordering_id: String,
    customer_id: String,
    items: Vec<Item>,
    shipping_address: Address,
    notes: Option<String>,
    budget: Option<u64>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Commands")]
impl CommandsApi {
    /// Payment succeeded: start the delivery of its physical items.
    ///
    /// Idempotent on `payment_id`: a repeat answers 200 with the body of the first answer; the
    /// same `payment_id` with other content is refused with 409. A payment of e-books only needs
    /// no delivery (202).
    #[oai(
        path = "/payment-events",
        method = "post",
        operation_id = "payment_succeeded"
    )]
    async fn payment_event(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<PaymentSucceeded>,
    ) -> Result<CreateResponse, ApiError> {
        let caller = auth.0;
        caller.require(&[Role::PaymentService])?;
        let p = body.0;
        if !p
            .items
            .iter()
            .any(|i| ItemFormat::from(i.format) == ItemFormat::Physical)
        {
            return Ok(CreateResponse::NoDelivery(Json(NoDeliveryRequired {
                delivery_required: false,
                payment_id: p.payment_id.into(),
                ordering_id: p.ordering_id.into(),
            })));
        }
        let id = delivery_order_id_of_payment(&p.payment_id);
        let correlation_id = explicit_correlation_id(req).unwrap_or_else(|| p.event_id.to_string());
        let creation = Creation {
            payment_id: Some(p.payment_id.into()),
            ordering_id: p.ordering_id.into(),
            customer_id: p.customer_id.into(),
            items: p.items,
            shipping_address: p.shipping_address,
            notes: p.notes,
            budget: p.budget,
        };
        create(
            &state,
            id,
            creation,
            Actor::new(Role::PaymentService.actor_kind(), caller.sub),
            correlation_id,
        )
        .await
    }
}

/// Create a delivery order by hand (operators, order management).
///
/// Idempotent on `payment_id` when given, else on the `Idempotency-Key` header; without
/// either, every call creates a new delivery order.
pub(super) async fn create_delivery_order(
    caller: Caller,
    state: &AppState,
    req: &Request,
    m: ManualDeliveryOrder,
    idempotency_key: Option<String>,
) -> Result<CreateResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin, Role::OrderManagement])?;
    let role = [Role::Operator, Role::Admin, Role::OrderManagement]
        .into_iter()
        .find(|r| caller.has(*r))
        .unwrap_or(Role::Operator);
    if !m
        .items
        .iter()
        .any(|i| ItemFormat::from(i.format) == ItemFormat::Physical)
    {
        return Err(ApiError::unprocessable(
            "nothing-to-deliver",
            "a delivery order needs at least one PHYSICAL item",
        ));
    }
    let id = match (&m.payment_id, &idempotency_key) {
        (Some(payment_id), _) => delivery_order_id_of_payment(payment_id),
        (None, Some(key)) => Uuid::new_v5(
            &ID_NAMESPACE,
            format!("manual:{}:{key}", caller.sub).as_bytes(),
        ),
        (None, None) => Uuid::now_v7(),
    };
    let ids = req.extensions().get::<RequestIds>().cloned();
    let correlation_id = ids
        .map(|i| i.correlation_id)
        .unwrap_or_else(|| id.to_string());
    let creation = Creation {
        payment_id: m.payment_id.map(String::from),
        ordering_id: m.ordering_id.into(),
        customer_id: m.customer_id.into(),
        items: m.items,
        shipping_address: m.shipping_address,
        notes: m.notes,
        budget: m.budget,
    };
    create(
        state,
        id,
        creation,
        Actor::new(role.actor_kind(), caller.sub),
        correlation_id,
    )
    .await
}

/// Send an event to a delivery order.
///
/// Allowed events and who may send them follow the state graph. 409 names the current state
/// and the allowed events; 422 says what is wrong with `data`. A retry (the same `event_id` or
/// `Idempotency-Key`, the same content) answers 200 with the original outcome; another event
/// under a used id is 409 `idempotency-conflict`.
pub(super) async fn send_event(
    caller: Caller,
    state: &AppState,
    req: &Request,
    id: &str,
    command: EventCommand,
    idempotency_key: Option<String>,
) -> Result<EventResponse, ApiError> {
    let id = delivery_order_id(id)?;
    let event_type = DomainEventType::from(command.event_type);
    let event_id = match (command.event_id.map(String::from), idempotency_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                "conflicting-event-id",
                "event_id and the Idempotency-Key header differ; send one of them",
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => Uuid::new_v4().to_string(),
    };
    caller_event_id(&event_id)?;
    // The workflow checks the sender against the order (a customer only its own, a partner only
    // the pickup it took) before anything else, and answers NOT_YOUR_ORDER as 404.
    let role = sending_role(&caller, event_type, command.sent_as)?;
    let correlation_id = req
        .extensions()
        .get::<RequestIds>()
        .map(|i| i.correlation_id.clone());
    let envelope = EventEnvelope {
        event_id,
        event_type,
        data: command.data.map(|d| d.0).unwrap_or(serde_json::Value::Null),
        actor: Actor::new(role.actor_kind(), caller.sub),
        correlation_id,
        pickup_id: None,
    };
    Ok(EventResponse::Ok(Json(apply(state, id, envelope).await?)))
}

async fn create(
    state: &AppState,
    id: Uuid,
    c: Creation,
    created_by: Actor,
    correlation_id: String,
) -> Result<CreateResponse, ApiError> {
    let fingerprint = fingerprint(&c);
    let delivery_order_id = id.to_string();
    // The request's log lines (and its error, if any) name the order it creates.
    tracing::Span::current().record("delivery_order_id", delivery_order_id.as_str());
    let input = DeliveryOrderInput {
        delivery_order_id: delivery_order_id.clone(),
        ordering_id: c.ordering_id.clone(),
        customer_id: c.customer_id.clone(),
        payment_id: c.payment_id.clone(),
        // Only physical items travel; e-books of the same payment are delivered elsewhere.
        items: c
            .items
            .iter()
            .filter(|i| ItemFormat::from(i.format) == ItemFormat::Physical)
            .cloned()
            .map(Into::into)
            .collect(),
        shipping_address: c.shipping_address.clone().into(),
        notes: c.notes.clone(),
        budget: c.budget,
        replaces_id: None,
        deadlines: Default::default(),
        created_by: Some(created_by),
        correlation_id: Some(correlation_id),
    };
    delivery_workflows::validation::check_input(&input)
        .map_err(|e| ApiError::unprocessable("invalid-delivery-order", e))?;
    let body = DeliveryOrderCreated {
        href: format!("/api/v1/delivery-orders/{delivery_order_id}"),
        workflow_id: workflow_id(&delivery_order_id),
        delivery_order_id,
        ordering_id: c.ordering_id,
        customer_id: c.customer_id,
        payment_id: c.payment_id,
        state: State::Created,
        version: 0,
    };
    let location = body.href.clone();
    match state.orders.start(input, &fingerprint).await {
        Ok(Started::New) => Ok(CreateResponse::Created(Json(body), location)),
        Ok(Started::Existing {
            fingerprint: Some(existing),
        }) if existing != fingerprint => Err(ApiError::conflict(
            "idempotency-key-reused",
            "this payment_id (or idempotency key) already created a delivery order with different content",
        )),
        Ok(Started::Existing { .. }) => Ok(CreateResponse::Existing(Json(body), location)),
        // The start may have reached Temporal: the same request again finds the order (200)
        // rather than starting a second one, so the caller is told which order to expect.
        Err(e) => Err(ApiError::unavailable(
            "the workflow engine did not answer; the same request again is safe (it never starts a second delivery)",
            &e,
        )
        .for_order(&body.delivery_order_id)),
    }
}

/// A digest of what was asked for, to tell a retry from a reused key.
fn fingerprint(c: &Creation) -> String {
    let canonical = serde_json::json!({
        "payment_id": c.payment_id,
        "ordering_id": c.ordering_id,
        "customer_id": c.customer_id,
        "items": c.items.iter().map(|i| serde_json::json!([i.sku, i.title, delivery_workflows::ItemFormat::from(i.format).as_str(), i.quantity])).collect::<Vec<_>>(),
        "shipping_address": [
            &c.shipping_address.name, &c.shipping_address.line1, &c.shipping_address.line2,
            &c.shipping_address.city, &c.shipping_address.postal_code, &c.shipping_address.country,
            &c.shipping_address.phone,
        ],
        "notes": c.notes,
        "budget": c.budget,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}
