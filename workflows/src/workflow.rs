//! `DeliveryOrderWorkflow`: one durable workflow per delivery order.
//!
//! The pure state machine (`machine`) decides; this file only adds what needs Temporal: deadline
//! timers, the partner activities, search attributes, the reshipment child workflow, and the
//! signal / update / query surface. Everything here is deterministic: SDK timers and `select!`
//! only, all I/O in activities.

use std::collections::VecDeque;
use std::error::Error;
use std::pin::pin;
use std::time::{Duration, SystemTime};

use futures::future::FusedFuture;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use temporalio_common::data_converters::RawValue;
use temporalio_common::error::ApplicationFailure;
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributeUpdate};
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join, select};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, ContinueAsNewOptions,
    ParentClosePolicy, SyncWorkflowContext, TimerResult, WorkflowContext, WorkflowContextView,
    WorkflowResult, WorkflowTermination,
};

use crate::activities::{
    CancelPickup, CancelPickupRequest, PickupOutcome, PickupRequest, ProjectEvents, Projection,
    RequestPickup, StartReplacement,
};
use crate::domain::{
    Actor, ActorKind, ApplyOutcome, DeliveryOrderInput, EventEnvelope, EventType, FailureReason,
    RejectedEvent, State,
};
use crate::graph::{DELIVERY_ORDER_V1, StateGraph};
use crate::machine::{DeliveryOrder, Rejection, Verdict};
use crate::refusal;
use crate::signals::parse_signal;
use crate::validation::{check_input, check_ref_id};

/// Task queue every delivery-order worker polls.
pub const TASK_QUEUE: &str = "delivery-orders";
/// Workflow type name (the struct name) as other-language clients use it.
pub const WORKFLOW_TYPE: &str = "DeliveryOrderWorkflow";

/// The Temporal workflow id of a delivery order.
pub fn workflow_id(delivery_order_id: &str) -> String {
    format!("delivery-order-{delivery_order_id}")
}

pub const DELIVERY_STATE: SearchAttributeKey<String> = SearchAttributeKey::keyword("DeliveryState");
pub const ORDERING_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("OrderingId");
pub const CUSTOMER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("CustomerId");
pub const PARTNER_ORDER_NUMBER: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("PartnerOrderNumber");
pub const FAILURE_REASON: SearchAttributeKey<String> = SearchAttributeKey::keyword("FailureReason");

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

/// The events of an atomic batch for this order: checked together at prepare, applied together
/// at commit. While prepared, the order takes nothing else (see [`DeliveryOrderWorkflow`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPrepare {
    pub batch_id: String,
    pub events: Vec<EventEnvelope>,
    /// How long the order holds itself for this batch at most (milliseconds); when the batch
    /// neither commits nor aborts in that time, the order releases itself. Default 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// Default and bounds of a batch hold's lease.
pub const DEFAULT_BATCH_LEASE: Duration = Duration::from_secs(30);
pub const MIN_BATCH_LEASE: Duration = Duration::from_secs(1);
pub const MAX_BATCH_LEASE: Duration = Duration::from_secs(600);

/// Commit or abort of a prepared batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDecision {
    pub batch_id: String,
}

/// A prepared batch and the workflow time (ms since the epoch) its lease runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBatch {
    pub prepare: BatchPrepare,
    pub lease_until_ms: u64,
}

/// How a batch ended on this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchFate {
    Committed,
    Aborted,
    /// Neither committed nor aborted before its lease ran out.
    Expired,
}

/// Something that waits to be applied: anything while a batch holds the order, and a partner's
/// event that arrives before the partner confirmed the pickup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Deferred {
    /// A signal, parsed when it arrived.
    Event {
        signal: String,
        event: EventEnvelope,
    },
    /// An event the workflow raised itself (a deadline, a partner refusal).
    Own {
        event_type: EventType,
        data: Map<String, Value>,
        actor: Actor,
        tag: String,
    },
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
    pub finished_batches: VecDeque<(String, BatchFate)>,
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

/// How many finished batch ids an order remembers (idempotent commits, late prepares refused).
const BATCHES_KEPT: usize = 50;
/// Most signals that may wait while the order is held; more are refused and recorded.
pub const DEFERRED_KEPT: usize = 100;
/// History length at which a run continues as new at its next safe point (the server may
/// suggest it earlier). Well below Temporal's limits, so a flood of signals cannot reach them.
pub const HISTORY_LIMIT: u32 = 2_000;

