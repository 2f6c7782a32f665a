//! The read model's rows as the API shows them. The rows themselves, and every query, belong to
//! `delivery-read-model`.

use chrono::{DateTime, Utc};
use delivery_read_model::StoredOrder;
use delivery_read_model::reader::{AuditEntry, AuditEntryType};
use delivery_workflows::{DELIVERY_ORDER_V1, State, StateGraph};
use poem_openapi::types::Any;

use crate::model::{self, timestamp};

/// The order as `GET /delivery-orders/{id}` answers it.
pub fn delivery_order(stored: &StoredOrder) -> model::DeliveryOrder {
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
        driver: o.driver.clone().map(Any),
        location: stored.location.clone().map(Any),
        location_at: stored.location_at.as_ref().map(timestamp),
        eta: o.eta.as_deref().map(same_format),
        graph_version: o.graph_version,
        created_at: same_format(&o.created_at),
        updated_at: same_format(&o.updated_at),
    }
}

/// One audit entry as `GET /delivery-orders/{id}/events` answers it.
pub fn audit_event(entry: &AuditEntry) -> model::AuditEvent {
    model::AuditEvent {
        seq: entry.seq,
        event_id: entry.event_id.clone(),
        event_type: match entry.entry_type {
            AuditEntryType::Create => model::AuditEntryType::Create,
            AuditEntryType::Event(event) => event.into(),
        },
        from_state: entry.from_state.map(Into::into),
        to_state: entry.to_state.into(),
        data: Any(entry.data.clone()),
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

/// Timestamps come from the workflow's clock (the cache) or from PostgreSQL, which renders
/// them otherwise; the API shows them one way.
fn same_format(text: &str) -> String {
    text.parse::<DateTime<Utc>>()
        .map_or_else(|_| text.to_owned(), |t| timestamp(&t))
}
