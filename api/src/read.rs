//! The read model's rows as the API shows them. The rows themselves, and every query, belong to
//! `delivery-read-model`.

use chrono::{DateTime, Utc};
use delivery_read_model::StoredOrder;
use delivery_read_model::reader::{AuditEntry, AuditEntryType};
use delivery_workflows::{DELIVERY_ORDER_V1, State, StateGraph};
use poem_openapi::types::Any;

use crate::auth::{Caller, Role};
use crate::model::{self, timestamp};

/// Who reads: only operators and admins see a driver's phone number in full; everyone else
/// (customers, partners, services, every live socket) sees it masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Staff,
    Others,
}

impl Audience {
    pub fn of(caller: &Caller) -> Self {
        if caller.has_any(&[Role::Operator, Role::Admin]) {
            Audience::Staff
        } else {
            Audience::Others
        }
    }

    /// Event data as this audience may see it: any `driver.phone` in it masked for others.
    fn data(self, value: &serde_json::Value) -> serde_json::Value {
        let mut value = value.clone();
        if self == Audience::Others {
            mask_driver_phone(&mut value);
        }
        value
    }

    /// The order's driver as this audience may see it.
    fn driver(self, driver: &serde_json::Value) -> serde_json::Value {
        let mut driver = driver.clone();
        if self == Audience::Others {
            mask_phone_of(&mut driver);
        }
        driver
    }
}

/// Masks `phone` in `driver` objects wherever they sit in an event's data (`data.driver`).
fn mask_driver_phone(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "driver" {
                    mask_phone_of(inner);
                }
                mask_driver_phone(inner);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_driver_phone),
        _ => {}
    }
}

/// Keeps the last three digits: `+44 7700 900123` → `*** *** **123`.
pub fn mask_phone(phone: &str) -> String {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    phone
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if digits - seen < 3 { c } else { '*' }
            } else if c == '+' {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// Masks the `phone` of one driver object.
fn mask_phone_of(driver: &mut serde_json::Value) {
    if let Some(phone) = driver.get_mut("phone")
        && let Some(text) = phone.as_str()
    {
        *phone = serde_json::Value::String(mask_phone(text));
    }
}

/// The order as `GET /delivery-orders/{id}` answers it to `audience`.
pub fn delivery_order(stored: &StoredOrder, audience: Audience) -> model::DeliveryOrder {
    let o = &stored.order;
    model::DeliveryOrder {
        delivery_order_id: o.delivery_order_id.clone(),
        ordering_id: o.ordering_id.clone(),
        customer_id: o.customer_id.clone(),
        payment_id: o.payment_id.clone(),
        state: o.state.into(),
        version: o.version,
        allowed_events: external_events(&DELIVERY_ORDER_V1, o.state),
        partner_order_number: o.partner_order_number.clone(),
        failure_reason: o.failure_reason.map(Into::into),
        failure_detail: o.failure_detail.clone(),
        replaces_id: o.replaces_id.clone(),
        replaced_by_id: o.replaced_by_id.clone(),
        shipping_address: o.shipping_address.clone().into(),
        items: o.items.iter().cloned().map(Into::into).collect(),
        notes: o.notes.clone(),
        budget: o.budget,
        driver: o.driver.as_ref().map(|d| Any(audience.driver(d))),
        location: stored.location.clone().map(Any),
        location_at: stored.location_at.as_ref().map(timestamp),
        eta: o.eta.as_deref().map(same_format),
        graph_version: o.graph_version,
        created_at: same_format(&o.created_at),
        updated_at: same_format(&o.updated_at),
        next_deadline: o.next_deadline.as_ref().map(|d| model::Deadline {
            timer: d.timer.clone(),
            due_at: same_format(&d.due_at),
        }),
    }
}

/// One audit entry as `GET /delivery-orders/{id}/events` answers it to `audience`.
pub fn audit_event(entry: &AuditEntry, audience: Audience) -> model::AuditEvent {
    model::AuditEvent {
        seq: entry.seq,
        event_id: entry.event_id.clone(),
        event_type: match entry.entry_type {
            AuditEntryType::Create => model::AuditEntryType::Create,
            AuditEntryType::Event(event) => event.into(),
        },
        from_state: entry.from_state.map(Into::into),
        to_state: entry.to_state.into(),
        data: Any(audience.data(&entry.data)),
        actor: model::Actor {
            kind: entry.actor_kind.clone(),
            id: entry.actor_id.clone(),
        },
        correlation_id: entry.correlation_id.clone(),
        occurred_at: timestamp(&entry.occurred_at),
    }
}

/// The events a caller may send in `state` (the workflow's own events left out).
pub fn external_events(graph: &StateGraph, state: State) -> Vec<model::EventType> {
    graph
        .external_events(state)
        .into_iter()
        .map(Into::into)
        .collect()
}

/// The API shows every timestamp one way. The workflows' own times already read so from the
/// cache and from PostgreSQL (`ORDER_JSON`); the partner's `eta` is the partner's text in the
/// cache, in any RFC 3339 form.
fn same_format(text: &str) -> String {
    text.parse::<DateTime<Utc>>()
        .map_or_else(|_| text.to_owned(), |t| timestamp(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_keep_only_their_last_three_digits() {
        assert_eq!(mask_phone("+44 7700 900123"), "*** **** ***123");
        assert_eq!(mask_phone("12"), "12");
        assert_eq!(mask_phone(""), "");
    }

    #[test]
    fn only_staff_see_a_drivers_phone_in_full() {
        let data = serde_json::json!({
            "partner_order_number": "PN-1",
            "driver": {"name": "Kim", "phone": "+44 7700 900123"},
        });
        assert_eq!(Audience::Staff.data(&data), data);
        let masked = Audience::Others.data(&data);
        assert_eq!(masked["driver"]["phone"], "*** **** ***123");
        assert_eq!(masked["driver"]["name"], "Kim");
        assert_eq!(
            Audience::Others.driver(&data["driver"])["phone"],
            "*** **** ***123"
        );
        let operator = Caller {
            sub: "olga".into(),
            roles: vec![Role::Operator],
        };
        let customer = Caller {
            sub: "c-1".into(),
            roles: vec![Role::Customer, Role::PaymentService],
        };
        assert_eq!(Audience::of(&operator), Audience::Staff);
        assert_eq!(Audience::of(&customer), Audience::Others);
    }
}
