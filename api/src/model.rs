//! The gateway's request and response documents. They mirror the domain types of
//! `delivery-workflows` with OpenAPI schemas (formats, bounds) so the spec documents exactly
//! what is accepted; conversions are exhaustive matches, so the two cannot drift apart.

use chrono::{DateTime, SecondsFormat, Utc};
use delivery_workflows::{
    Address as DomainAddress, DisputeReason as DomainDisputeReason, EventType as DomainEventType,
    FailureReason as DomainFailureReason, Item as DomainItem, ItemFormat as DomainItemFormat,
    State as DomainState,
};
use poem_openapi::types::Any;
use poem_openapi::{Enum, Object};

use crate::auth::Role;
pub use crate::ref_id::RefId;
use serde_json::Value;

macro_rules! mirror_enum {
    ($(#[$meta:meta])* $name:ident <=> $domain:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
        #[oai(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl From<$domain> for $name {
            fn from(value: $domain) -> Self {
                match value { $($domain::$variant => Self::$variant),+ }
            }
        }

        impl From<$name> for $domain {
            fn from(value: $name) -> Self {
                match value { $($name::$variant => $domain::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// States of the delivery-order graph.
    State <=> DomainState {
        Created, PickedUp, Delivered, DeliveryConfirmed, DeliveryFailed, PendingByOperator,
        Reshipped, Cancelled,
    }
);

mirror_enum!(
    /// Events of the delivery-order graph.
    EventType <=> DomainEventType {
        PickedUp, Delivered, DeliveryFailed, Confirmed, Disputed, Cancel, OperatorReship,
        OperatorCancel, OperatorConfirmDelivered, EscalateToOperator,
    }
);

mirror_enum!(
    FailureReason <=> DomainFailureReason {
        WrongAddress, RecipientUnavailable, RefusedByRecipient, PackageDamaged, PackageLost,
        PartnerRejected, PickupTimeout, DeliveryTimeout, Other,
    }
);

mirror_enum!(
    DisputeReason <=> DomainDisputeReason { NotReceived, Damaged, Incomplete }
);

mirror_enum!(
    /// `PHYSICAL` items are delivered; `EBOOK` items are not.
    ItemFormat <=> DomainItemFormat { Physical, Ebook }
);

/// A postal address.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct Address {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub line1: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub line2: Option<String>,
    #[oai(validator(min_length = 1, max_length = 100))]
    pub city: String,
    #[oai(validator(min_length = 1, max_length = 20))]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    #[oai(validator(pattern = "^[A-Z]{2}$"))]
    pub country: String,
    #[oai(validator(min_length = 1, max_length = 40))]
    pub phone: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct Item {
    pub sku: RefId,
    #[oai(validator(min_length = 1, max_length = 300))]
    pub title: String,
    pub format: ItemFormat,
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub quantity: u32,
}

impl From<Address> for DomainAddress {
    fn from(a: Address) -> Self {
        DomainAddress {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
        }
    }
}

impl From<DomainAddress> for Address {
    fn from(a: DomainAddress) -> Self {
        Address {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
        }
    }
}

impl From<Item> for DomainItem {
    fn from(i: Item) -> Self {
        DomainItem {
            sku: i.sku.into(),
            title: i.title,
            format: i.format.into(),
            quantity: i.quantity,
        }
    }
}

impl From<DomainItem> for Item {
    fn from(i: DomainItem) -> Self {
        Item {
            sku: RefId::stored(i.sku),
            title: i.title,
            format: i.format.into(),
            quantity: i.quantity,
        }
    }
}

/// `PaymentSucceeded`, as the payment service sends it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct PaymentSucceeded {
    pub event_id: RefId,
    pub payment_id: RefId,
    pub ordering_id: RefId,
    pub customer_id: RefId,
    #[oai(validator(min_items = 1, max_items = 100))]
    pub items: Vec<Item>,
    pub shipping_address: Address,
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
    /// Delivery budget in minor currency units (cents).
    #[oai(validator(maximum(value = "1000000000000")))]
    pub budget: Option<u64>,
}

/// A delivery order created by hand (operators, order management): the payment fields less
/// `event_id`. (Spelled out again rather than flattened: poem-openapi cannot flatten into an
/// object that refuses unknown fields.) `payment_id` is optional; when given, creation is idempotent on it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct ManualDeliveryOrder {
    pub payment_id: Option<RefId>,
    pub ordering_id: RefId,
    pub customer_id: RefId,
    #[oai(validator(min_items = 1, max_items = 100))]
    pub items: Vec<Item>,
    pub shipping_address: Address,
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
    #[oai(validator(maximum(value = "1000000000000")))]
    pub budget: Option<u64>,
}

/// What creation answers (the same body for a repeated `payment_id`).
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryOrderCreated {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    pub payment_id: Option<String>,
    /// `CREATED`: every delivery order starts there.
    pub state: State,
    /// 0 at creation; read with `?min_version=0` to wait until the read model holds it.
    pub version: u64,
    /// The Temporal workflow id (search it in Temporal Web UI).
    pub workflow_id: String,
    /// Where to read the delivery order.
    pub href: String,
}

/// A payment without physical items: nothing to deliver.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NoDeliveryRequired {
    pub delivery_required: bool,
    pub payment_id: String,
    pub ordering_id: String,
}

/// An event for one delivery order.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct EventCommand {
    #[oai(rename = "type")]
    pub event_type: EventType,
    /// The event's fields, as the state graph defines them (`resources/delivery-order.v1.yaml`).
    pub data: Option<Any<Value>>,
    /// Makes retries idempotent; the `Idempotency-Key` header does the same. Ids starting with
    /// `wf:` are reserved for events the delivery order raises itself.
    pub event_id: Option<RefId>,
    /// The role the event is sent as, when the token holds several that may send it (default:
    /// the first of them). A customer event is only accepted on the customer's own orders.
    pub sent_as: Option<Role>,
}

/// What an applied (or already applied) event answers.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventApplied {
    pub delivery_order_id: String,
    pub state: State,
    pub version: u64,
    /// True when this event id moved the order. A retry with the same content gets the original
    /// answer: while Temporal still holds it, that very answer; later `applied: false` with the
    /// state and version the event produced. Either way nothing is applied twice.
    pub applied: bool,
    pub event_id: String,
    pub allowed_events: Vec<EventType>,
}

