//! Delivery tracking for customers and operators: where the parcel is, who brings it, when it
//! arrives, and how far along the delivery is — from the read model.

use std::sync::Arc;

use delivery_read_model::ReadError;
use delivery_read_model::route::Route;
use delivery_workflows::activities::StageReached;
use delivery_workflows::{DELIVERY_ORDER_V1, State as DomainState, StateGraph};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use crate::auth::{BearerAuth, Parties, Role};
use crate::model::{DeliveryRoute, GeoPoint, Item, RoutePoint, State, timestamp};
use crate::problem::ApiError;
use crate::read::{Audience, delivery_order, mask_phone};
use crate::routes::{Tag, delivery_order_id};
use crate::state::AppState;

/// One stage of the delivery.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProgressStep {
    pub state: State,
    /// When the delivery reached this stage; absent while it has not.
    pub reached_at: Option<String>,
    /// True for the stage the delivery is in now.
    pub current: bool,
}

/// The driver, with the phone number masked.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Driver {
    pub name: Option<String>,
    /// Only the last three digits are shown.
    pub phone: Option<String>,
    pub vehicle: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Tracking {
    pub delivery_order_id: String,
    pub state: State,
    pub version: u64,
    /// The happy path (created, picked up, delivered, confirmed) with the time each stage was
    /// reached, then the state the delivery left it for, if it did.
    pub steps: Vec<ProgressStep>,
    pub partner_order_number: Option<String>,
    pub driver: Option<Driver>,
    pub location: Option<Any<Value>>,
    pub location_at: Option<String>,
    pub eta: Option<String>,
    /// Why the delivery failed, if it did.
    pub failure_reason: Option<String>,
    pub ordering_id: String,
    pub items: Vec<Item>,
    /// Where it goes: recipient name and city (the full address stays on the delivery order).
    pub recipient: String,
    pub city: String,
    pub replaces_id: Option<String>,
    pub replaced_by_id: Option<String>,
}

#[derive(Default)]
pub struct TrackingApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Queries")]
impl TrackingApi {
    /// Track a delivery (customers: their own; operators, admins: any).
    ///
    /// 404 for an unknown order, 400 while it has not been dispatched (still `CREATED`).
    #[oai(
        path = "/tracking/:id",
        method = "get",
        operation_id = "track_delivery"
    )]
    async fn track(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<Tracking>, ApiError> {
        let caller = auth.0;
        caller.require(&[Role::Customer, Role::Operator, Role::Admin])?;
        let uuid = delivery_order_id(&id.0)?;
        let failed = |e: ReadError| ApiError::unavailable("the read model is unavailable", &e);
        let order = state
            .read_model
            .order(uuid)
            .await
            .map_err(failed)?
            .filter(|o| caller.may_see((&o.order).into()))
            .ok_or_else(|| ApiError::delivery_order_not_found(&id.0))?;
        if order.order.state == DomainState::Created {
            return Err(ApiError::bad_request(
                "not-dispatched",
                "the delivery has not been dispatched yet: the partner has not picked it up",
            ));
        }
        let audience = Audience::of(&caller);
        // The stages travel in the order's document; an order last projected before they did
        // has them only in its audit trail, read with the order from one snapshot.
        let (order, stages) = match order.order.stages.clone() {
            Some(stages) => (order, stages),
            None => {
                let (order, trail) = state
                    .read_model
                    .order_with_trail(uuid)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| ApiError::delivery_order_not_found(&id.0))?;
                let times: Vec<String> = trail.iter().map(|e| timestamp(&e.occurred_at)).collect();
                let stages = StageReached::first_entries(
                    trail
                        .iter()
                        .zip(&times)
                        .map(|(e, at)| (e.from_state, e.to_state, at.as_str())),
                );
                (order, stages)
            }
        };
        let record = delivery_order(&order, audience);
        Ok(Json(Tracking {
            steps: steps(order.order.state, &record.created_at, &stages),
            delivery_order_id: record.delivery_order_id,
            state: record.state,
            version: record.version,
            partner_order_number: record.partner_order_number,
            driver: order.order.driver.as_ref().map(driver),
            location: record.location,
            location_at: record.location_at,
            eta: record.eta,
            failure_reason: order.order.failure_reason.map(|r| r.as_str().to_owned()),
            ordering_id: record.ordering_id,
            items: record.items,
            recipient: record.shipping_address.name,
            city: record.shipping_address.city,
            replaces_id: record.replaces_id,
            replaced_by_id: record.replaced_by_id,
        }))
    }

    /// The route of a delivery (customers: their own; operators, admins: any): the partner's
    /// location pings in time order (the latest is the current position; at most the latest
    /// 900, none once the order ended) and the destination as the partner geocoded it.
    #[oai(
        path = "/tracking/:id/route",
        method = "get",
        operation_id = "get_delivery_route"
    )]
    async fn route(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<DeliveryRoute>, ApiError> {
        let caller = auth.0;
        caller.require(&[Role::Customer, Role::Operator, Role::Admin])?;
        let uuid = delivery_order_id(&id.0)?;
        let route = state
            .read_model
            .route(uuid)
            .await
            .map_err(|e| ApiError::unavailable("the read model is unavailable", &e))?
            .filter(|r| {
                caller.may_see(Parties {
                    customer_id: &r.customer_id,
                    partner_id: r.partner_id.as_deref(),
                })
            })
            .ok_or_else(|| ApiError::delivery_order_not_found(&id.0))?;
        Ok(Json(route_document(&id.0, route)?))
    }
}