#[workflow]
pub struct DeliveryOrderWorkflow {
    /// `None` only when the start input was invalid (see `start_error`).
    order: Option<DeliveryOrder>,
    start_error: Option<String>,
    pickup_pending: bool,
    /// The lifecycle reached its end; the projector may finish once it caught up.
    lifecycle_done: bool,
    /// The batch holding this order between prepare and commit/abort. Meanwhile `apply_event`
    /// is refused and signals and the workflow's own events wait in `deferred`.
    batch: Option<HeldBatch>,
    deferred: Vec<Deferred>,
    finished_batches: VecDeque<(String, BatchFate)>,
    /// The last version the read model holds.
    projected: Option<u64>,
    deadline: Option<Deadline>,
    /// History grew long: the lifecycle continues as new at its next safe point.
    continue_due: bool,
    /// The lifecycle stopped to continue as new: the projector catches up, then the run ends.
    continuing: bool,
    runs: u32,
}

#[workflow_methods]
impl DeliveryOrderWorkflow {
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: StartInput) -> Self {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let mut workflow = Self {
            order: None,
            start_error: None,
            pickup_pending: false,
            lifecycle_done: false,
            batch: None,
            deferred: Vec::new(),
            finished_batches: VecDeque::new(),
            projected: None,
            deadline: None,
            continue_due: false,
            continuing: false,
            runs: 0,
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
                workflow.order = Some(DeliveryOrder::new(graph, *input, rfc3339(ctx.start_time())))
            }
            StartInput::Continued(next) => {
                let next = *next;
                workflow.order = Some(next.order);
                workflow.batch = next.batch;
                workflow.deferred = next.deferred;
                workflow.finished_batches = next.finished_batches;
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
            return Err(ApplicationFailure::non_retryable(error).into());
        }
        // Runs recorded before the sender checks replay as they ran.
        let checks_senders = ctx.patched(SENDER_CHECKS_PATCH);
        ctx.state_mut(|s| s.order_mut().checks_senders = checks_senders);
        // Runs started before the read model existed replay without projections.
        let end = if ctx.patched(READ_MODEL_PATCH) {
            // Runs started before batch leases replay without the lease timer.
            let leases = ctx.patched(BATCH_LEASE_PATCH);
            let mut lifecycle_ctx = ctx.clone();
            let mut projector_ctx = ctx.clone();
            let mut lease_ctx = ctx.clone();
            let (lifecycle, projection, lease) = join!(
                drive_lifecycle(&mut lifecycle_ctx),
                project_read_model(&mut projector_ctx),
                async {
                    if leases {
                        release_expired_batches(&mut lease_ctx).await
                    } else {
                        Ok(())
                    }
                }
            );
            projection?;
            lease?;
            lifecycle?
        } else {
            drive_lifecycle(ctx).await?
        };
        match end {
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
        let Some(order) = &self.order else {
            return Err(self.start_error.clone().unwrap_or_default().into());
        };
        if event.actor.kind == ActorKind::System {
            return Err(
                "FORBIDDEN_ACTOR: actor kind system is reserved for the workflow itself".into(),
            );
        }
        // A retry is answered here, so it adds nothing to the history.
        if let Verdict::Duplicate(original) = order.check(&DELIVERY_ORDER_V1, event)? {
            return Err(refusal::duplicate(&original).into());
        }
        if let Some(held) = &self.batch {
            return Err(format!(
                "{}: batch {} holds this delivery order until it commits or aborts (at most until its lease ends); retry shortly",
                refusal::LOCKED_BY_BATCH,
                held.prepare.batch_id
            )
            .into());
        }
        if self.partner_unconfirmed(event) {
            return Err(Rejection::PickupNotConfirmed.into());
        }
        Ok(())
    }

    #[update_validator(prepare_batch)]
    fn validate_prepare_batch(
        &self,
        _ctx: &WorkflowContextView,
        prepare: &BatchPrepare,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let Some(order) = &self.order else {
            return Err(self.start_error.clone().unwrap_or_default().into());
        };
        check_ref_id("batch_id", &prepare.batch_id)?;
        match &self.batch {
            Some(held) if held.prepare.batch_id == prepare.batch_id => return Ok(()),
            Some(held) => {
                return Err(format!(
                    "{}: batch {} holds this delivery order",
                    refusal::LOCKED_BY_BATCH,
                    held.prepare.batch_id
                )
                .into());
            }
            None => {}
        }
        if let Some(fate) = self.batch_fate(&prepare.batch_id) {
            return Err(format!(
                "{}: batch {} is over here ({fate:?})",
                refusal::BATCH_FINISHED,
                prepare.batch_id
            )
            .into());
        }
        if prepare.events.is_empty() {
            return Err(refusal::batch_rejection(0, "a batch needs at least one event").into());
        }
        if let Some(lease) = prepare.lease_ms.map(Duration::from_millis)
            && !(MIN_BATCH_LEASE..=MAX_BATCH_LEASE).contains(&lease)
        {
            return Err(refusal::batch_rejection(
                0,
                format!(
                    "lease_ms must be {}-{}",
                    MIN_BATCH_LEASE.as_millis(),
                    MAX_BATCH_LEASE.as_millis()
                ),
            )
            .into());
        }
        // Apply them to a copy, in order: all must go through.
        let mut trial = order.clone();
        for (index, event) in prepare.events.iter().enumerate() {
            if event.actor.kind == ActorKind::System {
                return Err(refusal::batch_rejection(
                    index,
                    "FORBIDDEN_ACTOR: actor kind system is reserved for the workflow itself",
                )
                .into());
            }
            if self.partner_unconfirmed(event) {
                return Err(refusal::batch_rejection(index, Rejection::PickupNotConfirmed).into());
            }
            trial
                .apply(&DELIVERY_ORDER_V1, event.clone(), "")
                .map_err(|rejection| refusal::batch_rejection(index, rejection))?;
        }
        // Every event applied before (a repeated batch): nothing to hold the order for, and
        // nothing added to its history.
        if trial.version == order.version {
            return Err(refusal::batch_noop(&order.outcome(&DELIVERY_ORDER_V1, false)).into());
        }
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
        if self.batch.is_none() {
            let lease = prepare
                .lease_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_BATCH_LEASE);
            let lease_until_ms = epoch_ms(ctx.workflow_time()) + lease.as_millis() as u64;
            self.batch = Some(HeldBatch {
                prepare,
                lease_until_ms,
            });
        }
        self.order().outcome(&DELIVERY_ORDER_V1, false)
    }

    #[update_validator(commit_batch)]
    fn validate_commit_batch(
        &self,
        _ctx: &WorkflowContextView,
        decision: &BatchDecision,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let held = self
            .batch
            .as_ref()
            .is_some_and(|b| b.prepare.batch_id == decision.batch_id);
        match self.batch_fate(&decision.batch_id) {
            _ if held => Ok(()),
            Some(BatchFate::Committed) => Ok(()),
            Some(fate) => Err(format!(
                "{}: batch {} was not applied here: {}",
                refusal::BATCH_RELEASED,
                decision.batch_id,
                match fate {
                    BatchFate::Expired => "its lease ran out before the commit arrived",
                    _ => "it was aborted",
                }
            )
            .into()),
            None => Err(format!(
                "NO_SUCH_BATCH: batch {} is not prepared here",
                decision.batch_id
            )
            .into()),
        }
    }

    /// Applies the prepared events, in order, then releases the order. Committing again
    /// answers the current state.
    #[update(name = "commit_batch")]
    pub fn commit_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: BatchDecision,
    ) -> ApplyOutcome {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        if let Some(held) = self
            .batch
            .take_if(|b| b.prepare.batch_id == decision.batch_id)
        {
            let order = self.order_mut();
            for event in held.prepare.events {
                // Nothing could change the order while it was held, so this cannot fail; record
                // rather than panic if it ever did.
                if let Err(rejection) = order.apply(graph, event.clone(), &now) {
                    order.record_rejection(rejected(
                        "commit_batch",
                        Some(&event),
                        &rejection,
                        &now,
                    ));
                }
            }
            self.finish_batch(decision.batch_id, BatchFate::Committed, &now);
        }
        self.order().outcome(graph, true)
    }

    /// Releases the order without applying anything (idempotent). An abort that arrives before
    /// its prepare is remembered, so the late prepare cannot hold the order.
    #[update(name = "abort_batch")]
    pub fn abort_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: BatchDecision,
    ) -> ApplyOutcome {
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        let held = self
            .batch
            .take_if(|b| b.prepare.batch_id == decision.batch_id)
            .is_some();
        if held || self.batch_fate(&decision.batch_id).is_none() {
            self.finish_batch(decision.batch_id, BatchFate::Aborted, &now);
        }
        self.order().outcome(&DELIVERY_ORDER_V1, false)
    }

    /// Applies one event. The validator has already refused anything not allowed now (and
    /// answered retries), so a refused update leaves no trace in history.
    #[update(name = "apply_event")]
    pub fn apply_event(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        event: EventEnvelope,
    ) -> ApplyOutcome {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        self.note_history(ctx);
        let now = rfc3339(ctx.workflow_time());
        let order = self
            .order
            .as_mut()
            .expect("the validator refuses updates without an order");
        match order.apply(graph, event.clone(), &now) {
            Ok(outcome) => outcome,
            // Unreachable while validator and handler see the same state; kept total so a
            // future change cannot panic a workflow task.
            Err(rejection) => {
                order.record_rejection(rejected("apply_event", Some(&event), &rejection, &now));
                order.outcome(graph, false)
            }
        }
    }

    #[query(name = "state")]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<DeliveryOrderView> {
        self.order.as_ref().map(|_| self.view())
    }
}

