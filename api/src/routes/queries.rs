//! Queries, all from the read model (Redis status cache, then PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use delivery_read_model::reader::{Cursor, ListFilter, MAX_PAGE};
use delivery_read_model::{ReadError, StoredOrder};
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{BearerAuth, Caller, Parties, Role};
use crate::live::Live;
use crate::model::{
    AuditTrail, DeliveryOrder, DeliveryOrderPage, OperatorQueue, OrderingDeliveries, QueueEntry,
    QueueReason, timestamp,
};
use crate::problem::ApiError;
use crate::read::{Audience, audit_event, delivery_order};
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
        .filter(|o| caller.may_see((&o.order).into()))
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
            .filter(|o| auth.0.may_see((&o.order).into()))
            .collect();
        if records.is_empty() {
            return Err(ApiError::not_found(format!(
                "no delivery orders for ordering {}",
                ordering_id.0
            )));
        }
        Ok(Json(OrderingDeliveries {
            ordering_id: ordering_id.0,
            delivery_orders: records
                .iter()
                .map(|o| delivery_order(o, Audience::of(&auth.0)))
                .collect(),
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
                    delivery_order: delivery_order(&row.order, Audience::Staff),
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
    Ok(Json(delivery_order(
        &visible(&caller, id, order)?,
        Audience::of(&caller),
    )))
}

/// How often a waiting read looks at the read model itself while the live updates are
/// disconnected (Redis down while PostgreSQL moves on). While they flow, it looks only when
/// woken by one.
const FALLBACK_LOOK: Duration = Duration::from_secs(1);

/// The order as the read model holds it now, or, with `min_version`, once it holds that
/// version (bounded wait; 409 `projection-behind` if it does not get there in time). The caller's
/// right to see the order is checked before any wait. The wait looks at the read model once when
/// it starts, then only when the relay's live update announces the version (or says updates may
/// have been missed), and every [`FALLBACK_LOOK`] while the live updates are disconnected; it
/// never polls while they flow. One caller has at most `MIN_VERSION_WAITS_PER_CALLER` reads
/// waiting and the gateway `MIN_VERSION_WAITS_TOTAL`.
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
    // Subscribed before the first look, so an announcement between the look and the wait is
    // kept.
    let mut updates = state.live.subscribe();
    let mut connection = state.live.connection();
    let look = |reason: &'static str| {
        state
            .metrics
            .min_version_lookups
            .with_label_values(&[reason])
            .inc();
        state.read_model.order_if_at_least(uuid, min)
    };
    let mut seen = match look("start").await.map_err(read_failed)? {
        Ok(order) => return Ok(Some(order)),
        Err(Some(current)) if !caller.may_see((&current.order).into()) => {
            return Err(ApiError::delivery_order_not_found(id));
        }
        Err(current) => current.map(|o| Seen {
            version: o.order.version,
            customer_id: o.order.customer_id,
            partner_id: o.order.partner_id,
        }),
    };
    let _place = state
        .version_waits
        .take(&caller.sub)
        .map_err(|refused| ApiError::too_busy(refused.to_string()))?;
    let started = tokio::time::Instant::now();
    let deadline = started + state.config.min_version_wait;
    // Set when the hub is gone (shutting down): only the deadline remains.
    let mut hub_gone = false;
    let found = loop {
        let connected = *connection.borrow_and_update();
        let fallback = async {
            if connected {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(FALLBACK_LOOK).await
            }
        };
        let reason = tokio::select! {
            wake = announced(&mut updates, id, min, &mut seen), if !hub_gone => match wake {
                Wake::Reached => "announced",
                Wake::MayHaveMissed => "resync",
                Wake::HubGone => {
                    hub_gone = true;
                    continue;
                }
            },
            _ = fallback => "fallback",
            changed = connection.changed(), if !hub_gone => {
                if changed.is_err() {
                    hub_gone = true;
                    continue;
                }
                if !*connection.borrow() {
                    continue; // disconnected: the fallback looks start
                }
                // Connected (again): whatever was announced before may have been missed.
                "resync"
            }
            _ = tokio::time::sleep_until(deadline) => break Err(seen),
        };
        match look(reason).await.map_err(read_failed)? {
            Ok(order) => break Ok(order),
            Err(current) => {
                if let Some(current) = current {
                    seen = Some(Seen {
                        version: current.order.version,
                        customer_id: current.order.customer_id,
                        partner_id: current.order.partner_id,
                    });
                }
            }
        }
    };
    state
        .metrics
        .min_version_wait
        .with_label_values(&[if found.is_ok() { "reached" } else { "behind" }])
        .observe(started.elapsed().as_secs_f64());
    match found {
        Ok(order) => Ok(Some(order)),
        // Created meanwhile for somebody else: as if it did not exist.
        Err(Some(current)) if !caller.may_see(current.parties()) => {
            Err(ApiError::delivery_order_not_found(id))
        }
        Err(current) => Err(ApiError::projection_behind(
            min,
            current.map(|o| o.version),
            started.elapsed().as_millis(),
        )),
    }
}

