//! The activities the workflow calls, as typed contracts. The implementations live in the
//! `delivery-activities` crate (registered under the same names), so the workflow code never
//! depends on HTTP clients or databases.

use serde::{Deserialize, Serialize};
use temporalio_common::ActivityDefinition;

use crate::domain::{Address, Item};

/// Activity type name of [`RequestPickup`].
pub const REQUEST_PICKUP: &str = "request_pickup";
/// Activity type name of [`CancelPickup`].
pub const CANCEL_PICKUP: &str = "cancel_pickup";

/// Ask the delivery partner to collect the parcel. Idempotent on the delivery order id.
pub struct RequestPickup;

impl ActivityDefinition for RequestPickup {
    type Input = PickupRequest;
    type Output = PickupOutcome;
    fn name(&self) -> &str {
        REQUEST_PICKUP
    }
}

/// Withdraw a pickup the partner accepted (order cancelled or failed before pickup).
pub struct CancelPickup;

impl ActivityDefinition for CancelPickup {
    type Input = CancelPickupRequest;
    type Output = CancelPickupOutcome;
    fn name(&self) -> &str {
        CANCEL_PICKUP
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupRequest {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub shipping_address: Address,
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A business answer from the partner. Transport failures are activity errors (retried), never
/// an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PickupOutcome {
    Accepted { pickup_id: String },
    Rejected { code: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelPickupRequest {
    pub delivery_order_id: String,
    pub pickup_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelPickupOutcome {
    Cancelled,
    /// The partner had already finished the job; nothing left to cancel.
    AlreadyCompleted,
    /// The partner does not know the pickup (never created or already purged).
    Unknown,
}