/// Patch id of the read-model projection (added after the first histories were recorded).
pub const READ_MODEL_PATCH: &str = "read-model-projection-v1";
/// Patch id of the sender checks (own customer, bound partner) and the partner-event wait.
pub const SENDER_CHECKS_PATCH: &str = "sender-checks-v1";
/// Patch id of the batch-hold lease timer.
pub const BATCH_LEASE_PATCH: &str = "batch-lease-v1";

/// How a lifecycle run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LifecycleEnd {
    /// The order reached a terminal state (and a replacement was started if reshipped).
    Finished,
    /// History grew long: the run hands over to a new one.
    ContinueAsNew,
}

/// Moves the order through the graph until a terminal state, then starts a replacement if it was
/// reshipped; or stops at a safe point when the history grew long, to continue as new.
async fn drive_lifecycle(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
) -> WorkflowResult<LifecycleEnd> {
    let graph: &StateGraph = &DELIVERY_ORDER_V1;
    let mut published = None;
    loop {
        let (state, version) = ctx.state(|s| (s.order().state, s.order().version));
        if published != Some(version) {
            ctx.upsert_search_attributes(ctx.state(|s| search_attributes(s.order())));
            published = Some(version);
        }
        if graph.is_terminal(state) {
            break;
        }
        if ctx.history_length() >= HISTORY_LIMIT || ctx.continue_as_new_suggested() {
            ctx.state_mut(|s| s.continue_due = true);
        }
        if ctx.state(|s| s.continue_due) {
            ctx.state_mut(|s| s.continuing = true);
            return Ok(LifecycleEnd::ContinueAsNew);
        }
        if state == State::Created {
            await_pickup(ctx, version).await?;
        } else {
            await_next_event(ctx, state, version).await?;
        }
    }
    if ctx.state(|s| s.order().state) == State::Reshipped {
        start_replacement(ctx).await;
    }
    ctx.state_mut(|s| s.lifecycle_done = true);
    Ok(LifecycleEnd::Finished)
}