/// What a waiting read last learnt of its order, from a look or an announcement.
struct Seen {
    version: u64,
    customer_id: String,
    partner_id: Option<String>,
}

impl Seen {
    fn parties(&self) -> Parties<'_> {
        Parties {
            customer_id: &self.customer_id,
            partner_id: self.partner_id.as_deref(),
        }
    }
}

/// Why a waiting read woke.
enum Wake {
    /// A live update says the order reached the version.
    Reached,
    /// Live updates may have been missed (the subscription came back, or this read fell behind).
    MayHaveMissed,
    /// The hub is gone (shutting down).
    HubGone,
}

/// Resolves when a live update says `id` reached `min` (or when updates may have been missed,
/// so the caller looks again); an update of `id` below `min` is noted in `seen`.
async fn announced(
    updates: &mut broadcast::Receiver<Live>,
    id: &str,
    min: u64,
    seen: &mut Option<Seen>,
) -> Wake {
    loop {
        match updates.recv().await {
            Ok(Live::Change(change)) if change.is_status && change.delivery_order_id == id => {
                if change.version >= min {
                    return Wake::Reached;
                }
                *seen = Some(Seen {
                    version: change.version,
                    customer_id: change.customer_id.clone(),
                    partner_id: change.partner_id.clone(),
                });
            }
            Ok(Live::Change(_)) => {}
            Ok(Live::Resubscribed) | Err(RecvError::Lagged(_)) => return Wake::MayHaveMissed,
            Err(RecvError::Closed) => return Wake::HubGone,
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
        events: events
            .iter()
            .map(|e| audit_event(e, Audience::of(&caller)))
            .collect(),
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
    if let (Some(from), Some(to)) = (filter.created_from, filter.created_to)
        && from >= to
    {
        return Err(ApiError::bad_request(
            "invalid-range",
            "created_from must be before created_to",
        ));
    }
    page(
        &caller,
        state,
        &filter,
        limit.unwrap_or(50).min(MAX_PAGE),
        cursor,
    )
    .await
}

/// One page of `filter`'s orders, newest first, as `caller` may see them.
pub(super) async fn page(
    caller: &Caller,
    state: &AppState,
    filter: &ListFilter,
    limit: u32,
    cursor: Option<String>,
) -> Result<Json<DeliveryOrderPage>, ApiError> {
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
        .list(filter, limit.min(MAX_PAGE), after)
        .await
        .map_err(read_failed)?;
    Ok(Json(DeliveryOrderPage {
        items: records
            .iter()
            // The filter already says whose orders these are; this keeps it so whatever the filter.
            .filter(|o| caller.may_see((&o.order).into()))
            .map(|o| delivery_order(o, Audience::of(caller)))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}
