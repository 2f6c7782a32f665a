//! The activities the workflow calls, as typed contracts. The implementations live in the
//! `delivery-activities` crate (registered under the same names), so the workflow code never
//! depends on HTTP clients or databases.

use serde::{Deserialize, Serialize};
use temporalio_common::ActivityDefinition;

use crate::domain::{Actor, Address, AppliedEvent, FailureReason, Item, State};
use crate::machine::DeliveryOrder;

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
    Accepted {
        pickup_id: String,
        /// Which partner took the job (the worker's configured partner id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_id: Option<String>,
    },
    Rejected {
        code: String,
        message: String,
    },
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

/// Activity type name of [`StartReplacement`].
pub const START_REPLACEMENT: &str = "start_replacement";

/// Start the replacement delivery order of a reshipped one (the input is the replacement's).
/// Idempotent: the replacement's id derives from the reshipped order's, and a replacement
/// already started counts as done. A start the server refuses is an error, retried.
pub struct StartReplacement;

impl ActivityDefinition for StartReplacement {
    type Input = crate::domain::DeliveryOrderInput;
    type Output = ();
    fn name(&self) -> &str {
        START_REPLACEMENT
    }
}

/// Activity type name of [`ProjectEvents`].
pub const PROJECT_EVENTS: &str = "project_events";

/// Write the order's current row and its new audit events to the read model, in one
/// transaction, idempotently (replaying a projection changes nothing).
#[derive(Debug, Clone, Copy)]
pub struct ProjectEvents;

impl ActivityDefinition for ProjectEvents {
    type Input = Projection;
    type Output = ProjectionOutcome;
    fn name(&self) -> &str {
        PROJECT_EVENTS
    }
}

/// A delivery order at `version` as the read model holds it: its row in PostgreSQL (tracking
/// data apart) and, serialised, the status document in the Redis cache and on the live-update
/// channels. The projection writes it and the gateway reads it back as this one type, from
/// either store. A new field is added here, to [`Projection::of`], to the read model's
/// migration, row writer (`delivery_read_model::writer`) and `ORDER_JSON`
/// (`delivery_read_model::reader`, the PostgreSQL read, which the `read_model` suite compares
/// with the cached document field by field), and, if the API shows it, to the gateway's
/// `model::DeliveryOrder` and `read::delivery_order` (then `make web-types`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedOrder {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    /// The partner that took the pickup, from the first event a partner applied to the order:
    /// the only partner that may read it. Absent before that, and from documents written before
    /// it was projected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    pub payment_id: Option<String>,
    pub state: State,
    pub version: u64,
    pub partner_order_number: Option<String>,
    pub failure_reason: Option<FailureReason>,
    pub failure_detail: Option<String>,
    pub replaces_id: Option<String>,
    pub replaced_by_id: Option<String>,
    pub shipping_address: Address,
    pub items: Vec<Item>,
    pub notes: Option<String>,
    pub budget: Option<u64>,
    pub driver: Option<serde_json::Value>,
    /// RFC 3339, as every timestamp here (the workflow's clock; PostgreSQL's rendering on reads
    /// from the database).
    pub eta: Option<String>,
    pub graph_version: u32,
    pub created_at: String,
    pub updated_at: String,
    /// The deadline the workflow arms in the current state, if it has one. Absent from
    /// documents written before deadlines were projected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_deadline: Option<NextDeadline>,
    /// When the order entered each state it has left `CREATED` for, in order: the stages a
    /// tracking page shows, carried here so tracking reads one document instead of the audit
    /// trail. Absent from documents written before stages were projected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageReached>>,
}

/// A state the order entered, and when (RFC 3339, the workflow's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReached {
    pub state: State,
    pub reached_at: String,
}

impl StageReached {
    /// The states `order`'s applied events moved it into.
    pub fn of(order: &DeliveryOrder) -> Vec<Self> {
        Self::first_entries(
            order
                .events
                .iter()
                .map(|e| (Some(e.from_state), e.to_state, e.occurred_at.as_str())),
        )
    }

    /// From transitions in order (from, to, when; `from` absent on the creation): each state
    /// entered, at its first entry. The graph is acyclic, so a state is entered once; an event
    /// that keeps the state adds nothing.
    pub fn first_entries<'a>(
        transitions: impl IntoIterator<Item = (Option<State>, State, &'a str)>,
    ) -> Vec<Self> {
        let mut stages: Vec<Self> = Vec::new();
        for (from, to, at) in transitions {
            if from.is_some_and(|from| from != to) && !stages.iter().any(|s| s.state == to) {
                stages.push(Self {
                    state: to,
                    reached_at: at.to_owned(),
                });
            }
        }
        stages
    }
}

