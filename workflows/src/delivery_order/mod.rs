//! `DeliveryOrderWorkflow`: one durable workflow per delivery order.
//!
//! The pure state machine (`machine`) decides and the pure batch lock ([`BatchHold`]) keeps
//! batches apart; this module adds the signal / update / query surface around them, and
//! [`lifecycle`] what needs Temporal over time: deadline timers, the partner activities, search
//! attributes, the read-model projection and the replacement of a reshipped order. Everything
//! is deterministic: SDK timers and `select!` only, all I/O in activities.

mod batch_hold;
pub mod client;
mod lifecycle;
mod options;

use std::error::Error;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use temporalio_common::data_converters::RawValue;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

use self::batch_hold::system_actor_refused;
pub use self::batch_hold::{
    BatchDecision, BatchFate, BatchHold, BatchPrepare, DEFAULT_BATCH_LEASE, DEFERRED_KEPT,
    Deferred, HeldBatch, MAX_BATCH_LEASE, MIN_BATCH_LEASE,
};
use self::lifecycle::LifecycleEnd;
pub(crate) use self::options::retried_until_done;
use crate::clock::{epoch_ms, rfc3339};
use crate::domain::{
    Actor, ActorKind, ApplyOutcome, DeliveryOrderInput, EventEnvelope, EventType, RejectedEvent,
    State,
};
use crate::graph::{DELIVERY_ORDER_V1, StateGraph};
use crate::machine::{DeliveryOrder, Rejection, Verdict};
use crate::refusal::{Refusal, RejectionCode};
use crate::signals::parse_signal;
use crate::validation::check_input;

/// Task queue every delivery-order worker polls.
pub const TASK_QUEUE: &str = "delivery-orders";
/// Workflow type name (the struct name) as other-language clients use it.
pub const WORKFLOW_TYPE: &str = "DeliveryOrderWorkflow";

/// The Temporal workflow id of a delivery order.
pub fn workflow_id(delivery_order_id: &str) -> String {
    format!("delivery-order-{delivery_order_id}")
}

/// History length at which a run continues as new at its next safe point (the server may
/// suggest it earlier). Well below Temporal's limits, so a flood of signals cannot reach them.
pub const HISTORY_LIMIT: u32 = 2_000;

/// Patch id of the read-model projection (added after the first histories were recorded).
pub const READ_MODEL_PATCH: &str = "read-model-projection-v1";
/// Patch id of the sender checks (own customer, bound partner) and the partner-event wait.
pub const SENDER_CHECKS_PATCH: &str = "sender-checks-v1";
/// Patch id of refusing partner events while no partner has taken the pickup and none is being
/// asked (runs before it took them from any partner).
pub const UNBOUND_PARTNER_PATCH: &str = "unbound-partner-refused-v1";
/// Patch id of the batch-hold lease timer.
pub const BATCH_LEASE_PATCH: &str = "batch-lease-v1";
/// Patch id of asking the batch's coordinator before a hold whose lease ran out is released (runs
/// before it released at once, and a batch whose commit was delayed past the lease, by an outage,
/// was applied on some of its orders only).
pub const LEASE_ASKS_COORDINATOR_PATCH: &str = "batch-lease-asks-coordinator-v1";
/// How long a hold whose coordinator still runs waits before asking again (the first time; see
/// [`coordinator_recheck`]).
pub const COORDINATOR_RECHECK: Duration = Duration::from_secs(15);
/// The longest wait between two questions to a coordinator that still runs.
pub const MAX_COORDINATOR_RECHECK: Duration = Duration::from_secs(300);
/// Patch id of asking a running coordinator less and less often, and of continuing as new when
/// the questions alone made the history long (runs before it asked every 15 s for as long as the
/// coordinator ran, about 11 history events each time, with nothing to bound the history).
pub const RECHECK_BACKS_OFF_PATCH: &str = "batch-hold-recheck-backs-off-v1";

