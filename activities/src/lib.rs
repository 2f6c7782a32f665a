//! Activities of the delivery-order service. Everything that touches the outside world runs here,
//! never in workflow code.

pub mod audit;
pub mod batches;
pub mod breaker;
pub mod compat;
pub mod metrics;
pub mod outbox;
pub mod partner;
pub mod partner_activities;
pub mod read_model;
pub mod relay;
pub mod replacement;

pub use batches::BatchActivities;
pub use breaker::{BreakerConfig, CircuitBreaker};
pub use compat::CompatActivities;
pub use metrics::{PartnerMetrics, ProjectionMetrics};
pub use outbox::RedisKeys;
pub use partner::{PartnerClient, PartnerConfig, PartnerError};
pub use partner_activities::PartnerActivities;
pub use read_model::{MIGRATOR, ReadModelActivities};
pub use relay::{OutboxRelay, RelaySettings};
pub use replacement::ReplacementActivities;