/// Whether a handler should mark the run for continue-as-new (the same test as the lifecycle's).
fn history_is_long<W>(ctx: &SyncWorkflowContext<W>) -> bool {
    ctx.history_length() >= HISTORY_LIMIT || ctx.continue_as_new_suggested()
}

/// Writes every version of the order to the read model, in order, alongside the lifecycle: a
/// read model that is down delays only the read side, never a deadline or a partner call. The
/// run ends (or continues as new) once the read model holds the last version.
async fn project_read_model(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
) -> WorkflowResult<()> {
    loop {
        ctx.wait_condition(|s| {
            Some(s.order().version) != s.projected || s.lifecycle_done || s.continuing
        })
        .await?;
        let (version, projected, stopping) = ctx.state(|s| {
            (
                s.order().version,
                s.projected,
                s.lifecycle_done || s.continuing,
            )
        });
        if Some(version) == projected {
            if stopping {
                return Ok(());
            }
            continue;
        }
        let batch = ctx.state(|s| Projection::of(s.order(), projected.unwrap_or(0)));
        match ctx
            .execute_activity(ProjectEvents, batch, retried_until_done())
            .await
        {
            Ok(outcome) => ctx.state_mut(|s| s.projected = Some(outcome.version)),
            // Retries are unlimited, so only cancellation of the run ends them.
            Err(error) => {
                if !ctx.is_replaying() {
                    tracing::warn!(%error, "read model projection stopped");
                }
                return Err(WorkflowTermination::cancelled());
            }
        }
    }
}