/// How long a hold waits before asking its running coordinator again after `asked` questions:
/// 15 s, doubling to at most 5 minutes. A coordinator that runs that long is held up by an
/// outage; asking often changes nothing but the order's history.
pub fn coordinator_recheck(asked: u32) -> Duration {
    COORDINATOR_RECHECK
        .saturating_mul(1u32.checked_shl(asked).unwrap_or(u32::MAX))
        .min(MAX_COORDINATOR_RECHECK)
}
/// Patch id of starting the replacement through an activity (runs before it started a child
/// workflow once and only logged a refused start).
pub const REPLACEMENT_ACTIVITY_PATCH: &str = "replacement-start-activity-v1";
/// Patch id of letting a pickup request still out settle before the job is withdrawn (runs
/// before it cancelled the request at once, and a job the partner booked meanwhile stayed booked).
pub const PICKUP_SETTLES_PATCH: &str = "pickup-settles-before-withdrawal-v1";
/// Patch id of the partner calls' heartbeat timeout (runs before it learned of a worker killed
/// mid-call only when that attempt's 30 s start-to-close limit ran out).
pub const PARTNER_HEARTBEAT_PATCH: &str = "partner-calls-heartbeat-v1";

/// How long an order that left CREATED waits for a pickup request still out to answer, so a
/// job the partner booked meanwhile can be withdrawn: past one attempt's start-to-close limit (a
/// worker killed mid-request) and the retry that asks the partner again under the same key.
pub const PICKUP_SETTLE_PATIENCE: Duration = Duration::from_secs(120);

/// The graph every delivery order of this build runs (its version is recorded on the order).
fn graph() -> &'static StateGraph {
    &DELIVERY_ORDER_V1
}

/// Start input as received. Parsing never fails: a start payload that is not a valid delivery
/// order becomes `Invalid`, and the workflow fails at once with that message instead of failing
/// its first task over and over.
#[derive(Debug, Clone, PartialEq)]
pub enum StartInput {
    Valid(Box<DeliveryOrderInput>),
    /// A run continuing where the previous one of the same order stopped (continue-as-new).
    Continued(Box<Continuation>),
    Invalid(String),
}

impl From<DeliveryOrderInput> for StartInput {
    fn from(input: DeliveryOrderInput) -> Self {
        StartInput::Valid(Box::new(input))
    }
}

impl Serialize for StartInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StartInput::Valid(input) => input.serialize(s),
            StartInput::Continued(next) => {
                let mut map = Map::new();
                let next = serde_json::to_value(next).map_err(serde::ser::Error::custom)?;
                map.insert(CONTINUATION_KEY.into(), next);
                map.serialize(s)
            }
            StartInput::Invalid(_) => Err(serde::ser::Error::custom(
                "an invalid delivery order input cannot start a workflow",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for StartInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(d)?;
        if let Some(next) = value.get_mut(CONTINUATION_KEY).map(Value::take) {
            return Ok(match serde_json::from_value::<Continuation>(next) {
                Ok(next) => StartInput::Continued(Box::new(next)),
                Err(e) => StartInput::Invalid(format!("INVALID_INPUT: continuation: {e}")),
            });
        }
        Ok(match serde_json::from_value::<DeliveryOrderInput>(value) {
            Ok(input) => match check_input(&input) {
                Ok(()) => StartInput::Valid(Box::new(input)),
                Err(e) => StartInput::Invalid(format!("INVALID_INPUT: {e}")),
            },
            Err(e) => StartInput::Invalid(format!("INVALID_INPUT: {e}")),
        })
    }
}

/// What the `state` query and the workflow result carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryOrderView {
    #[serde(flatten)]
    pub order: DeliveryOrder,
    pub allowed_events: Vec<EventType>,
    pub terminal: bool,
    /// Set while the run is waiting on the partner's pickup acceptance.
    pub pickup_pending: bool,
    /// How many times this order's workflow continued as new (to keep its history short).
    #[serde(default)]
    pub runs: u32,
}

/// A deadline timer of the current state, kept so a continued run waits only for what is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub version: u64,
    pub timer: String,
    pub due_ms: u64,
}

/// Everything a run hands to the next when it continues as new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    pub order: DeliveryOrder,
    #[serde(default)]
    pub batch: Option<HeldBatch>,
    #[serde(default)]
    pub deferred: Vec<Deferred>,
    #[serde(default)]
    pub finished_batches: std::collections::VecDeque<(String, BatchFate)>,
    /// The last version the read model holds.
    #[serde(default)]
    pub projected: Option<u64>,
    #[serde(default)]
    pub deadline: Option<Deadline>,
    /// Runs of this order before the one this starts.
    #[serde(default)]
    pub runs: u32,
}

const CONTINUATION_KEY: &str = "continuation";

