//! Deterministic core of the delivery-order service: the versioned state graph, the domain types,
//! the pure state machine and batch lock, the Temporal workflows (`DeliveryOrderWorkflow`, the
//! compatible API's and the batch coordinator's) and their typed clients. No I/O happens in the
//! workflows; activities are referenced through the typed contracts in [`activities`].

pub mod activities;
pub mod batch;
pub mod client;
mod clock;
pub mod cloudformation;
pub mod compat;
pub mod delivery_order;
pub mod diagrams;
pub mod domain;
pub mod duration_text;
pub mod graph;
pub mod machine;
pub mod projection;
pub mod refusal;
pub mod signals;
pub mod validation;

pub use client::{ClientError, TemporalTarget};
pub use delivery_order::client::{DeliveryOrderClient, ReplacementStart};
pub use delivery_order::{
    DeliveryOrderView, DeliveryOrderWorkflow, StartInput, TASK_QUEUE, WORKFLOW_TYPE, workflow_id,
};
pub use domain::*;
pub use graph::{DELIVERY_ORDER_V1, StateGraph};
pub use machine::{DeliveryOrder, Rejection};
pub use refusal::{Refusal, RejectionCode};