/// The route as the API shows it.
fn route_document(id: &str, route: Route) -> Result<DeliveryRoute, ApiError> {
    let state = serde_json::from_value::<DomainState>(Value::String(route.state.clone()))
        .map_err(|e| ApiError::unavailable("the read model holds an unknown state", &e))?;
    let points: Vec<RoutePoint> = route
        .points
        .iter()
        .map(|p| RoutePoint {
            lat: p.lat,
            lon: p.lon,
            at: timestamp(&p.at),
            accuracy_m: p.accuracy_m,
        })
        .collect();
    let coordinate = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
    Ok(DeliveryRoute {
        delivery_order_id: id.to_owned(),
        state: state.into(),
        current: points.last().cloned(),
        points,
        destination: route.destination.as_ref().and_then(|d| {
            Some(GeoPoint {
                lat: coordinate(d, "lat")?,
                lon: coordinate(d, "lon")?,
            })
        }),
    })
}

/// The happy path with the time each stage was reached, then the states off it the delivery
/// entered, in order. `stages` are the states entered after creation, each with its time.
fn steps(current: DomainState, created_at: &str, stages: &[StageReached]) -> Vec<ProgressStep> {
    let graph: &StateGraph = &DELIVERY_ORDER_V1;
    let reached = |state: DomainState| -> Option<String> {
        if state == graph.initial {
            return Some(created_at.to_owned());
        }
        stages
            .iter()
            .find(|s| s.state == state)
            .map(|s| s.reached_at.clone())
    };
    let mut steps: Vec<ProgressStep> = graph
        .happy_path
        .iter()
        .map(|s| ProgressStep {
            state: (*s).into(),
            reached_at: reached(*s),
            current: *s == current,
        })
        .collect();
    if !graph.happy_path.contains(&current) {
        steps.extend(
            stages
                .iter()
                .filter(|s| !graph.happy_path.contains(&s.state))
                .map(|s| ProgressStep {
                    state: s.state.into(),
                    reached_at: Some(s.reached_at.clone()),
                    current: s.state == current,
                }),
        );
    }
    steps
}

/// The driver as the partner reported it, phone masked.
fn driver(value: &Value) -> Driver {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    Driver {
        name: text("name"),
        phone: text("phone").map(|p| mask_phone(&p)),
        vehicle: text("vehicle"),
    }
}