#[workflow]
pub struct DeliveryOrderWorkflow {
    /// `None` only when the start input was invalid (see `start_error`).
    order: Option<DeliveryOrder>,
    start_error: Option<String>,
    pickup_pending: bool,
    /// The lifecycle reached its end; the projector may finish once it caught up.
    lifecycle_done: bool,
    /// The batch holding this order between prepare and commit/abort, and what waits: while
    /// held, `apply_event` is refused and signals and the workflow's own events wait.
    hold: BatchHold,
    /// The last version the read model holds.
    projected: Option<u64>,
    deadline: Option<Deadline>,
    /// History grew long: the lifecycle continues as new at its next safe point.
    continue_due: bool,
    /// The lifecycle stopped to continue as new: the projector catches up, then the run ends.
    continuing: bool,
    runs: u32,
    /// The run has asked its patches (the order's rules are settled). Handlers of the run's
    /// first workflow task may run before; only update validators read this, and they do not
    /// run on replay.
    run_started: bool,
    /// The partner calls carry a heartbeat timeout (runs since [`PARTNER_HEARTBEAT_PATCH`]).
    partner_heartbeats: bool,
}

#[workflow_methods]
impl DeliveryOrderWorkflow {
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: StartInput) -> Self {
        let mut workflow = Self {
            order: None,
            start_error: None,
            pickup_pending: false,
            lifecycle_done: false,
            hold: BatchHold::default(),
            projected: None,
            deadline: None,
            continue_due: false,
            continuing: false,
            runs: 0,
            run_started: false,
            partner_heartbeats: false,
        };
        let order_id = match &input {
            StartInput::Valid(input) => Some(input.delivery_order_id.clone()),
            StartInput::Continued(next) => Some(next.order.delivery_order_id.clone()),
            StartInput::Invalid(_) => None,
        };
        if let Some(order_id) = order_id
            && ctx.workflow_id() != workflow_id(&order_id)
        {
            workflow.start_error = Some(format!(
                "INVALID_INPUT: workflow id must be {:?} for this delivery order, got {:?}",
                workflow_id(&order_id),
                ctx.workflow_id()
            ));
            return workflow;
        }
        match input {
            StartInput::Valid(input) => {
                let mut order = DeliveryOrder::new(graph(), *input, rfc3339(ctx.start_time()));
                // Whether this run refuses partners while none is bound is its patch's to say,
                // at run start; handlers of the first task that run before that apply the rule
                // runs recorded before it had (update validators refuse such partners anyway).
                order.refuses_unbound_partners = false;
                workflow.order = Some(order);
            }
            StartInput::Continued(next) => {
                let next = *next;
                workflow.order = Some(next.order);
                workflow.hold = BatchHold::resume(next.batch, next.deferred, next.finished_batches);
                workflow.projected = next.projected;
                workflow.deadline = next.deadline;
                workflow.runs = next.runs + 1;
            }
            StartInput::Invalid(error) => workflow.start_error = Some(error),
        }
        workflow
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<DeliveryOrderView> {
        if let Some(error) = ctx.state(|s| s.start_error.clone()) {
            return Err(crate::refusal::invalid_start(error).into());
        }
        match lifecycle::run(ctx).await? {
            LifecycleEnd::Finished => Ok(ctx.state(|s| s.view())),
            LifecycleEnd::ContinueAsNew => {
                let next = ctx.state(|s| s.continuation());
                if !ctx.is_replaying() {
                    tracing::info!(
                        history_length = ctx.history_length(),
                        runs = next.runs + 1,
                        "delivery order continues as new"
                    );
                }
                match ctx.continue_as_new(
                    StartInput::Continued(Box::new(next)),
                    ContinueAsNewOptions::default(),
                ) {
                    Err(termination) => Err(termination),
                    Ok(never) => match never {},
                }
            }
        }
    }

    #[signal(name = "picked_up")]
    pub fn picked_up(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "picked_up", payload);
    }

    #[signal(name = "delivered")]
    pub fn delivered(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "delivered", payload);
    }

    #[signal(name = "failed")]
    pub fn failed(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "failed", payload);
    }

    #[signal(name = "confirmed")]
    pub fn confirmed(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "confirmed", payload);
    }

    #[signal(name = "disputed")]
    pub fn disputed(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "disputed", payload);
    }

    #[signal(name = "operator_action")]
    pub fn operator_action(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "operator_action", payload);
    }

    #[signal(name = "cancel")]
    pub fn cancel(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        self.on_signal(ctx, "cancel", payload);
    }

    #[update_validator(apply_event)]
    fn validate_apply_event(
        &self,
        _ctx: &WorkflowContextView,
        event: &EventEnvelope,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let order = self.valid_order()?;
        if event.actor.kind == ActorKind::System {
            return Err(system_actor_refused().into());
        }
        if let Some(refusal) = self.unbound_partner(event) {
            return Err(Refusal::from(refusal).into());
        }
        // A retry is answered here, so it adds nothing to the history.
        if let Verdict::Duplicate(original) = order.check(graph(), event).map_err(Refusal::from)? {
            return Err(Refusal::duplicate(&original).into());
        }
        self.hold.check_free()?;
        if self.partner_unconfirmed(event) {
            return Err(Refusal::from(Rejection::PickupNotConfirmed).into());
        }
        Ok(())
    }

    #[update_validator(prepare_batch)]
    fn validate_prepare_batch(
        &self,
        _ctx: &WorkflowContextView,
        prepare: &BatchPrepare,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let order = self.valid_order()?;
        self.hold.check_prepare(graph(), order, prepare, |e| {
            self.unbound_partner(e).or_else(|| {
                self.partner_unconfirmed(e)
                    .then_some(Rejection::PickupNotConfirmed)
            })
        })?;
        Ok(())
    }

    /// Holds the order for a batch whose events all apply (the validator checked them), until
    /// it commits, aborts, or its lease runs out.
    #[update(name = "prepare_batch")]
    pub fn prepare_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        prepare: BatchPrepare,
    ) -> ApplyOutcome {
        self.note_history(ctx);
        self.hold.prepare(prepare, epoch_ms(ctx.workflow_time()));
        self.order().outcome(graph(), false)
    }

    #[update_validator(commit_batch)]
    fn validate_commit_batch(
        &self,
        _ctx: &WorkflowContextView,
        decision: &BatchDecision,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.hold
            .check_commit(graph(), self.valid_order()?, &decision.batch_id)?;
        Ok(())
    }

    /// Applies the prepared events, in order, then releases the order. A repeated commit is
    /// answered by the validator.
    #[update(name = "commit_batch")]
    pub fn commit_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: BatchDecision,
    ) -> ApplyOutcome {
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        if let Some(events) = self.hold.commit(&decision.batch_id) {
            let order = self.order_mut();
            for event in events {
                // Nothing could change the order while it was held, so this cannot fail; record
                // rather than panic if it ever did.
                if let Err(rejection) = order.apply(graph(), event.clone(), &now) {
                    order.record_rejection(rejected(
                        "commit_batch",
                        Some(&event),
                        &rejection,
                        &now,
                    ));
                }
            }
            self.release_deferred(&now);
        }
        self.order().outcome(graph(), true)
    }

    #[update_validator(abort_batch)]
    fn validate_abort_batch(
        &self,
        _ctx: &WorkflowContextView,
        decision: &BatchDecision,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.hold
            .check_abort(graph(), self.valid_order()?, &decision.batch_id)?;
        Ok(())
    }

    /// Releases the order without applying anything. An abort that arrives before its prepare
    /// is remembered, so the late prepare cannot hold the order; a repeated abort is answered by
    /// the validator.
    #[update(name = "abort_batch")]
    pub fn abort_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: BatchDecision,
    ) -> ApplyOutcome {
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        if self.hold.abort(&decision.batch_id) {
            self.release_deferred(&now);
        }
        self.order().outcome(graph(), false)
    }

    /// Applies one event. The validator has already refused anything not allowed now (and
    /// answered retries), so a refused update leaves no trace in history.
    #[update(name = "apply_event")]
    pub fn apply_event(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        event: EventEnvelope,
    ) -> ApplyOutcome {
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        let order = self
            .order
            .as_mut()
            .expect("the validator refuses updates without an order");
        match order.apply(graph(), event.clone(), &now) {
            Ok(outcome) => outcome,
            // Unreachable while validator and handler see the same state; kept total so a
            // future change cannot panic a workflow task.
            Err(rejection) => {
                order.record_rejection(rejected("apply_event", Some(&event), &rejection, &now));
                order.outcome(graph(), false)
            }
        }
    }

    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<DeliveryOrderView> {
        self.order.as_ref().map(|_| self.view())
    }
}