/// Releases a batch hold whose lease ran out: a coordinator that was terminated, reset or never
/// decides cannot keep the order locked.
async fn release_expired_batches(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
) -> WorkflowResult<()> {
    loop {
        ctx.wait_condition(|s| s.batch.is_some() || s.lifecycle_done || s.continuing)
            .await?;
        let Some((batch_id, until)) = ctx.state(|s| {
            s.batch
                .as_ref()
                .filter(|_| !s.lifecycle_done && !s.continuing)
                .map(|b| (b.prepare.batch_id.clone(), b.lease_until_ms))
        }) else {
            return Ok(());
        };
        let left = until.saturating_sub(epoch_ms(ctx.workflow_time()));
        let mut lease = pin!(ctx.timer(Duration::from_millis(left.max(1))));
        let held = batch_id.clone();
        let mut ended = pin!(ctx.wait_condition(move |s| {
            s.batch.as_ref().map(|b| &b.prepare.batch_id) != Some(&held) || s.continuing
        }));
        select! {
            ended = ended.as_mut() => {
                lease.cancel();
                ended?;
            }
            fired = lease.as_mut() => {
                if fired == TimerResult::Cancelled {
                    return Err(WorkflowTermination::cancelled());
                }
                let now = rfc3339(ctx.workflow_time());
                if !ctx.is_replaying() {
                    tracing::warn!(%batch_id, "batch lease ran out; the delivery order releases itself");
                }
                ctx.state_mut(|s| {
                    if s.batch.take_if(|b| b.prepare.batch_id == batch_id).is_some() {
                        s.finish_batch(batch_id, BatchFate::Expired, &now);
                    }
                });
            }
        }
    }
}

impl DeliveryOrderWorkflow {
    /// A batch ended: remember how, release the order, apply what waited.
    fn finish_batch(&mut self, batch_id: String, fate: BatchFate, now: &str) {
        if self.finished_batches.len() == BATCHES_KEPT {
            self.finished_batches.pop_front();
        }
        self.finished_batches.push_back((batch_id, fate));
        self.release_deferred(now);
    }

