//! Queries, all from the read model (Redis status cache, then PostgreSQL).

use std::sync::Arc;

use delivery_read_model::reader::{AtLeast, Cursor, ListFilter, MAX_PAGE};
use delivery_read_model::{ReadError, StoredOrder};
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use crate::auth::{BearerAuth, Caller, Role};
use crate::model::{
    AuditTrail, DeliveryOrder, DeliveryOrderPage, OperatorQueue, OrderingDeliveries, QueueEntry,
    QueueReason, timestamp,
};
use crate::problem::ApiError;
use crate::read::{audit_event, delivery_order};
use crate::routes::{Tag, delivery_order_id, ref_id};
use crate::state::AppState;

#[derive(Default)]
pub struct QueriesApi;

fn read_failed(error: ReadError) -> ApiError {
    ApiError::unavailable("the read model is unavailable", &error)
}

/// The order if this caller may see it; 404 otherwise (a customer cannot tell another
/// customer's order from one that does not exist).
fn visible(caller: &Caller, id: &str, order: Option<StoredOrder>) -> Result<StoredOrder, ApiError> {
    order
        .filter(|o| caller.may_see(&o.order.customer_id))
        .ok_or_else(|| ApiError::delivery_order_not_found(id))
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Queries")]
impl QueriesApi {
    /// Every delivery order of an ordering, oldest first (a reshipment follows the order it
    /// replaces).
    #[oai(
        path = "/orderings/:ordering_id/delivery-orders",
        method = "get",
        operation_id = "get_ordering_delivery_orders"
    )]
    async fn of_ordering(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        ordering_id: Path<String>,
    ) -> Result<Json<OrderingDeliveries>, ApiError> {
        ref_id("ordering_id", &ordering_id.0)?;
        let records = state
            .read_model
            .of_ordering(&ordering_id.0)
            .await
            .map_err(read_failed)?;
        let records: Vec<_> = records
            .into_iter()
            .filter(|o| auth.0.may_see(&o.order.customer_id))
            .collect();
        if records.is_empty() {
            return Err(ApiError::not_found(format!(
                "no delivery orders for ordering {}",
                ordering_id.0
            )));
        }
        Ok(Json(OrderingDeliveries {
            ordering_id: ordering_id.0,
            delivery_orders: records.iter().map(delivery_order).collect(),
        }))
    }

    /// Delivery orders waiting for an operator, the longest waiting first, each with why.
    #[oai(
        path = "/operator/queue",
        method = "get",
        operation_id = "get_operator_queue"
    )]
    async fn operator_queue(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u32>>,
    ) -> Result<Json<OperatorQueue>, ApiError> {
        auth.0.require(&[Role::Operator, Role::Admin])?;
        let rows = state
            .read_model
            .operator_queue(limit.0.unwrap_or(100))
            .await
            .map_err(read_failed)?;
        Ok(Json(OperatorQueue {
            entries: rows
                .into_iter()
                .map(|row| QueueEntry {
                    delivery_order: delivery_order(&row.order),
                    reason: QueueReason {
                        kind: row.kind.as_str().to_owned(),
                        code: row.code,
                        detail: row.detail,
                    },
                    waiting_since: timestamp(&row.waiting_since),
                })
                .collect(),
        }))
    }
}

/// One delivery order.
///
/// With `min_version=N` the read waits (bounded, `MIN_VERSION_WAIT_MS`) until the read
/// model holds version N or later, so a client reads its own writes; if it does not get
/// there in time the answer is 409 `projection-behind` with the version it is at.
pub(super) async fn get_delivery_order(
    caller: Caller,
    state: &AppState,
    id: &str,
    min_version: Option<u64>,
) -> Result<Json<DeliveryOrder>, ApiError> {
    let uuid = delivery_order_id(id)?;
    let order = read_order(&caller, state, id, uuid, min_version).await?;
    Ok(Json(delivery_order(&visible(&caller, id, order)?)))
}

/// The order as the read model holds it now, or, with `min_version`, once it holds that
/// version (bounded wait; 409 `projection-behind` if it does not get there in time).
async fn read_order(
    caller: &Caller,
    state: &AppState,
    id: &str,
    uuid: uuid::Uuid,
    min_version: Option<u64>,
) -> Result<Option<StoredOrder>, ApiError> {
    let Some(min) = min_version else {
        return state.read_model.order(uuid).await.map_err(read_failed);
    };
    let started = std::time::Instant::now();
    let found = state
        .read_model
        .order_at_least(uuid, min, state.config.min_version_wait)
        .await
        .map_err(read_failed)?;
    let outcome = if matches!(found, AtLeast::Found(_)) {
        "reached"
    } else {
        "behind"
    };
    state
        .metrics
        .min_version_wait
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    match found {
        AtLeast::Found(order) => Ok(Some(*order)),
        AtLeast::Behind { current, waited } => {
            // Only say how far the projection is to someone who may see the order.
            let current_visible = match current {
                Some(_) => state
                    .read_model
                    .order(uuid)
                    .await
                    .ok()
                    .flatten()
                    .filter(|o| caller.may_see(&o.order.customer_id))
                    .map(|o| o.order.version),
                None => None,
            };
            if current.is_some() && current_visible.is_none() {
                return Err(ApiError::delivery_order_not_found(id));
            }
            Err(ApiError::projection_behind(
                min,
                current_visible,
                waited.as_millis(),
            ))
        }
    }
}

/// The audit trail of a delivery order: its creation, then every applied event, in order.
///
/// With `min_version=N` the read waits exactly as the order read does, so the trail holds
/// every event up to version N (the projection commits an order's row and its events
/// together): a client reads the trail of its own writes.
pub(super) async fn audit_trail(
    caller: Caller,
    state: &AppState,
    id: &str,
    min_version: Option<u64>,
) -> Result<Json<AuditTrail>, ApiError> {
    let uuid = delivery_order_id(id)?;
    let order = read_order(&caller, state, id, uuid, min_version).await?;
    visible(&caller, id, order)?;
    let events = state
        .read_model
        .audit_trail(uuid)
        .await
        .map_err(read_failed)?;
    Ok(Json(AuditTrail {
        delivery_order_id: id.to_owned(),
        events: events.iter().map(audit_event).collect(),
    }))
}

/// Delivery orders, newest first, filtered and paged (operators, admins).
pub(super) async fn list(
    caller: Caller,
    state: &AppState,
    filter: ListFilter,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Json<DeliveryOrderPage>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let after = cursor
        .as_deref()
        .map(|c| {
            Cursor::decode(c).ok_or_else(|| {
                ApiError::bad_request("invalid-cursor", "cursor is not one this API returned")
            })
        })
        .transpose()?;
    let (records, next) = state
        .read_model
        .list(&filter, limit.unwrap_or(50).min(MAX_PAGE), after)
        .await
        .map_err(read_failed)?;
    Ok(Json(DeliveryOrderPage {
        items: records.iter().map(delivery_order).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}
