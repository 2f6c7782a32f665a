//! The simulator's memory: pickups, scripted scenarios, pending faults and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Knobs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PickupStatus {
    Accepted,
    PickedUp,
    Delivered,
    Failed,
    Cancelled,
}

impl PickupStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pickup {
    pub pickup_id: String,
    pub delivery_order_id: String,
    pub status: PickupStatus,
    pub created_at: String,
    pub partner_order_number: Option<String>,
    pub driver: Option<Value>,
    pub last_location: Option<Value>,
    pub eta: Option<String>,
    pub callbacks_sent: u64,
}

/// How one delivery should go (`PUT /_sim/scenarios/{delivery_order_id}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub outcome: Outcome,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Deliver,
    Fail,
    Reject,
    Silent,
    PickupOnly,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests_total: u64,
    pub pickups_created: u64,
    pub pickup_requests_by_key: BTreeMap<String, u64>,
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
    pub faults_injected: u64,
}

pub struct Inner {
    pub knobs: Knobs,
    pub pickups: HashMap<String, Pickup>,
    pub pickup_by_key: HashMap<String, String>,
    pub scenarios: HashMap<String, Scenario>,
    pub fail_next: u32,
    pub fail_status: u16,
    pub stats: Stats,
}

pub struct SimState {
    pub inner: Mutex<Inner>,
}

impl SimState {
    pub fn new(knobs: Knobs) -> Self {
        Self {
            inner: Mutex::new(Inner {
                knobs,
                pickups: HashMap::new(),
                pickup_by_key: HashMap::new(),
                scenarios: HashMap::new(),
                fail_next: 0,
                fail_status: 503,
                stats: Stats::default(),
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates a pickup unless it reached a final status; returns whether it did.
    pub fn update_pickup(&self, pickup_id: &str, change: impl FnOnce(&mut Pickup)) -> bool {
        let mut inner = self.lock();
        match inner.pickups.get_mut(pickup_id) {
            Some(p) if !p.status.is_final() => {
                change(p);
                true
            }
            _ => false,
        }
    }
}
