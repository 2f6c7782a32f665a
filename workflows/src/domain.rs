//! Domain types shared by the workflow, the activities, the worker and clients.
//!
//! Wire format: plain JSON, snake_case fields, SCREAMING_SNAKE_CASE enum values, so other-language
//! services and the `temporal` CLI can drive workflows without this crate.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration_text;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $case:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = $case)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// States of the delivery-order graph.
    State, "SCREAMING_SNAKE_CASE" {
        Created => "CREATED",
        PickedUp => "PICKED_UP",
        Delivered => "DELIVERED",
        DeliveryConfirmed => "DELIVERY_CONFIRMED",
        DeliveryFailed => "DELIVERY_FAILED",
        PendingByOperator => "PENDING_BY_OPERATOR",
        Reshipped => "RESHIPPED",
        Cancelled => "CANCELLED",
    }
);

wire_enum!(
    /// Events that move a delivery order through the graph.
    EventType, "SCREAMING_SNAKE_CASE" {
        PickedUp => "PICKED_UP",
        Delivered => "DELIVERED",
        DeliveryFailed => "DELIVERY_FAILED",
        Confirmed => "CONFIRMED",
        Disputed => "DISPUTED",
        Cancel => "CANCEL",
        OperatorReship => "OPERATOR_RESHIP",
        OperatorCancel => "OPERATOR_CANCEL",
        OperatorConfirmDelivered => "OPERATOR_CONFIRM_DELIVERED",
        EscalateToOperator => "ESCALATE_TO_OPERATOR",
    }
);

wire_enum!(
    /// Why a delivery failed. `DELIVERY_FAILED` always carries one.
    FailureReason, "SCREAMING_SNAKE_CASE" {
        WrongAddress => "WRONG_ADDRESS",
        RecipientUnavailable => "RECIPIENT_UNAVAILABLE",
        RefusedByRecipient => "REFUSED_BY_RECIPIENT",
        PackageDamaged => "PACKAGE_DAMAGED",
        PackageLost => "PACKAGE_LOST",
        PartnerRejected => "PARTNER_REJECTED",
        PickupTimeout => "PICKUP_TIMEOUT",
        DeliveryTimeout => "DELIVERY_TIMEOUT",
        Other => "OTHER",
    }
);

wire_enum!(
    /// Why a customer disputes a delivery.
    DisputeReason, "SCREAMING_SNAKE_CASE" {
        NotReceived => "NOT_RECEIVED",
        Damaged => "DAMAGED",
        Incomplete => "INCOMPLETE",
    }
);

wire_enum!(
    /// Who sent an event. `system` is the workflow itself and is never accepted from outside.
    ActorKind, "snake_case" {
        Partner => "partner",
        Customer => "customer",
        Operator => "operator",
        PaymentService => "payment_service",
        OrderManagement => "order_management",
        Admin => "admin",
        System => "system",
    }
);

wire_enum!(
    /// Physical items need a delivery; e-books do not.
    ItemFormat, "SCREAMING_SNAKE_CASE" {
        Physical => "PHYSICAL",
        Ebook => "EBOOK",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Actor {
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: Some(id.into()),
        }
    }

    pub fn system(id: &str) -> Self {
        Self::new(ActorKind::System, id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub sku: String,
    pub title: String,
    pub format: ItemFormat,
    pub quantity: u32,
}

/// Deadline overrides for one workflow (tests use seconds; production keeps the graph defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub pickup_deadline: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub delivery_deadline: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_confirm: Option<Duration>,
}

impl Deadlines {
    /// The override for a timer named in the graph, if any.
    pub fn get(&self, timer: &str) -> Option<Duration> {
        match timer {
            "pickup_deadline" => self.pickup_deadline,
            "delivery_deadline" => self.delivery_deadline,
            "auto_confirm" => self.auto_confirm,
            _ => None,
        }
    }
}

/// Start input of `DeliveryOrderWorkflow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryOrderInput {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub items: Vec<Item>,
    pub shipping_address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Delivery budget in minor currency units (cents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// The delivery order this one replaces (set on reshipment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_id: Option<String>,
    #[serde(default)]
    pub deadlines: Deadlines,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// The `apply_event` update argument: one event, as the gateway or another service sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(default)]
    pub data: Value,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The partner's pickup job a partner event is about; when given it must be the order's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_id: Option<String>,
}

/// What `apply_event` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub delivery_order_id: String,
    pub state: State,
    pub version: u64,
    /// False when the event id had been applied before (an idempotent retry).
    pub applied: bool,
    pub allowed_events: Vec<EventType>,
}

/// One event as applied, in order: the workflow's own audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedEvent {
    pub seq: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub from_state: State,
    pub to_state: State,
    pub data: Value,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub occurred_at: String,
}

/// A signal or event that was ignored, kept so operators can see what was refused and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedEvent {
    pub signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub event_type: Option<EventType>,
    pub reason: String,
    pub received_at: String,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::duration_text;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| duration_text::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&duration_text::format(*d)),
            None => s.serialize_none(),
        }
    }
}
