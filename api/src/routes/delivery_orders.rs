//! Every operation under `/delivery-orders`, commands and queries together: poem-openapi writes
//! one path entry per API type, so operations sharing a path must share a type or the spec would
//! list the path twice. The handlers live with their kind (`commands`, `queries`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;

use crate::auth::BearerAuth;
use crate::model::{
    AuditTrail, DeliveryOrder, DeliveryOrderPage, EventCommand, ManualDeliveryOrder, State,
};
use crate::problem::ApiError;
use crate::ref_id::RefId;
use crate::routes::commands::{self, CreateResponse, EventResponse};
use crate::routes::{Tag, queries};
use crate::state::AppState;
use delivery_read_model::reader::ListFilter;

#[derive(Default)]
pub struct DeliveryOrdersApi;

#[OpenApi(prefix_path = "/api/v1")]
impl DeliveryOrdersApi {
    /// Create a delivery order by hand (operators, order management).
    ///
    /// Idempotent on `payment_id` when given, else on the `Idempotency-Key` header; without
    /// either, every call creates a new delivery order.
    #[oai(
        path = "/delivery-orders",
        method = "post",
        operation_id = "create_delivery_order",
        tag = "Tag::Commands"
    )]
    async fn create_delivery_order(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<ManualDeliveryOrder>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<RefId>>,
    ) -> Result<CreateResponse, ApiError> {
        commands::create_delivery_order(
            auth.0,
            &state,
            req,
            body.0,
            idempotency_key.0.map(String::from),
        )
        .await
    }

    /// Send an event to a delivery order.
    ///
    /// Allowed events and who may send them follow the state graph. 409 names the current state
    /// and the allowed events; 422 says what is wrong with `data`. A retry with the same
    /// `event_id` (or `Idempotency-Key`) changes nothing and answers 200.
    #[oai(
        path = "/delivery-orders/:id/events",
        method = "post",
        operation_id = "send_event",
        tag = "Tag::Commands"
    )]
    async fn send_event(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        id: Path<String>,
        body: Json<EventCommand>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<RefId>>,
    ) -> Result<EventResponse, ApiError> {
        commands::send_event(
            auth.0,
            &state,
            req,
            &id.0,
            body.0,
            idempotency_key.0.map(String::from),
        )
        .await
    }

    /// One delivery order.
    ///
    /// With `min_version=N` the read waits (bounded, `MIN_VERSION_WAIT_MS`) until the read
    /// model holds version N or later, so a client reads its own writes; if it does not get
    /// there in time the answer is 409 `projection-behind` with the version it is at.
    #[oai(
        path = "/delivery-orders/:id",
        method = "get",
        operation_id = "get_delivery_order",
        tag = "Tag::Queries"
    )]
    async fn get_delivery_order(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        #[oai(validator(maximum(value = "1000000")))] min_version: Query<Option<u64>>,
    ) -> Result<Json<DeliveryOrder>, ApiError> {
        queries::get_delivery_order(auth.0, &state, &id.0, min_version.0).await
    }

    /// The audit trail of a delivery order: its creation (who, from which payment), then every
    /// applied event, in order.
    ///
    /// With `min_version=N` the read waits (bounded, `MIN_VERSION_WAIT_MS`) until the trail
    /// holds every event up to version N, as the order read does; if it does not get there in
    /// time the answer is 409 `projection-behind` with the version it is at.
    #[oai(
        path = "/delivery-orders/:id/events",
        method = "get",
        operation_id = "get_audit_trail",
        tag = "Tag::Queries"
    )]
    async fn audit_trail(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        #[oai(validator(maximum(value = "1000000")))] min_version: Query<Option<u64>>,
    ) -> Result<Json<AuditTrail>, ApiError> {
        queries::audit_trail(auth.0, &state, &id.0, min_version.0).await
    }

    /// Search delivery orders (operators, admins): newest first, paged by `next_cursor`
    /// (`limit` 1-200, default 50). Every given filter applies: `state`, `ordering_id`,
    /// `customer_id`, `payment_id`, `partner_order_number`, and the creation time in
    /// [`created_from`, `created_to`) (RFC 3339; 400 when `created_from` is not before
    /// `created_to`).
    #[oai(
        path = "/delivery-orders",
        method = "get",
        operation_id = "list_delivery_orders",
        tag = "Tag::Queries"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        #[oai(name = "state")] state_filter: Query<Option<State>>,
        ordering_id: Query<Option<RefId>>,
        customer_id: Query<Option<RefId>>,
        payment_id: Query<Option<RefId>>,
        partner_order_number: Query<Option<RefId>>,
        created_from: Query<Option<DateTime<Utc>>>,
        created_to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u32>>,
        #[oai(validator(max_length = 100))] cursor: Query<Option<String>>,
    ) -> Result<Json<DeliveryOrderPage>, ApiError> {
        let filter = ListFilter {
            state: state_filter.0.map(Into::into),
            ordering_id: ordering_id.0.map(String::from),
            customer_id: customer_id.0.map(String::from),
            payment_id: payment_id.0.map(String::from),
            partner_order_number: partner_order_number.0.map(String::from),
            created_from: created_from.0,
            created_to: created_to.0,
        };
        queries::list(auth.0, &state, filter, limit.0, cursor.0).await
    }
}
