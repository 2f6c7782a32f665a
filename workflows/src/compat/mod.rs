//! The delivery API of the original Redis event-sourcing delivery app, made durable: its rules
//! and JSON shapes ([`rules`]), one `CompatDeliveryWorkflow` per delivery ([`workflow`]) and the
//! typed client that starts it and sends it events ([`client`]).

pub mod client;
pub mod rules;
pub mod workflow;

pub use self::client::{CompatClient, CompatStarted};
pub use self::rules::{CompatDelivery, CompatEvent, CompatEventType, normalize_data};
pub use self::workflow::{
    COMPAT_WORKFLOW_TYPE, CompatCommand, CompatDeliveryWorkflow, CompatStart, compat_workflow_id,
};