impl DeliveryOrderWorkflow {
    /// The order, or the refusal of a run whose start input was invalid.
    fn valid_order(&self) -> Result<&DeliveryOrder, Refusal> {
        self.order.as_ref().ok_or_else(|| {
            Refusal::worded(
                RejectionCode::InvalidInput,
                self.start_error.clone().unwrap_or_default(),
            )
        })
    }

    /// In CREATED while the pickup request is out and no partner has accepted it yet: partner
    /// events wait, since nobody can tell yet which partner may send them.
    fn awaiting_partner(&self) -> bool {
        self.pickup_pending
            && self
                .order
                .as_ref()
                .is_some_and(|o| o.partner.partner_id.is_none())
    }

    /// The refusal, by an update validator, of a partner event naming its partner while no
    /// partner has taken the pickup: asked to retry while the pickup is or will be asked (the
    /// partner that accepts it may send its events then), not the partner's order otherwise.
    /// Validators do not run on replay, so this holds from a run's first task on, before the
    /// run asks its patch; runs recorded before the rule keep theirs.
    fn unbound_partner(&self, event: &EventEnvelope) -> Option<Rejection> {
        let order = self.order.as_ref()?;
        let unbound = order.partner.partner_id.is_none() && order.partner.pickup_id.is_none();
        let applies = order.refuses_unbound_partners || !self.run_started;
        if event.actor.kind != ActorKind::Partner
            || event.actor.id.is_none()
            || !unbound
            || !applies
            || !order.checks_senders
        {
            return None;
        }
        Some(if self.pickup_pending || order.state == State::Created {
            Rejection::PickupNotConfirmed
        } else {
            Rejection::NotYourOrder(format!(
                "no partner has taken the pickup of this delivery order, so partner {:?} may not act on it",
                event.actor.id.as_deref().unwrap_or_default()
            ))
        })
    }

