//! What a delivery order does over time, beside its handlers: it moves through the graph with
//! deadline timers and the partner's pickup, projects every version to the read model, releases
//! a batch hold whose lease ran out, and starts the replacement of a reshipped order.

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::future::FusedFuture;
use serde_json::Map;
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributeUpdate};
use temporalio_sdk::workflows::{join, select};
use temporalio_sdk::{
    CancellableFuture, ChildWorkflowOptions, ParentClosePolicy, TimerResult, WorkflowContext,
    WorkflowResult, WorkflowTermination,
};

use super::options::{cancel_options, pickup_options, retried_until_done};
use super::{
    BATCH_LEASE_PATCH, COORDINATOR_RECHECK, Deadline, DeliveryOrderWorkflow, HISTORY_LIMIT,
    LEASE_ASKS_COORDINATOR_PATCH, PARTNER_HEARTBEAT_PATCH, PICKUP_SETTLE_PATIENCE,
    PICKUP_SETTLES_PATCH, READ_MODEL_PATCH, RECHECK_BACKS_OFF_PATCH, REPLACEMENT_ACTIVITY_PATCH,
    SENDER_CHECKS_PATCH, StartInput, UNBOUND_PARTNER_PATCH, coordinator_recheck, graph,
    workflow_id,
};
use crate::activities::{
    BatchCoordinatorRunning, CancelPickup, CancelPickupRequest, PickupOutcome, PickupRequest,
    ProjectEvents, Projection, RequestPickup, StartReplacement,
};
use crate::clock::{epoch_ms, rfc3339};
use crate::domain::{Actor, ActorKind, DeliveryOrderInput, EventType, FailureReason, State};
use crate::machine::DeliveryOrder;
use crate::projection::{LOCAL_PROJECTION_PATCH, project};

const DELIVERY_STATE: SearchAttributeKey<String> = SearchAttributeKey::keyword("DeliveryState");
const ORDERING_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("OrderingId");
const CUSTOMER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("CustomerId");
const PARTNER_ORDER_NUMBER: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("PartnerOrderNumber");
const FAILURE_REASON: SearchAttributeKey<String> = SearchAttributeKey::keyword("FailureReason");

type Ctx = WorkflowContext<DeliveryOrderWorkflow>;

/// How a lifecycle run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LifecycleEnd {
    /// The order reached a terminal state (and a replacement was started if reshipped).
    Finished,
    /// History grew long: the run hands over to a new one.
    ContinueAsNew,
}

/// The whole run of a valid order: the lifecycle, with the projector and the lease keeper
/// beside it in runs recorded since they exist.
pub(super) async fn run(ctx: &mut Ctx) -> WorkflowResult<LifecycleEnd> {
    // Runs recorded before the sender checks replay as they ran.
    let checks_senders = ctx.patched(SENDER_CHECKS_PATCH);
    ctx.state_mut(|s| s.order_mut().checks_senders = checks_senders);
    // Runs recorded before unbound partners were refused replay taking their events.
    let refuses_unbound = ctx.patched(UNBOUND_PARTNER_PATCH);
    ctx.state_mut(|s| {
        s.order_mut().refuses_unbound_partners = refuses_unbound;
        s.run_started = true;
    });
    // Runs started before the read model existed replay without projections.
    if !ctx.patched(READ_MODEL_PATCH) {
        return drive_lifecycle(ctx, false).await;
    }
    // Runs started before batch leases replay without the lease timer.
    let leases = ctx.patched(BATCH_LEASE_PATCH);
    // Runs started before a hold asked its coordinator release it as soon as the lease ends.
    let asks_coordinator = leases && ctx.patched(LEASE_ASKS_COORDINATOR_PATCH);
    // Runs started before that asked every 15 s, however long the coordinator ran.
    let recheck_backs_off = asks_coordinator && ctx.patched(RECHECK_BACKS_OFF_PATCH);
    // Runs started before a pickup request could settle cancel it at once. Asked here, at the
    // run's start, not where it matters: whether a request is still out there depends on how
    // events fell into workflow tasks, and a marker must not.
    let pickup_settles = ctx.patched(PICKUP_SETTLES_PATCH);
    // Runs started before projections ran locally replay with an activity task for each.
    let projects_locally = ctx.patched(LOCAL_PROJECTION_PATCH);
    // Runs started before the partner calls heartbeat wait out a killed worker's attempt.
    let heartbeats = ctx.patched(PARTNER_HEARTBEAT_PATCH);
    ctx.state_mut(|s| s.partner_heartbeats = heartbeats);
    let mut lifecycle_ctx = ctx.clone();
    let mut projector_ctx = ctx.clone();
    let mut lease_ctx = ctx.clone();
    let (lifecycle, projection, lease) = join!(
        drive_lifecycle(&mut lifecycle_ctx, pickup_settles),
        project_read_model(&mut projector_ctx, projects_locally),
        async {
            if leases {
                release_expired_batches(&mut lease_ctx, asks_coordinator, recheck_backs_off).await
            } else {
                Ok(())
            }
        }
    );
    projection?;
    lease?;
    lifecycle
}

