//! Every Redis name of the read model, under one prefix (`REDIS_KEY_PREFIX`; tests isolate
//! themselves with a unique one). Nothing outside this crate builds a Redis key.

/// Redis key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    pub prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    /// The status cache of a delivery order.
    pub fn status(&self, delivery_order_id: &str) -> String {
        format!("{}delivery:{delivery_order_id}", self.prefix)
    }
    /// The stream of domain events for order management.
    pub fn stream(&self) -> String {
        format!("{}delivery-events", self.prefix)
    }
    /// Status of a delivery of the compatible API (`GET /deliveries/{pk}/status`).
    pub fn compat_status(&self, delivery_id: &str) -> String {
        format!("{}compat-delivery:{delivery_id}", self.prefix)
    }
    /// Latest tracking data (location) of a delivery order, written apart from its status.
    pub fn tracking(&self, delivery_order_id: &str) -> String {
        format!("{}delivery-tracking:{delivery_order_id}", self.prefix)
    }
    /// The live-update channel of every change.
    pub fn updates(&self) -> String {
        format!("{}delivery-updates", self.prefix)
    }
    /// The live-update channel of one delivery order.
    pub fn updates_of(&self, delivery_order_id: &str) -> String {
        format!("{}delivery-updates:{delivery_order_id}", self.prefix)
    }
    /// The key that remembers a published outbox row (it expires after the dedup TTL).
    pub fn dedup(&self, key: &str) -> String {
        format!("{}delivery-outbox:{key}", self.prefix)
    }
    /// The last computed `/api/state`, shared by the gateways.
    pub fn api_state(&self) -> String {
        format!("{}api-state", self.prefix)
    }
    /// The last computed operations charts, shared by the gateways.
    pub fn charts(&self) -> String {
        format!("{}operator-charts", self.prefix)
    }
}
