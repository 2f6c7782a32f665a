//! Activities of the delivery-order service. Everything that touches the outside world runs here,
//! never in workflow code; what they write to the read model, `delivery-read-model` writes.

pub mod batches;
pub mod breaker;
pub mod compat;
pub mod metrics;
pub mod partner;
pub mod partner_activities;
pub mod read_model;
pub mod replacement;

pub use batches::BatchActivities;
pub use breaker::{BreakerConfig, CircuitBreaker};
pub use compat::CompatActivities;
pub use metrics::PartnerMetrics;
pub use partner::{PartnerClient, PartnerConfig, PartnerError};
pub use partner_activities::PartnerActivities;
pub use read_model::ReadModelActivities;
pub use replacement::ReplacementActivities;