    fn batch_fate(&self, batch_id: &str) -> Option<BatchFate> {
        self.finished_batches
            .iter()
            .find(|(id, _)| id == batch_id)
            .map(|(_, fate)| *fate)
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

    /// Whether `event` must wait now rather than apply.
    fn must_wait(&self, event: &EventEnvelope) -> bool {
        self.batch.is_some() || self.partner_unconfirmed(event)
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
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Event { signal, event } if !self.must_wait(&event) => {
                    self.apply_external(&signal, event, now)
                }
                Deferred::Own {
                    event_type,
                    data,
                    actor,
                    tag,
                } if self.batch.is_none() => self.apply_own(event_type, data, actor, &tag, now),
                still_waiting => self.deferred.push(still_waiting),
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

    /// Marks the run for continue-as-new once its history is long.
    fn note_history(&mut self, ctx: &SyncWorkflowContext<Self>) {
        if history_is_long(ctx) {
            self.continue_due = true;
        }
    }

    fn continuation(&self) -> Continuation {
        Continuation {
            order: self.order().clone(),
            batch: self.batch.clone(),
            deferred: self.deferred.clone(),
            finished_batches: self.finished_batches.clone(),
            projected: self.projected,
            deadline: self.deadline.clone(),
            runs: self.runs,
        }
    }

    /// Applies an event the workflow itself raises (timer, partner refusal).
    fn apply_own(
        &mut self,
        event_type: EventType,
        data: Map<String, Value>,
        actor: Actor,
        tag: &str,
        now: &str,
    ) {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let order = self.order_mut();
        let event = EventEnvelope {
            event_id: order.internal_event_id(tag),
            event_type,
            data: Value::Object(data),
            actor,
            correlation_id: None,
            pickup_id: None,
        };
        if let Err(rejection) = order.apply_own(graph, event.clone(), now) {
            // The graph check (`defects`) guarantees timers send allowed events, and a deferred
            // one may have been overtaken by the batch; record rather than panic.
            order.record_rejection(rejected(tag, Some(&event), &rejection, now));
        }
    }

    /// Applies an event that arrived by signal; what is not allowed is recorded as rejected.
    fn apply_external(&mut self, signal: &str, event: EventEnvelope, now: &str) {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let order = self.order_mut();
        if let Err(rejection) = order.apply(graph, event.clone(), now) {
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
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let order = self.order().clone();
        DeliveryOrderView {
            allowed_events: graph.allowed_events(order.state),
            terminal: graph.is_terminal(order.state),
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
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
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
        let event = match parse_signal(graph, signal, bytes, fresh_id) {
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
        let waiting = self
            .deferred
            .iter()
            .filter(|d| matches!(d, Deferred::Event { .. }))
            .count();
        if waiting >= DEFERRED_KEPT {
            let full = Rejection::InvalidSignal(format!(
                "{signal}: the delivery order is held and {DEFERRED_KEPT} events already wait; send it again later"
            ));
            self.order_mut()
                .record_rejection(rejected(signal, Some(&event), &full, &now));
            return;
        }
        self.deferred.push(Deferred::Event {
            signal: signal.to_owned(),
            event,
        });
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

fn search_attributes(order: &DeliveryOrder) -> Vec<SearchAttributeUpdate> {
    let mut updates = vec![
        DELIVERY_STATE.value_set(order.state.to_string()),
        ORDERING_ID.value_set(order.ordering_id.clone()),
        CUSTOMER_ID.value_set(order.customer_id.clone()),
    ];
    if let Some(number) = &order.partner.partner_order_number {
        updates.push(PARTNER_ORDER_NUMBER.value_set(number.clone()));
    }
    if let Some(reason) = order.failure_reason {
        updates.push(FAILURE_REASON.value_set(reason.to_string()));
    }
    updates
}

/// Applies an event the workflow itself raises (timer, partner refusal).
fn apply_own_event(
    ctx: &WorkflowContext<DeliveryOrderWorkflow>,
    event_type: EventType,
    data: Map<String, Value>,
    actor: Actor,
    tag: &str,
) {
    let now = rfc3339(ctx.workflow_time());
    ctx.state_mut(|s| {
        if s.batch.is_some() {
            // A batch holds the order: the event waits until it is released.
            s.deferred.push(Deferred::Own {
                event_type,
                data,
                actor,
                tag: tag.to_owned(),
            });
        } else {
            s.apply_own(event_type, data, actor, tag, &now);
        }
    });
}

/// How long to wait for `timer` of the state at `version`: the input's override or the graph
/// default, less what a previous run of this order already waited.
fn deadline_left(
    ctx: &WorkflowContext<DeliveryOrderWorkflow>,
    version: u64,
    timer: &str,
    default: Duration,
) -> Duration {
    let now = epoch_ms(ctx.workflow_time());
    let length = ctx
        .state(|s| s.order().input.deadlines.get(timer))
        .unwrap_or(default);
    let due = ctx.state_mut(|s| match &s.deadline {
        Some(d) if d.version == version && d.timer == timer => d.due_ms,
        _ => {
            let due_ms = now + length.as_millis() as u64;
            s.deadline = Some(Deadline {
                version,
                timer: timer.to_owned(),
                due_ms,
            });
            due_ms
        }
    });
    // A zero-length timer is refused by the server; a deadline already past fires at once.
    Duration::from_millis(due.saturating_sub(now).max(1))
}

/// CREATED: ask the partner for a pickup while waiting for the next event or the pickup deadline.
async fn await_pickup(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
    version: u64,
) -> WorkflowResult<()> {
    let graph: &StateGraph = &DELIVERY_ORDER_V1;
    let (timer_name, timer) = graph
        .timer_for(State::Created)
        .expect("the graph has a pickup deadline");
    if deadline_waits(ctx, timer_name) {
        return wait_for_change(ctx, version).await;
    }
    let deadline = deadline_left(ctx, version, timer_name, timer.default);
    let request = ctx.state(|s| {
        let order = s.order();
        PickupRequest {
            delivery_order_id: order.delivery_order_id.clone(),
            ordering_id: order.ordering_id.clone(),
            shipping_address: order.input.shipping_address.clone(),
            items: order.input.items.clone(),
            notes: order.input.notes.clone(),
        }
    });
    ctx.state_mut(|s| s.pickup_pending = true);
    let mut deadline_timer = pin!(ctx.timer(deadline));
    let mut pickup = pin!(ctx.execute_activity(RequestPickup, request, pickup_options(deadline)));
    loop {
        let mut changed =
            pin!(ctx.wait_condition(move |s| { s.order().version != version || s.continue_due }));
        select! {
            changed = changed.as_mut() => {
                changed?;
                break;
            }
            outcome = pickup.as_mut() => {
                let now = rfc3339(ctx.workflow_time());
                ctx.state_mut(|s| s.pickup_pending = false);
                match outcome {
                    Ok(PickupOutcome::Accepted { pickup_id, partner_id }) => {
                        ctx.state_mut(|s| s.bind_partner(partner_id, pickup_id, &now));
                    }
                    Ok(PickupOutcome::Rejected { code, message }) => {
                        ctx.state_mut(|s| s.order_mut().partner.rejected = Some(format!("{code}: {message}")));
                        let mut data = Map::new();
                        data.insert("reason".into(), FailureReason::PartnerRejected.as_str().into());
                        data.insert("detail".into(), format!("{code}: {message}").into());
                        apply_own_event(ctx, EventType::DeliveryFailed, data, Actor::new(ActorKind::Partner, "partner-api"), "partner_rejected");
                    }
                    // Only the schedule-to-close limit ends the retries, and it equals the
                    // pickup deadline: the deadline timer decides what happens next.
                    Err(error) if !ctx.is_replaying() => tracing::warn!(%error, "pickup request gave up"),
                    Err(_) => {}
                }
                // Partner events that waited for the answer apply now (or are refused).
                ctx.state_mut(|s| s.release_deferred(&now));
            }
            fired = deadline_timer.as_mut() => {
                if fired == TimerResult::Cancelled {
                    return Err(WorkflowTermination::cancelled());
                }
                apply_own_event(ctx, timer.event, timer.data.clone(), Actor::system(timer_name), timer_name);
                break;
            }
        }
    }
    if !deadline_timer.is_terminated() {
        deadline_timer.cancel();
    }
    if !pickup.is_terminated() {
        pickup.cancel();
    }
    let now = rfc3339(ctx.workflow_time());
    ctx.state_mut(|s| {
        s.pickup_pending = false;
        s.release_deferred(&now);
    });

    // Leaving CREATED any way but PICKED_UP: withdraw the job the partner accepted.
    let (state, pickup_id, order_id) = ctx.state(|s| {
        let o = s.order();
        (
            o.state,
            o.partner.pickup_id.clone(),
            o.delivery_order_id.clone(),
        )
    });
    // (Still CREATED when the run continues as new, or when the deadline fired while a batch
    // held the order: the event waits, and so does the pickup.)
    if state != State::PickedUp
        && state != State::Created
        && let Some(pickup_id) = pickup_id
    {
        let request = CancelPickupRequest {
            delivery_order_id: order_id,
            pickup_id,
            reason: format!("delivery order is {state}"),
        };
        match ctx
            .execute_activity(CancelPickup, request, cancel_options())
            .await
        {
            Ok(_) => ctx.state_mut(|s| s.order_mut().partner.cancelled = true),
            Err(error) if !ctx.is_replaying() => {
                tracing::warn!(%error, "could not withdraw the partner pickup")
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Any other non-terminal state: wait for the next event, or this state's deadline timer.
async fn await_next_event(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
    state: State,
    version: u64,
) -> WorkflowResult<()> {
    let graph: &StateGraph = &DELIVERY_ORDER_V1;
    let Some((timer_name, timer)) = graph.timer_for(state) else {
        return wait_for_change(ctx, version).await;
    };
    if deadline_waits(ctx, timer_name) {
        return wait_for_change(ctx, version).await;
    }
    let length = deadline_left(ctx, version, timer_name, timer.default);
    let mut changed =
        pin!(ctx.wait_condition(move |s| { s.order().version != version || s.continue_due }));
    let mut deadline = pin!(ctx.timer(length));
    select! {
        changed = changed.as_mut() => {
            deadline.cancel();
            changed?;
        }
        fired = deadline.as_mut() => {
            if fired == TimerResult::Cancelled {
                return Err(WorkflowTermination::cancelled());
            }
            apply_own_event(ctx, timer.event, timer.data.clone(), Actor::system(timer_name), timer_name);
        }
    }
    Ok(())
}

/// Until the order changes, or the run is due to continue as new.
async fn wait_for_change(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
    version: u64,
) -> WorkflowResult<()> {
    ctx.wait_condition(move |s| s.order().version != version || s.continue_due)
        .await?;
    Ok(())
}

/// The deadline `timer` fired already and its event waits for a batch to release the order:
/// no second timer.
fn deadline_waits(ctx: &WorkflowContext<DeliveryOrderWorkflow>, timer: &str) -> bool {
    ctx.state(|s| {
        s.deferred
            .iter()
            .any(|d| matches!(d, Deferred::Own { tag, .. } if tag == timer))
    })
}

/// Patch id of starting the replacement through an activity (runs before it started a child
/// workflow once and only logged a refused start).
pub const REPLACEMENT_ACTIVITY_PATCH: &str = "replacement-start-activity-v1";

/// RESHIPPED: start the replacement delivery order for the same ordering. Its id derives from
/// this order's id, and it outlives this workflow.
async fn start_replacement(ctx: &mut WorkflowContext<DeliveryOrderWorkflow>) {
    let input = ctx.state(|s| {
        let order = s.order();
        let reship_event = order.events.last();
        DeliveryOrderInput {
            delivery_order_id: order
                .replaced_by_id
                .clone()
                .expect("set by OPERATOR_RESHIP"),
            replaces_id: Some(order.delivery_order_id.clone()),
            created_by: reship_event.map(|e| e.actor.clone()),
            correlation_id: reship_event.and_then(|e| e.correlation_id.clone()),
            ..order.input.clone()
        }
    });
    if ctx.patched(REPLACEMENT_ACTIVITY_PATCH) {
        // Started by an activity retried until it lands: a start the server refuses now (the
        // id taken for a while, Temporal unavailable) is tried again, never only logged.
        if let Err(error) = ctx
            .execute_activity(StartReplacement, input, retried_until_done())
            .await
            && !ctx.is_replaying()
        {
            tracing::error!(%error, "starting the replacement delivery order was cancelled");
        }
        return;
    }
    let options = ChildWorkflowOptions::builder()
        .workflow_id(workflow_id(&input.delivery_order_id))
        .parent_close_policy(ParentClosePolicy::Abandon)
        .static_summary(format!(
            "Reshipment of delivery order {}",
            ctx.state(|s| s.order().delivery_order_id.clone())
        ))
        .build();
    if let Err(error) = ctx
        .start_child_workflow(DeliveryOrderWorkflow::run, StartInput::from(input), options)
        .await
        && !ctx.is_replaying()
    {
        tracing::error!(%error, "could not start the replacement delivery order");
    }
}

fn pickup_options(deadline: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: deadline,
        start_to_close: Duration::from_secs(30),
    })
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(60))
            .build(),
    )
    .build()
}

/// Activities that must land (read-model projections, batch decisions): retried without limit,
/// backing off to every 10 s, until they do.
pub(crate) fn retried_until_done() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .build()
}

fn cancel_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(10)
                .build(),
        )
        .build()
}

/// Workflow time as milliseconds since the Unix epoch.
fn epoch_ms(time: Option<SystemTime>) -> u64 {
    time.unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Workflow time as RFC 3339 (milliseconds, UTC). Deterministic: it is the task's start time.
pub(crate) fn rfc3339(time: Option<SystemTime>) -> String {
    let time = time.unwrap_or(SystemTime::UNIX_EPOCH);
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