    /// Whether `event` must wait now rather than apply.
    fn must_wait(&self, event: &EventEnvelope) -> bool {
        self.hold.is_holding() || self.partner_unconfirmed(event)
    }

    /// A partner event that names its partner, before any partner accepted the pickup: which
    /// partner may send it is not known yet. (An event without an actor id comes from a trusted
    /// internal sender, as `check_sender` says, and applies as before.)
    fn partner_unconfirmed(&self, event: &EventEnvelope) -> bool {
        event.actor.kind == ActorKind::Partner
            && event.actor.id.is_some()
            && self.awaiting_partner()
            && self.order().checks_senders
    }

    /// Applies, in arrival order, whatever no longer has to wait.
    fn release_deferred(&mut self, now: &str) {
        for deferred in self.hold.take_deferred() {
            match deferred {
                Deferred::Event { signal, event } if !self.must_wait(&event) => {
                    self.apply_external(&signal, event, now)
                }
                Deferred::Own {
                    event_type,
                    data,
                    actor,
                    tag,
                } if !self.hold.is_holding() => self.apply_own(event_type, data, actor, &tag, now),
                still_waiting => self.hold.keep_waiting(still_waiting),
            }
        }
    }

    /// The partner accepted the pickup: from now on only it may send partner events.
    fn bind_partner(&mut self, partner_id: Option<String>, pickup_id: String, now: &str) {
        let partner = &mut self.order_mut().partner;
        partner.pickup_id = Some(pickup_id);
        if partner.partner_id.is_none() {
            partner.partner_id = partner_id;
        }
        self.release_deferred(now);
    }

    /// Marks the run for continue-as-new once its history is long (the same test as the
    /// lifecycle's).
    fn note_history(&mut self, ctx: &SyncWorkflowContext<Self>) {
        if ctx.history_length() >= HISTORY_LIMIT || ctx.continue_as_new_suggested() {
            self.continue_due = true;
        }
    }

    fn continuation(&self) -> Continuation {
        Continuation {
            order: self.order().clone(),
            batch: self.hold.held().cloned(),
            deferred: self.hold.deferred().to_vec(),
            finished_batches: self.hold.finished().clone(),
            projected: self.projected,
            deadline: self.deadline.clone(),
            runs: self.runs,
        }
    }

    /// Applies an event the workflow itself raises (timer, partner refusal), or keeps it until
    /// a batch releases the order.
    fn raise_own(
        &mut self,
        event_type: EventType,
        data: Map<String, Value>,
        actor: Actor,
        tag: &str,
        now: &str,
    ) {
        if self.hold.is_holding() {
            self.hold.defer_own(Deferred::Own {
                event_type,
                data,
                actor,
                tag: tag.to_owned(),
            });
        } else {
            self.apply_own(event_type, data, actor, tag, now);
        }
    }

