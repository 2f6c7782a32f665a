//! Deterministic core of the delivery-order service: the versioned state graph, the domain types,
//! the pure state machine and the `DeliveryOrderWorkflow` Temporal workflow. No I/O happens here;
//! activities are referenced through the typed contracts in [`activities`].

pub mod activities;
pub mod batch_workflow;
pub mod compat;
pub mod compat_workflow;
pub mod diagrams;
pub mod domain;
pub mod graph;
pub mod machine;
pub mod refusal;
pub mod signals;
pub mod validation;
pub mod workflow;

pub use domain::*;
pub use graph::{DELIVERY_ORDER_V1, StateGraph};
pub use machine::{DeliveryOrder, Rejection};
pub use workflow::{
    DeliveryOrderView, DeliveryOrderWorkflow, StartInput, TASK_QUEUE, WORKFLOW_TYPE, workflow_id,
};
