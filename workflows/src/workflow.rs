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
    ActivityOptions, CancellableFuture, ChildWorkflowOptions, ParentClosePolicy,
    SyncWorkflowContext, TimerResult, WorkflowContext, WorkflowContextView, WorkflowResult,
    WorkflowTermination,
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
use crate::machine::{DeliveryOrder, Rejection};
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
            StartInput::Invalid(_) => Err(serde::ser::Error::custom(
                "an invalid delivery order input cannot start a workflow",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for StartInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
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
}

/// The events of an atomic batch for this order: checked together at prepare, applied together
/// at commit. While prepared, the order takes nothing else (see [`DeliveryOrderWorkflow`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPrepare {
    pub batch_id: String,
    pub events: Vec<EventEnvelope>,
}

/// Commit or abort of a prepared batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDecision {
    pub batch_id: String,
}

/// Something that arrived while a batch held the order, applied once it is released.
#[derive(Debug, Clone)]
enum Deferred {
    Signal {
        name: String,
        bytes: Vec<u8>,
    },
    Own {
        event_type: EventType,
        data: Map<String, Value>,
        actor: Actor,
        tag: String,
    },
}

/// How many finished batch ids an order remembers (for idempotent commits and aborts).
const BATCHES_KEPT: usize = 20;

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
    batch: Option<BatchPrepare>,
    deferred: Vec<Deferred>,
    finished_batches: VecDeque<String>,
}