    fn apply_own(
        &mut self,
        event_type: EventType,
        data: Map<String, Value>,
        actor: Actor,
        tag: &str,
        now: &str,
    ) {
        let order = self.order_mut();
        let event = EventEnvelope {
            event_id: order.internal_event_id(tag),
            event_type,
            data: Value::Object(data),
            actor,
            correlation_id: None,
            pickup_id: None,
        };
        if let Err(rejection) = order.apply_own(graph(), event.clone(), now) {
            // The graph check (`defects`) guarantees timers send allowed events, and a deferred
            // one may have been overtaken by the batch; record rather than panic.
            order.record_rejection(rejected(tag, Some(&event), &rejection, now));
        }
    }

    /// Applies an event that arrived by signal; what is not allowed is recorded as rejected.
    fn apply_external(&mut self, signal: &str, event: EventEnvelope, now: &str) {
        let order = self.order_mut();
        if let Err(rejection) = order.apply(graph(), event.clone(), now) {
            order.record_rejection(rejected(signal, Some(&event), &rejection, now));
        }
    }

    fn order(&self) -> &DeliveryOrder {
        self.order
            .as_ref()
            .expect("run only continues with a valid order")
    }

    fn order_mut(&mut self) -> &mut DeliveryOrder {
        self.order
            .as_mut()
            .expect("run only continues with a valid order")
    }

    fn view(&self) -> DeliveryOrderView {
        let order = self.order().clone();
        DeliveryOrderView {
            allowed_events: graph().allowed_events(order.state),
            terminal: graph().is_terminal(order.state),
            pickup_pending: self.pickup_pending,
            runs: self.runs,
            order,
        }
    }

    /// Every signal lands here. Nothing a sender puts in a signal can fail the workflow task:
    /// what does not parse or is not allowed now is recorded as rejected and ignored. While a
    /// batch holds the order (or a partner's event arrives before the partner confirmed the
    /// pickup) the event waits, bounded, and is applied in order once it may.
    fn on_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, signal: &str, payload: RawValue) {
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        if self.order.is_none() {
            return;
        }
        let bytes = payload
            .payloads
            .first()
            .map(|p| p.data.as_slice())
            .unwrap_or_default();
        let fresh_id = || format!("{}:{signal}:{}", order_id_prefix(ctx), ctx.uuid4());
        let event = match parse_signal(graph(), signal, bytes, fresh_id) {
            Ok(event) => event,
            Err(rejection) => {
                if !ctx.is_replaying() {
                    tracing::warn!(signal, reason = %rejection, "signal rejected");
                }
                self.order_mut()
                    .record_rejection(rejected(signal, None, &rejection, &now));
                return;
            }
        };
        if !self.must_wait(&event) {
            return self.apply_external(signal, event, &now);
        }
        if let Err(full) = self.hold.defer_event(signal, event.clone()) {
            self.order_mut()
                .record_rejection(rejected(signal, Some(&event), &full, &now));
        }
    }
}

fn order_id_prefix<W>(ctx: &SyncWorkflowContext<W>) -> String {
    ctx.workflow_id()
        .trim_start_matches("delivery-order-")
        .to_owned()
}

fn rejected(
    signal: &str,
    event: Option<&EventEnvelope>,
    why: &Rejection,
    now: &str,
) -> RejectedEvent {
    RejectedEvent {
        signal: signal.to_owned(),
        event_id: event.map(|e| e.event_id.clone()),
        event_type: event.map(|e| e.event_type),
        reason: why.to_string(),
        received_at: now.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_coordinator_is_asked_less_and_less_often() {
        let waits: Vec<u64> = (0..8).map(|n| coordinator_recheck(n).as_secs()).collect();
        assert_eq!(waits, [15, 30, 60, 120, 240, 300, 300, 300]);
        assert_eq!(coordinator_recheck(u32::MAX), MAX_COORDINATOR_RECHECK);
        // About 11 history events a question: an hour of questions adds 165, where asking every
        // 15 s added 2,640 (past the limit that makes the order continue as new, which the
        // questions now also check).
        let mut elapsed = 0;
        let first_hour = (0..)
            .map_while(|n| {
                elapsed += coordinator_recheck(n).as_secs();
                (elapsed <= 3600).then_some(())
            })
            .count();
        assert_eq!(first_hour, 15);
    }
}