/// A delivery order as the read model holds it: the API's form of the status document
/// (`ProjectedOrder` in `delivery-workflows`, with the latest location), built by
/// `read::delivery_order`, which adds the events a caller may send, masks the driver's phone for
/// those who may not see it and shows every time one way. Kept apart from `ProjectedOrder` on
/// purpose: this one carries the OpenAPI schema and the API's enums, which the workflows crate
/// does not depend on.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryOrder {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    pub payment_id: Option<String>,
    pub state: State,
    pub version: u64,
    /// Events that may be sent now.
    pub allowed_events: Vec<EventType>,
    pub partner_order_number: Option<String>,
    pub failure_reason: Option<FailureReason>,
    pub failure_detail: Option<String>,
    /// The delivery order this one replaces (after a failed delivery).
    pub replaces_id: Option<String>,
    /// The delivery order that replaced this one.
    pub replaced_by_id: Option<String>,
    pub shipping_address: Address,
    pub items: Vec<Item>,
    pub notes: Option<String>,
    pub budget: Option<u64>,
    pub driver: Option<Any<Value>>,
    /// Last location reported by the partner.
    pub location: Option<Any<Value>>,
    pub location_at: Option<String>,
    pub eta: Option<String>,
    pub graph_version: u32,
    pub created_at: String,
    pub updated_at: String,
    /// The deadline the order's workflow has armed in its state (pickup, delivery or
    /// auto-confirm); absent in the other states.
    pub next_deadline: Option<Deadline>,
}

/// An actor: who sent an event.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Actor {
    pub kind: String,
    pub id: Option<String>,
}

/// What an audit entry records: the order's creation (`CREATE`, always the first entry, seq 0)
/// or an event of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditEntryType {
    Create,
    PickedUp,
    Delivered,
    DeliveryFailed,
    Confirmed,
    Disputed,
    Cancel,
    OperatorReship,
    OperatorCancel,
    OperatorConfirmDelivered,
    EscalateToOperator,
}

impl From<DomainEventType> for AuditEntryType {
    fn from(value: DomainEventType) -> Self {
        match value {
            DomainEventType::PickedUp => Self::PickedUp,
            DomainEventType::Delivered => Self::Delivered,
            DomainEventType::DeliveryFailed => Self::DeliveryFailed,
            DomainEventType::Confirmed => Self::Confirmed,
            DomainEventType::Disputed => Self::Disputed,
            DomainEventType::Cancel => Self::Cancel,
            DomainEventType::OperatorReship => Self::OperatorReship,
            DomainEventType::OperatorCancel => Self::OperatorCancel,
            DomainEventType::OperatorConfirmDelivered => Self::OperatorConfirmDelivered,
            DomainEventType::EscalateToOperator => Self::EscalateToOperator,
        }
    }
}

/// One entry of a delivery order's audit trail. The first (seq 0, type `CREATE`) says who
/// created the order and from which payment (`data.payment_id`); it has no `from_state`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEvent {
    pub seq: u64,
    pub event_id: String,
    #[oai(rename = "type")]
    pub event_type: AuditEntryType,
    pub from_state: Option<State>,
    pub to_state: State,
    pub data: Any<Value>,
    pub actor: Actor,
    pub correlation_id: Option<String>,
    pub occurred_at: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditTrail {
    pub delivery_order_id: String,
    pub events: Vec<AuditEvent>,
}