#[workflow_methods]
impl DeliveryOrderWorkflow {
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: StartInput) -> Self {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let checked = match input {
            StartInput::Valid(input)
                if ctx.workflow_id() != workflow_id(&input.delivery_order_id) =>
            {
                Err(format!(
                    "INVALID_INPUT: workflow id must be {:?} for this delivery order, got {:?}",
                    workflow_id(&input.delivery_order_id),
                    ctx.workflow_id()
                ))
            }
            StartInput::Valid(input) => Ok(*input),
            StartInput::Invalid(error) => Err(error),
        };
        match checked {
            Ok(input) => Self {
                order: Some(DeliveryOrder::new(graph, input, rfc3339(ctx.start_time()))),
                start_error: None,
                pickup_pending: false,
                lifecycle_done: false,
                batch: None,
                deferred: Vec::new(),
                finished_batches: VecDeque::new(),
            },
            Err(error) => Self {
                order: None,
                start_error: Some(error),
                pickup_pending: false,
                lifecycle_done: false,
                batch: None,
                deferred: Vec::new(),
                finished_batches: VecDeque::new(),
            },
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<DeliveryOrderView> {
        if let Some(error) = ctx.state(|s| s.start_error.clone()) {
            return Err(ApplicationFailure::non_retryable(error).into());
        }
        // Runs started before the read model existed replay without projections.
        if ctx.patched(READ_MODEL_PATCH) {
            let mut lifecycle_ctx = ctx.clone();
            let mut projector_ctx = ctx.clone();
            let (lifecycle, projection) = join!(
                drive_lifecycle(&mut lifecycle_ctx),
                project_read_model(&mut projector_ctx)
            );
            lifecycle?;
            projection?;
        } else {
            drive_lifecycle(ctx).await?;
        }
        Ok(ctx.state(|s| s.view()))
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
        if let Some(batch) = &self.batch {
            return Err(format!(
                "LOCKED_BY_BATCH: batch {} holds this delivery order until it commits or aborts; retry shortly",
                batch.batch_id
            )
            .into());
        }
        order.check(&DELIVERY_ORDER_V1, event)?;
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
            Some(held) if held.batch_id == prepare.batch_id => return Ok(()),
            Some(held) => {
                return Err(format!(
                    "LOCKED_BY_BATCH: batch {} holds this delivery order",
                    held.batch_id
                )
                .into());
            }
            None => {}
        }
        if self.finished_batches.contains(&prepare.batch_id) {
            return Err(format!("BATCH_FINISHED: batch {} is over", prepare.batch_id).into());
        }
        if prepare.events.is_empty() {
            return Err("BATCH_REJECTED:0: a batch needs at least one event".into());
        }
        // Apply them to a copy, in order: all must go through.
        let mut trial = order.clone();
        for (index, event) in prepare.events.iter().enumerate() {
            if event.actor.kind == ActorKind::System {
                return Err(format!(
                    "BATCH_REJECTED:{index}: FORBIDDEN_ACTOR: actor kind system is reserved for the workflow itself"
                )
                .into());
            }
            trial
                .apply(&DELIVERY_ORDER_V1, event.clone(), "")
                .map_err(|rejection| format!("BATCH_REJECTED:{index}: {rejection}"))?;
        }
        Ok(())
    }

    /// Holds the order for a batch whose events all apply (the validator checked them).
    #[update(name = "prepare_batch")]
    pub fn prepare_batch(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        prepare: BatchPrepare,
    ) -> ApplyOutcome {
        if self.batch.is_none() {
            self.batch = Some(prepare);
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
            .is_some_and(|b| b.batch_id == decision.batch_id);
        if held || self.finished_batches.contains(&decision.batch_id) {
            Ok(())
        } else {
            Err(format!(
                "NO_SUCH_BATCH: batch {} is not prepared here",
                decision.batch_id
            )
            .into())
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
        if let Some(batch) = self.batch.take_if(|b| b.batch_id == decision.batch_id) {
            let now = rfc3339(ctx.workflow_time());
            let order = self.order_mut();
            for event in batch.events {
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
            self.finish_batch(ctx, decision.batch_id);
        }
        self.order().outcome(graph, true)
    }

    /// Releases the order without applying anything (idempotent).
    #[update(name = "abort_batch")]
    pub fn abort_batch(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: BatchDecision,
    ) -> ApplyOutcome {
        if self
            .batch
            .take_if(|b| b.batch_id == decision.batch_id)
            .is_some()
        {
            self.finish_batch(ctx, decision.batch_id);
        }
        self.order().outcome(&DELIVERY_ORDER_V1, false)
    }

    /// Applies one event. The validator has already refused anything not allowed now, so a
    /// refused update leaves no trace in history.
    #[update(name = "apply_event")]
    pub fn apply_event(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        event: EventEnvelope,
    ) -> ApplyOutcome {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
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

/// Moves the order through the graph until a terminal state, then starts a replacement if it was
/// reshipped.
async fn drive_lifecycle(ctx: &mut WorkflowContext<DeliveryOrderWorkflow>) -> WorkflowResult<()> {
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
    Ok(())
}

/// Writes every version of the order to the read model, in order, alongside the lifecycle: a
/// read model that is down delays only the read side, never a deadline or a partner call. The
/// run ends once the read model holds the final version.
async fn project_read_model(
    ctx: &mut WorkflowContext<DeliveryOrderWorkflow>,
) -> WorkflowResult<()> {
    let mut projected: Option<u64> = None;
    loop {
        ctx.wait_condition(move |s| Some(s.order().version) != projected || s.lifecycle_done)
            .await?;
        let (version, done) = ctx.state(|s| (s.order().version, s.lifecycle_done));
        if Some(version) == projected {
            if done {
                return Ok(());
            }
            continue;
        }
        let batch = ctx.state(|s| Projection::of(s.order(), projected.unwrap_or(0)));
        match ctx
            .execute_activity(ProjectEvents, batch, retried_until_done())
            .await
        {
            Ok(outcome) => projected = Some(outcome.version),
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

impl DeliveryOrderWorkflow {
    /// A batch ended: remember its id, release the order, apply what waited.
    fn finish_batch(&mut self, ctx: &mut SyncWorkflowContext<Self>, batch_id: String) {
        if self.finished_batches.len() == BATCHES_KEPT {
            self.finished_batches.pop_front();
        }
        self.finished_batches.push_back(batch_id);
        let now = rfc3339(ctx.workflow_time());
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Signal { name, bytes } => self.apply_signal(ctx, &name, &bytes),
                Deferred::Own {
                    event_type,
                    data,
                    actor,
                    tag,
                } => self.apply_own(event_type, data, actor, &tag, &now),
            }
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
            event_id: format!("{}:{tag}:{}", order.delivery_order_id, order.version + 1),
            event_type,
            data: Value::Object(data),
            actor,
            correlation_id: None,
        };
        if let Err(rejection) = order.apply(graph, event.clone(), now) {
            // The graph check (`defects`) guarantees timers send allowed events, and a deferred
            // one may have been overtaken by the batch; record rather than panic.
            order.record_rejection(rejected(tag, Some(&event), &rejection, now));
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
            order,
        }
    }

    /// Every signal lands here. Nothing a sender puts in a signal can fail the workflow task:
    /// what does not parse or is not allowed now is recorded as rejected and ignored. While a
    /// batch holds the order, signals wait and are applied, in order, once it is released.
    fn on_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, signal: &str, payload: RawValue) {
        let bytes = payload
            .payloads
            .first()
            .map(|p| p.data.clone())
            .unwrap_or_default();
        if self.batch.is_some() {
            self.deferred.push(Deferred::Signal {
                name: signal.to_owned(),
                bytes,
            });
            return;
        }
        self.apply_signal(ctx, signal, &bytes);
    }

    fn apply_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, signal: &str, bytes: &[u8]) {
        let graph: &StateGraph = &DELIVERY_ORDER_V1;
        let now = rfc3339(ctx.workflow_time());
        let Some(order) = self.order.as_mut() else {
            return;
        };
        let fresh_id = || format!("{}:{signal}:{}", order_id_prefix(ctx), ctx.uuid4());
        let parsed = parse_signal(graph, signal, bytes, fresh_id);
        let (event, rejection) = match parsed {
            Ok(event) => match order.apply(graph, event.clone(), &now) {
                Ok(_) => return,
                Err(rejection) => (Some(event), rejection),
            },
            Err(rejection) => (None, rejection),
        };
        if !ctx.is_replaying() {
            tracing::warn!(signal, reason = %rejection, "signal rejected");
        }
        order.record_rejection(rejected(signal, event.as_ref(), &rejection, &now));
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

/// Timer length for `timer` on this order: the input's override or the graph default.
fn timer_length(
    ctx: &WorkflowContext<DeliveryOrderWorkflow>,
    timer: &str,
    default: Duration,
) -> Duration {
    ctx.state(|s| s.order().input.deadlines.get(timer))
        .unwrap_or(default)
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
    let deadline = timer_length(ctx, timer_name, timer.default);
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
        let mut changed = pin!(ctx.wait_condition(move |s| s.order().version != version));
        select! {
            changed = changed.as_mut() => {
                changed?;
                break;
            }
            outcome = pickup.as_mut() => {
                ctx.state_mut(|s| s.pickup_pending = false);
                match outcome {
                    Ok(PickupOutcome::Accepted { pickup_id }) => {
                        ctx.state_mut(|s| s.order_mut().partner.pickup_id = Some(pickup_id));
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
    ctx.state_mut(|s| s.pickup_pending = false);

    // Leaving CREATED any way but PICKED_UP: withdraw the job the partner accepted.
    let (state, pickup_id, order_id) = ctx.state(|s| {
        let o = s.order();
        (
            o.state,
            o.partner.pickup_id.clone(),
            o.delivery_order_id.clone(),
        )
    });
    // (Still CREATED only when a deadline fired while a batch held the order: the event waits,
    // and so does the pickup.)
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
    let mut changed = pin!(ctx.wait_condition(move |s| s.order().version != version));
    let Some((timer_name, timer)) = graph.timer_for(state) else {
        changed.await?;
        return Ok(());
    };
    let length = timer_length(ctx, timer_name, timer.default);
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

/// Workflow time as RFC 3339 (milliseconds, UTC). Deterministic: it is the task's start time.
pub(crate) fn rfc3339(time: Option<SystemTime>) -> String {
    let time = time.unwrap_or(SystemTime::UNIX_EPOCH);
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