/// A deadline of the order's current state: when its timer fires unless an event comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextDeadline {
    /// The graph's timer: `pickup_deadline`, `delivery_deadline` or `auto_confirm`.
    pub timer: String,
    /// RFC 3339, UTC, milliseconds.
    pub due_at: String,
}

impl NextDeadline {
    /// The deadline the workflow arms for `order` as it stands. The workflow starts a state's
    /// timer in the task that entered the state (the order's `updated_at`), for the length of
    /// the input's override or the graph's default, and carries it across continue-as-new; so
    /// the deadline follows from the order alone and the projection needs no command of its own.
    pub fn of(order: &DeliveryOrder) -> Option<Self> {
        let (timer, spec) = crate::DELIVERY_ORDER_V1.timer_for(order.state)?;
        let length = order.input.deadlines.get(timer).unwrap_or(spec.default);
        let entered = chrono::DateTime::parse_from_rfc3339(&order.updated_at).ok()?;
        let due = entered.with_timezone(&chrono::Utc) + chrono::Duration::from_std(length).ok()?;
        Some(Self {
            timer: timer.to_owned(),
            due_at: due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

/// What one projection writes: the order at `version` and the events applied since the last
/// projection (`events` is ordered by `seq`). The order's fields sit at the top level of the
/// activity's input, as they always have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    #[serde(flatten)]
    pub order: ProjectedOrder,
    pub events: Vec<AppliedEvent>,
    /// Who created the order (the first entry of its audit trail), when the start input says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Actor>,
    /// The correlation id the order was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_correlation_id: Option<String>,
}

/// The partner the read model names for `order`: the one bound to it, once a partner event
/// applied. Taking the partner from the applied events, not from the binding alone (which is not
/// a new version), makes it a function of the version: every projection of a version, live or
/// rebuilt from Temporal, writes the same row.
fn carrying_partner(order: &DeliveryOrder) -> Option<String> {
    let acted = order
        .events
        .iter()
        .any(|e| e.actor.kind == crate::ActorKind::Partner);
    order.partner.partner_id.clone().filter(|_| acted)
}

impl Projection {
    /// The order as it stands, with the events after `after_seq`.
    pub fn of(order: &DeliveryOrder, after_seq: u64) -> Self {
        Self {
            order: ProjectedOrder {
                delivery_order_id: order.delivery_order_id.clone(),
                ordering_id: order.ordering_id.clone(),
                customer_id: order.customer_id.clone(),
                partner_id: carrying_partner(order),
                payment_id: order.payment_id.clone(),
                state: order.state,
                version: order.version,
                graph_version: order.graph_version,
                partner_order_number: order.partner.partner_order_number.clone(),
                failure_reason: order.failure_reason,
                failure_detail: order.failure_detail.clone(),
                replaces_id: order.replaces_id.clone(),
                replaced_by_id: order.replaced_by_id.clone(),
                shipping_address: order.input.shipping_address.clone(),
                items: order.input.items.clone(),
                notes: order.input.notes.clone(),
                budget: order.input.budget,
                driver: order.partner.driver.clone(),
                eta: order.partner.eta.clone(),
                created_at: order.created_at.clone(),
                updated_at: order.updated_at.clone(),
                next_deadline: NextDeadline::of(order),
                stages: Some(StageReached::of(order)),
            },
            events: order
                .events
                .iter()
                .filter(|e| e.seq > after_seq)
                .cloned()
                .collect(),
            created_by: order.input.created_by.clone(),
            creation_correlation_id: order.input.correlation_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionOutcome {
    /// The version the read model holds after this projection.
    pub version: u64,
}

/// Activity type name of [`ProjectCompat`].
pub const PROJECT_COMPAT: &str = "project_compat";

/// Store a compatible-API delivery's new events and publish its state to the status cache,
/// idempotently.
#[derive(Debug, Clone, Copy)]
pub struct ProjectCompat;

impl ActivityDefinition for ProjectCompat {
    type Input = CompatProjection;
    type Output = ProjectionOutcome;
    fn name(&self) -> &str {
        PROJECT_COMPAT
    }
}

/// A compatible-API delivery at `state.version`, with its creation data and the events after the
/// last projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompatProjection {
    pub delivery_id: String,
    pub created: serde_json::Value,
    pub created_at: String,
    pub state: crate::compat::CompatDelivery,
    pub events: Vec<crate::compat::CompatEvent>,
}

/// Activity type names of the batch coordinator's steps.
pub const BATCH_PREPARE: &str = "batch_prepare";
pub const BATCH_COMMIT: &str = "batch_commit";
pub const BATCH_ABORT: &str = "batch_abort";
pub const BATCH_ROLLED_BACK: &str = "batch_rolled_back";

/// Activity type name of [`BatchCoordinatorRunning`].
pub const BATCH_COORDINATOR_RUNNING: &str = "batch_coordinator_running";

/// Whether a batch's coordinator workflow still runs (input: the batch id). An order whose hold
/// outlived its lease asks before releasing itself: a running coordinator always reaches its
/// decision and delivers it to every order, so releasing one of them then would break the
/// batch's all-or-nothing; a closed or unknown one never will.
pub struct BatchCoordinatorRunning;

impl ActivityDefinition for BatchCoordinatorRunning {
    type Input = String;
    type Output = bool;
    fn name(&self) -> &str {
        BATCH_COORDINATOR_RUNNING
    }
}

/// Ask one delivery order to hold a batch's events (its `prepare_batch` update).
pub struct BatchPrepareStep;
/// Apply a prepared batch on one order (`commit_batch`).
pub struct BatchCommitStep;
/// Release one order without applying anything (`abort_batch`).
pub struct BatchAbortStep;
/// Publish `BatchRolledBack` on the delivery-events stream (through the outbox).
pub struct PublishBatchRolledBack;

impl ActivityDefinition for BatchPrepareStep {
    type Input = BatchStepRequest;
    type Output = PrepareOutcome;
    fn name(&self) -> &str {
        BATCH_PREPARE
    }
}

impl ActivityDefinition for BatchCommitStep {
    type Input = BatchStepRequest;
    type Output = crate::domain::ApplyOutcome;
    fn name(&self) -> &str {
        BATCH_COMMIT
    }
}

impl ActivityDefinition for BatchAbortStep {
    type Input = BatchStepRequest;
    type Output = ();
    fn name(&self) -> &str {
        BATCH_ABORT
    }
}

impl ActivityDefinition for PublishBatchRolledBack {
    type Input = BatchRolledBack;
    type Output = ();
    fn name(&self) -> &str {
        BATCH_ROLLED_BACK
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchStepRequest {
    pub delivery_order_id: String,
    pub batch_id: String,
    /// The order's events, for prepare; empty for commit and abort.
    #[serde(default)]
    pub events: Vec<crate::domain::EventEnvelope>,
    /// For prepare: how long the order may hold itself for the batch (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// What an order answered to prepare. Business refusals are outcomes; only transport failures
/// are activity errors (retried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrepareOutcome {
    Prepared,
    /// Every event of this order's share was applied before: it is not held and not committed.
    Unchanged {
        state: crate::domain::State,
        version: u64,
    },
    /// The order's `index`-th event of this batch cannot apply (or the order is held).
    Rejected {
        index: usize,
        reason: String,
        /// Why, when the order said (absent in the results of older workers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<crate::refusal::RejectionCode>,
    },
    NotFound,
}

/// The domain event a rolled-back batch publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRolledBack {
    pub batch_id: String,
    pub correlation_id: String,
    pub reason: String,
    pub failed_event_index: usize,
    pub delivery_order_id: String,
}

#[cfg(test)]
mod tests {
    use super::Projection;

    /// The projection activity's input as histories hold it: the order's fields at the top
    /// level. Reading it and writing it again must give the same document.
    #[test]
    fn a_projection_keeps_the_order_at_the_top_level_of_the_activity_input() {
        let recorded = serde_json::json!({
            "delivery_order_id": "0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e",
            "ordering_id": "ord-1",
            "customer_id": "cust-1",
            "payment_id": "pay-1",
            "state": "PICKED_UP",
            "version": 1,
            "graph_version": 1,
            "partner_order_number": "PN-1",
            "failure_reason": null,
            "failure_detail": null,
            "replaces_id": null,
            "replaced_by_id": null,
            "shipping_address": {
                "name": "Ada", "line1": "1 Main St", "city": "London",
                "postal_code": "N1", "country": "GB"
            },
            "items": [{"sku": "b-1", "title": "A book", "format": "PHYSICAL", "quantity": 1}],
            "notes": null,
            "budget": 20,
            "driver": {"name": "Sam"},
            "eta": null,
            "created_at": "2026-11-22T10:00:00.000Z",
            "updated_at": "2026-11-22T10:01:00.000Z",
            "events": [],
        });
        let projection: Projection = serde_json::from_value(recorded.clone()).unwrap();
        assert_eq!(projection.order.version, 1);
        assert_eq!(
            projection.order.partner_order_number.as_deref(),
            Some("PN-1")
        );
        assert_eq!(serde_json::to_value(&projection).unwrap(), recorded);
    }
}