/// Moves the order through the graph until a terminal state, then starts a replacement if it was
/// reshipped; or stops at a safe point when the history grew long, to continue as new.
async fn drive_lifecycle(ctx: &mut Ctx, pickup_settles: bool) -> WorkflowResult<LifecycleEnd> {
    let mut published = None;
    loop {
        let (state, version) = ctx.state(|s| (s.order().state, s.order().version));
        if published != Some(version) {
            ctx.upsert_search_attributes(ctx.state(|s| search_attributes(s.order())));
            published = Some(version);
        }
        if graph().is_terminal(state) {
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
            await_pickup(ctx, version, pickup_settles).await?;
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

/// Writes every version of the order to the read model, in order, alongside the lifecycle: a
/// read model that is down delays only the read side, never a deadline or a partner call. The
/// run ends (or continues as new) once the read model holds the last version.
///
/// With `locally`, each version is projected inside the workflow task that made it first
/// ([`project`], ADR 0007).
async fn project_read_model(ctx: &mut Ctx, locally: bool) -> WorkflowResult<()> {
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
        let outcome = project(ctx, ProjectEvents, batch, locally).await?;
        ctx.state_mut(|s| s.projected = Some(outcome.version));
    }
}

/// Releases a batch hold whose lease ran out: a coordinator that was terminated, reset or never
/// decides cannot keep the order locked. With `asks_coordinator`, a hold whose coordinator still
/// runs is kept (and asked about again later): that coordinator commits or aborts every order
/// of the batch, and an outage that delayed its commit past the lease must not leave the batch
/// applied on some orders only. With `backs_off`, the questions come less and less often, and
/// a history they made long continues as new (the hold goes with it).
async fn release_expired_batches(
    ctx: &mut Ctx,
    asks_coordinator: bool,
    backs_off: bool,
) -> WorkflowResult<()> {
    // The batch asked about, and how many times.
    let mut asked: Option<(String, u32)> = None;
    loop {
        ctx.wait_condition(|s| s.hold.is_holding() || s.lifecycle_done || s.continuing)
            .await?;
        let Some((batch_id, until)) = ctx.state(|s| {
            s.hold
                .lease()
                .filter(|_| !s.lifecycle_done && !s.continuing)
                .map(|(id, until)| (id.to_owned(), until))
        }) else {
            return Ok(());
        };
        let left = until.saturating_sub(epoch_ms(ctx.workflow_time()));
        let mut lease = pin!(ctx.timer(Duration::from_millis(left.max(1))));
        let held = batch_id.clone();
        let mut ended = pin!(ctx.wait_condition(move |s| !s.hold.holds(&held) || s.continuing));
        select! {
            ended = ended.as_mut() => {
                lease.cancel();
                ended?;
            }
            fired = lease.as_mut() => {
                if fired == TimerResult::Cancelled {
                    return Err(WorkflowTermination::cancelled());
                }
                if asks_coordinator && coordinator_running(ctx, &batch_id).await? {
                    let times = match &asked {
                        Some((id, n)) if *id == batch_id => *n,
                        _ => 0,
                    };
                    asked = Some((batch_id.clone(), times + 1));
                    let wait = if backs_off {
                        coordinator_recheck(times)
                    } else {
                        COORDINATOR_RECHECK
                    };
                    let until = epoch_ms(ctx.workflow_time()) + wait.as_millis() as u64;
                    ctx.state_mut(|s| s.hold.extend(&batch_id, until));
                    if backs_off
                        && (ctx.history_length() >= HISTORY_LIMIT
                            || ctx.continue_as_new_suggested())
                    {
                        ctx.state_mut(|s| s.continue_due = true);
                    }
                    continue;
                }
                let now = rfc3339(ctx.workflow_time());
                if !ctx.is_replaying() {
                    tracing::warn!(%batch_id, "batch lease ran out; the delivery order releases itself");
                }
                ctx.state_mut(|s| {
                    if s.hold.expire(&batch_id) {
                        s.release_deferred(&now);
                    }
                });
            }
        }
    }
}

/// Whether the coordinator of `batch_id` still runs (asked of Temporal by an activity, retried
/// until it answers).
async fn coordinator_running(ctx: &Ctx, batch_id: &str) -> WorkflowResult<bool> {
    match ctx
        .execute_activity(
            BatchCoordinatorRunning,
            batch_id.to_owned(),
            retried_until_done(),
        )
        .await
    {
        Ok(running) => {
            if running && !ctx.is_replaying() {
                tracing::info!(%batch_id, "batch lease ran out but its coordinator still runs; the hold stays");
            }
            Ok(running)
        }
        // Retries are unlimited, so only cancellation of the run ends them.
        Err(_) => Err(WorkflowTermination::cancelled()),
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

/// How long to wait for `timer` of the state at `version`: the input's override or the graph
/// default, less what a previous run of this order already waited.
fn deadline_left(ctx: &Ctx, version: u64, timer: &str, default: Duration) -> Duration {
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
/// With `pickup_settles`, an order that leaves CREATED lets a request still out answer first.
async fn await_pickup(ctx: &mut Ctx, version: u64, pickup_settles: bool) -> WorkflowResult<()> {
    let (timer_name, timer) = graph()
        .timer_for(State::Created)
        .expect("the graph has a pickup deadline");
    if ctx.state(|s| s.hold.own_event_waits(timer_name)) {
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
    let options = pickup_options(deadline, ctx.state(|s| s.partner_heartbeats));
    let mut pickup = pin!(ctx.execute_activity(RequestPickup, request, options));
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
                        ctx.state_mut(|s| {
                            s.order_mut().partner.rejected = Some(format!("{code}: {message}"));
                            let mut data = Map::new();
                            data.insert("reason".into(), FailureReason::PartnerRejected.as_str().into());
                            data.insert("detail".into(), format!("{code}: {message}").into());
                            s.raise_own(EventType::DeliveryFailed, data, Actor::new(ActorKind::Partner, "partner-api"), "partner_rejected", &now);
                        });
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
                let now = rfc3339(ctx.workflow_time());
                ctx.state_mut(|s| s.raise_own(timer.event, timer.data.clone(), Actor::system(timer_name), timer_name, &now));
                break;
            }
        }
    }
    if !deadline_timer.is_terminated() {
        deadline_timer.cancel();
    }
    if !pickup.is_terminated() {
        // A request still out may have booked the job at the partner already (its answer lost
        // with a killed worker, or slow). An order that leaves CREATED lets it answer, for a
        // while, so the job it booked is withdrawn below; a run that continues as new asks
        // again under the same key instead.
        let leaving = ctx.state(|s| s.order().state != State::Created && !s.continue_due);
        let mut settled = None;
        if pickup_settles && leaving {
            // An answer that came in this same task is taken as it is (live and on replay it may
            // reach the workflow before or after the event); only a request truly still out
            // starts the patience timer.
            settled = match futures::poll!(pickup.as_mut()) {
                Poll::Ready(outcome) => Some(outcome),
                Poll::Pending => {
                    let mut patience = pin!(ctx.timer(PICKUP_SETTLE_PATIENCE));
                    select! {
                        outcome = pickup.as_mut() => {
                            patience.cancel();
                            Some(outcome)
                        }
                        _ = patience.as_mut() => {
                            if !ctx.is_replaying() {
                                tracing::warn!("the pickup request never answered; a job it booked stays with the partner");
                            }
                            None
                        }
                    }
                }
            };
        }
        let outcome = match settled {
            Some(outcome) => outcome,
            None => {
                pickup.cancel();
                // The partner's answer may already be in this task, only not delivered yet: an
                // event and the pickup's completion that arrive in one workflow task reach the
                // workflow in either order (live, the event first; on replay, the completion
                // first). Taking the answer here makes both runs alike, and a job the partner
                // accepted is withdrawn below whichever came first. A request still out
                // resolves as cancelled at once.
                pickup.as_mut().await
            }
        };
        if let Ok(PickupOutcome::Accepted {
            pickup_id,
            partner_id,
        }) = outcome
        {
            let now = rfc3339(ctx.workflow_time());
            ctx.state_mut(|s| s.bind_partner(partner_id, pickup_id, &now));
        }
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
        let options = cancel_options(ctx.state(|s| s.partner_heartbeats));
        match ctx.execute_activity(CancelPickup, request, options).await {
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
async fn await_next_event(ctx: &mut Ctx, state: State, version: u64) -> WorkflowResult<()> {
    let Some((timer_name, timer)) = graph().timer_for(state) else {
        return wait_for_change(ctx, version).await;
    };
    if ctx.state(|s| s.hold.own_event_waits(timer_name)) {
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
            let now = rfc3339(ctx.workflow_time());
            ctx.state_mut(|s| s.raise_own(timer.event, timer.data.clone(), Actor::system(timer_name), timer_name, &now));
        }
    }
    Ok(())
}

/// Until the order changes, or the run is due to continue as new.
async fn wait_for_change(ctx: &mut Ctx, version: u64) -> WorkflowResult<()> {
    ctx.wait_condition(move |s| s.order().version != version || s.continue_due)
        .await?;
    Ok(())
}

/// RESHIPPED: start the replacement delivery order for the same ordering. Its id derives from
/// this order's id, and it outlives this workflow.
async fn start_replacement(ctx: &mut Ctx) {
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