/// One page of a list.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryOrderPage {
    pub items: Vec<DeliveryOrder>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrderingDeliveries {
    pub ordering_id: String,
    /// Oldest first.
    pub delivery_orders: Vec<DeliveryOrder>,
}

/// Why an order waits for an operator.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QueueReason {
    /// `DELIVERY_FAILED` or `DISPUTED`.
    pub kind: String,
    /// The failure or dispute reason code.
    pub code: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QueueEntry {
    pub delivery_order: DeliveryOrder,
    pub reason: QueueReason,
    /// When the order entered the queue.
    pub waiting_since: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OperatorQueue {
    /// Oldest first.
    pub entries: Vec<QueueEntry>,
}

/// What a partner webhook answers.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookAccepted {
    pub delivery_order_id: String,
    /// `applied`, `duplicate` or `tracking_updated`.
    pub outcome: String,
    pub state: Option<State>,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Health {
    pub status: String,
}

/// What the web UI needs to know about this deployment.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UiConfig {
    /// A link to one delivery order's workflow in Temporal Web UI, with `{delivery_order_id}`
    /// to fill in; absent when the gateway was not told where that UI is.
    pub workflow_url_template: Option<String>,
    /// The route map's raster tiles (`{z}`, `{x}`, `{y}` to fill in); absent when the gateway
    /// has none (`MAP_TILE_URL`), and the map is drawn on a blank background.
    pub map_tile_url: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Readiness {
    /// `ready`, or `degraded` while Temporal, PostgreSQL or Redis is down (`impaired` says what
    /// answers 503 meanwhile; the gateway stays in the load balancer).
    pub status: String,
    /// What does not work while a dependency is down, one line each.
    pub impaired: Vec<String>,
    pub checks: Any<serde_json::Map<String, Value>>,
}

/// Timestamps as the API shows them: RFC 3339, UTC, milliseconds.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The deadline an order's workflow has armed in its current state.
#[derive(Debug, Clone, Object)]
pub struct Deadline {
    /// `pickup_deadline` (CREATED), `delivery_deadline` (PICKED_UP) or `auto_confirm` (DELIVERED).
    pub timer: String,
    /// When the timer fires unless an event comes first.
    pub due_at: String,
}

/// An order whose deadline is near.
#[derive(Debug, Clone, Object)]
pub struct AtRiskEntry {
    pub delivery_order: DeliveryOrder,
    pub deadline: Deadline,
    /// Whole seconds until the deadline; negative once it passed while its timer has not fired
    /// yet (a batch holding the order, a worker catching up).
    pub seconds_left: i64,
}

#[derive(Debug, Clone, Object)]
pub struct AtRiskList {
    /// The window asked for, in seconds.
    pub within_seconds: u64,
    /// Soonest deadline first, at most `limit` of them.
    pub entries: Vec<AtRiskEntry>,
    /// How many orders have a deadline within the window in all (more than `entries` holds when
    /// the list was cut at `limit`).
    pub total: u64,
}

/// How many orders entered one state in one hour.
#[derive(Debug, Clone, Object)]
pub struct HourCount {
    /// The start of the hour.
    pub hour: String,
    pub state: State,
    pub count: u64,
}

/// How long orders stayed in one stage (over the stays that ended in the last 24 h).
#[derive(Debug, Clone, Object)]
pub struct StageDuration {
    pub stage: State,
    pub count: u64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
}

/// How many deliveries failed for one reason in the last 24 h.
#[derive(Debug, Clone, Object)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
}

/// The operations charts of the last 24 hours, from the read model and its audit trail.
#[derive(Debug, Clone, Object)]
pub struct OperationsCharts {
    /// When these figures were computed (they are shared by the gateways for 60 s).
    pub generated_at: String,
    /// The 24 hours covered, oldest first (starts of the hours; the current hour last).
    pub hours: Vec<String>,
    /// Orders entering each state, per hour (hours and states without any are left out).
    pub entered: Vec<HourCount>,
    pub stage_durations: Vec<StageDuration>,
    /// Most frequent first.
    pub failures_by_reason: Vec<ReasonCount>,
}

/// A point on the map, in degrees.
#[derive(Debug, Clone, Object)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// One location ping of the route.
#[derive(Debug, Clone, Object)]
pub struct RoutePoint {
    pub lat: f64,
    pub lon: f64,
    pub at: String,
    pub accuracy_m: Option<f64>,
}

/// Where the parcel went: the partner's location pings in time order (the latest is the
/// current position), and the destination as the partner geocoded it.
#[derive(Debug, Clone, Object)]
pub struct DeliveryRoute {
    pub delivery_order_id: String,
    pub state: State,
    /// Oldest first; at most the latest 900 pings, none once the order ended.
    pub points: Vec<RoutePoint>,
    /// The latest ping, if any.
    pub current: Option<RoutePoint>,
    /// Absent until the partner sends it with a ping.
    pub destination: Option<GeoPoint>,
}
