//! The HTTP surface, one module per concern. Each is a poem-openapi API, so the OpenAPI
//! document is generated from the same code that serves the requests.

pub mod batches;
pub mod codec;
pub mod commands;
pub mod compat;
pub mod delivery_orders;
pub mod me;
pub mod operations;
pub mod partners;
pub mod queries;
pub mod system;
pub mod system_state;
pub mod tracking;
pub mod ws;

use poem_openapi::Tags;
use uuid::Uuid;

use crate::problem::ApiError;

#[derive(Tags)]
pub enum Tag {
    /// Creating delivery orders and sending them events.
    Commands,
    /// Reading delivery orders from the read model.
    Queries,
    /// Callbacks from delivery partners.
    Partners,
    /// Health, readiness, metrics.
    System,
    /// The delivery API of the original Redis event-sourcing app, kept for its clients.
    Compat,
}

/// Delivery order ids have one format: a lower-case hyphenated UUID. Anything else is refused
/// here, before it reaches SQL or Temporal.
pub fn delivery_order_id(text: &str) -> Result<Uuid, ApiError> {
    delivery_workflows::validation::check_delivery_order_id(text)
        .map_err(|e| ApiError::bad_request("invalid-id", e))?;
    Uuid::parse_str(text).map_err(|e| ApiError::bad_request("invalid-id", e.to_string()))
}

/// A caller's event id: a reference id outside the namespace of the events a delivery order
/// raises itself, so no caller can pre-empt a timer, an escalation or a partner refusal.
pub fn caller_event_id(text: &str) -> Result<(), ApiError> {
    delivery_workflows::validation::check_ref_id("event_id", text)
        .map_err(|e| ApiError::unprocessable("invalid-event-id", e))?;
    let reserved = delivery_workflows::machine::INTERNAL_EVENT_ID_PREFIX;
    if text.starts_with(reserved) {
        return Err(ApiError::unprocessable(
            "invalid-event-id",
            format!(
                "event ids starting with {reserved:?} are reserved for events the delivery order raises itself"
            ),
        ));
    }
    Ok(())
}

/// Other reference ids (orderings, payments, events): 1-128 of `A-Z a-z 0-9 . _ : -`.
pub fn ref_id(field: &str, text: &str) -> Result<(), ApiError> {
    delivery_workflows::validation::check_ref_id(field, text)
        .map_err(|e| ApiError::bad_request("invalid-id", e))
}
