//! The two-phase batch lock of one delivery order, as plain data: which batch holds the order
//! and until when, how recent batches ended, and what waits meanwhile. No Temporal context here:
//! the workflow passes the order, the graph and the time in, so every rule is unit-tested.
//!
//! A batch first prepares (its events are checked together against a copy of the order, and the
//! order holds itself for it), then commits (the events apply) or aborts (nothing applies). A
//! hold has a lease: a batch that neither commits nor aborts in time expires and releases the
//! order. Every ended batch is remembered (a bounded number), so a late or repeated prepare
//! cannot hold the order again, an abort that overtook its prepare wins, and a commit repeats.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Actor, ActorKind, EventEnvelope, EventType};
use crate::graph::StateGraph;
use crate::machine::{DeliveryOrder, Rejection};
use crate::refusal::{Refusal, RejectionCode};
use crate::validation::check_ref_id;

/// Default and bounds of a batch hold's lease.
pub const DEFAULT_BATCH_LEASE: Duration = Duration::from_secs(30);
pub const MIN_BATCH_LEASE: Duration = Duration::from_secs(1);
pub const MAX_BATCH_LEASE: Duration = Duration::from_secs(600);

/// How many ended batches an order remembers (idempotent commits, late prepares refused).
const BATCHES_KEPT: usize = 50;
/// Most signals that may wait while the order is held; more are refused and recorded.
pub const DEFERRED_KEPT: usize = 100;

/// The events of an atomic batch for this order: checked together at prepare, applied together
/// at commit. While prepared, the order takes nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPrepare {
    pub batch_id: String,
    pub events: Vec<EventEnvelope>,
    /// How long the order holds itself for this batch at most (milliseconds); when the batch
    /// neither commits nor aborts in that time, the order releases itself. Default 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

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

/// The batch lock of one order and what waits for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchHold {
    held: Option<HeldBatch>,
    deferred: Vec<Deferred>,
    finished: VecDeque<(String, BatchFate)>,
}

/// The refusal of an event the workflow reserves for itself.
pub(crate) fn system_actor_refused() -> Refusal {
    Refusal::new(
        RejectionCode::ForbiddenActor,
        "actor kind system is reserved for the workflow itself",
    )
}

impl BatchHold {
    /// The hold as a previous run of the order handed it over.
    pub fn resume(
        held: Option<HeldBatch>,
        deferred: Vec<Deferred>,
        finished: VecDeque<(String, BatchFate)>,
    ) -> Self {
        Self {
            held,
            deferred,
            finished,
        }
    }

    pub fn held(&self) -> Option<&HeldBatch> {
        self.held.as_ref()
    }

    pub fn deferred(&self) -> &[Deferred] {
        &self.deferred
    }

    pub fn finished(&self) -> &VecDeque<(String, BatchFate)> {
        &self.finished
    }

    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Whether `batch_id` holds the order now.
    pub fn holds(&self, batch_id: &str) -> bool {
        self.held
            .as_ref()
            .is_some_and(|b| b.prepare.batch_id == batch_id)
    }

    /// How `batch_id` ended here, if it did (and is still remembered).
    pub fn fate(&self, batch_id: &str) -> Option<BatchFate> {
        self.finished
            .iter()
            .find(|(id, _)| id == batch_id)
            .map(|(_, fate)| *fate)
    }

    /// The held batch and when its lease runs out.
    pub fn lease(&self) -> Option<(&str, u64)> {
        self.held
            .as_ref()
            .map(|b| (b.prepare.batch_id.as_str(), b.lease_until_ms))
    }

    /// A single event (not part of a batch) may go ahead only while no batch holds the order.
    pub fn check_free(&self) -> Result<(), Refusal> {
        match &self.held {
            Some(held) => Err(Refusal::new(
                RejectionCode::LockedByBatch,
                format!(
                    "batch {} holds this delivery order until it commits or aborts (at most until its lease ends); retry shortly",
                    held.prepare.batch_id
                ),
            )),
            None => Ok(()),
        }
    }

    /// Whether `prepare` may hold the order: all its events must apply, in order, to a copy of
    /// `order`. `sender_refused` says which events the workflow refuses before the order sees
    /// them (a partner not confirmed yet, or not bound at all).
    pub fn check_prepare(
        &self,
        graph: &StateGraph,
        order: &DeliveryOrder,
        prepare: &BatchPrepare,
        sender_refused: impl Fn(&EventEnvelope) -> Option<Rejection>,
    ) -> Result<(), Refusal> {
        check_ref_id("batch_id", &prepare.batch_id)
            .map_err(|e| Refusal::worded(RejectionCode::InvalidInput, e))?;
        match &self.held {
            Some(held) if held.prepare.batch_id == prepare.batch_id => {
                return Err(Refusal::batch_step_repeated(&order.outcome(graph, false)));
            }
            Some(held) => {
                return Err(Refusal::new(
                    RejectionCode::LockedByBatch,
                    format!("batch {} holds this delivery order", held.prepare.batch_id),
                ));
            }
            None => {}
        }
        if let Some(fate) = self.fate(&prepare.batch_id) {
            return Err(Refusal::new(
                RejectionCode::BatchFinished,
                format!("batch {} is over here ({fate:?})", prepare.batch_id),
            ));
        }
        if prepare.events.is_empty() {
            return Err(Refusal::batch_rejected(
                0,
                None,
                "a batch needs at least one event",
            ));
        }
        if let Some(lease) = prepare.lease_ms.map(Duration::from_millis)
            && !(MIN_BATCH_LEASE..=MAX_BATCH_LEASE).contains(&lease)
        {
            return Err(Refusal::batch_rejected(
                0,
                None,
                format!(
                    "lease_ms must be {}-{}",
                    MIN_BATCH_LEASE.as_millis(),
                    MAX_BATCH_LEASE.as_millis()
                ),
            ));
        }
        let mut trial = order.clone();
        for (index, event) in prepare.events.iter().enumerate() {
            if event.actor.kind == ActorKind::System {
                let refusal = system_actor_refused();
                return Err(Refusal::batch_rejected(
                    index,
                    Some(refusal.code()),
                    refusal,
                ));
            }
            if let Some(rejection) = sender_refused(event) {
                return Err(Refusal::batch_rejected(
                    index,
                    Some(rejection.code()),
                    rejection,
                ));
            }
            trial.apply(graph, event.clone(), "").map_err(|rejection| {
                Refusal::batch_rejected(index, Some(rejection.code()), rejection)
            })?;
        }
        // Every event applied before (a repeated batch): nothing to hold the order for, and
        // nothing added to its history.
        if trial.version == order.version {
            return Err(Refusal::batch_noop(&order.outcome(graph, false)));
        }
        Ok(())
    }

    /// Holds the order for a checked batch until `now_ms` plus its lease; a repeated prepare of
    /// the holding batch (accepted by runs recorded before the validator answered it) changes
    /// nothing.
    pub fn prepare(&mut self, prepare: BatchPrepare, now_ms: u64) {
        if self.held.is_some() {
            return;
        }
        let lease = prepare
            .lease_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_BATCH_LEASE);
        self.held = Some(HeldBatch {
            prepare,
            lease_until_ms: now_ms + lease.as_millis() as u64,
        });
    }

    /// Whether a commit of `batch_id` may run: only for the holding batch. A commit of a batch
    /// committed before is answered with `order`'s current outcome, as its first commit was.
    pub fn check_commit(
        &self,
        graph: &StateGraph,
        order: &DeliveryOrder,
        batch_id: &str,
    ) -> Result<(), Refusal> {
        match self.fate(batch_id) {
            _ if self.holds(batch_id) => Ok(()),
            Some(BatchFate::Committed) => {
                Err(Refusal::batch_step_repeated(&order.outcome(graph, true)))
            }
            Some(fate) => Err(Refusal::new(
                RejectionCode::BatchReleased,
                format!(
                    "batch {batch_id} was not applied here: {}",
                    match fate {
                        BatchFate::Expired => "its lease ran out before the commit arrived",
                        _ => "it was aborted",
                    }
                ),
            )),
            None => Err(Refusal::new(
                RejectionCode::NoSuchBatch,
                format!("batch {batch_id} is not prepared here"),
            )),
        }
    }

    /// Whether an abort of `batch_id` may run: for the holding batch, and for one not seen yet
    /// (remembered, so its late prepare cannot hold the order). An abort of a batch over here
    /// already changes nothing and is answered with `order`'s current outcome.
    pub fn check_abort(
        &self,
        graph: &StateGraph,
        order: &DeliveryOrder,
        batch_id: &str,
    ) -> Result<(), Refusal> {
        if !self.holds(batch_id) && self.fate(batch_id).is_some() {
            return Err(Refusal::batch_step_repeated(&order.outcome(graph, false)));
        }
        Ok(())
    }

    /// Ends the holding batch as committed and hands over its events to apply, in order; `None`
    /// when `batch_id` does not hold the order (a repeated commit, accepted by runs recorded
    /// before the validator answered it).
    pub fn commit(&mut self, batch_id: &str) -> Option<Vec<EventEnvelope>> {
        let held = self.held.take_if(|b| b.prepare.batch_id == batch_id)?;
        self.remember(held.prepare.batch_id, BatchFate::Committed);
        Some(held.prepare.events)
    }

    /// Ends `batch_id` without applying anything. An abort that arrives before its prepare is
    /// remembered too, so the late prepare cannot hold the order. True when the batch ended
    /// now (what waited may go ahead).
    pub fn abort(&mut self, batch_id: &str) -> bool {
        let held = self
            .held
            .take_if(|b| b.prepare.batch_id == batch_id)
            .is_some();
        let ended = held || self.fate(batch_id).is_none();
        if ended {
            self.remember(batch_id.to_owned(), BatchFate::Aborted);
        }
        ended
    }

    /// The lease of `batch_id` ran out while its coordinator still runs: it holds on until
    /// `until_ms` (the coordinator will commit or abort). False when it no longer holds it.
    pub fn extend(&mut self, batch_id: &str, until_ms: u64) -> bool {
        match self.held.as_mut() {
            Some(held) if held.prepare.batch_id == batch_id => {
                held.lease_until_ms = held.lease_until_ms.max(until_ms);
                true
            }
            _ => false,
        }
    }

    /// The lease of `batch_id` ran out: the order releases itself. True when it still held it.
    pub fn expire(&mut self, batch_id: &str) -> bool {
        let held = self
            .held
            .take_if(|b| b.prepare.batch_id == batch_id)
            .is_some();
        if held {
            self.remember(batch_id.to_owned(), BatchFate::Expired);
        }
        held
    }

    fn remember(&mut self, batch_id: String, fate: BatchFate) {
        if self.finished.len() == BATCHES_KEPT {
            self.finished.pop_front();
        }
        self.finished.push_back((batch_id, fate));
    }

    /// Queues a signal's event until it may apply; at most [`DEFERRED_KEPT`] wait, and the
    /// refusal of one more says so.
    pub fn defer_event(&mut self, signal: &str, event: EventEnvelope) -> Result<(), Rejection> {
        let waiting = self
            .deferred
            .iter()
            .filter(|d| matches!(d, Deferred::Event { .. }))
            .count();
        if waiting >= DEFERRED_KEPT {
            return Err(Rejection::InvalidSignal(format!(
                "{signal}: the delivery order is held and {DEFERRED_KEPT} events already wait; send it again later"
            )));
        }
        self.deferred.push(Deferred::Event {
            signal: signal.to_owned(),
            event,
        });
        Ok(())
    }

    /// Queues an event the workflow raised while a batch holds the order (not bounded: the
    /// order raises at most one per deadline).
    pub fn defer_own(&mut self, own: Deferred) {
        self.deferred.push(own);
    }

    /// Everything waiting, in arrival order; what still has to wait goes back with
    /// [`BatchHold::keep_waiting`].
    pub fn take_deferred(&mut self) -> Vec<Deferred> {
        std::mem::take(&mut self.deferred)
    }

    pub fn keep_waiting(&mut self, deferred: Deferred) {
        self.deferred.push(deferred);
    }

    /// The deadline `timer` fired already and its event waits for the order's release.
    pub fn own_event_waits(&self, timer: &str) -> bool {
        self.deferred
            .iter()
            .any(|d| matches!(d, Deferred::Own { tag, .. } if tag == timer))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{DeliveryOrderInput, State};
    use crate::graph::DELIVERY_ORDER_V1;

    fn graph() -> &'static StateGraph {
        &DELIVERY_ORDER_V1
    }

    /// The example order of the Temporal contract, just created, its pickup taken by the
    /// partner `sim`.
    fn order() -> DeliveryOrder {
        let input: DeliveryOrderInput = serde_json::from_str(include_str!(
            "../../../resources/examples/delivery-order-input.json"
        ))
        .expect("the example input parses");
        let mut order = DeliveryOrder::new(graph(), input, "2026-01-01T00:00:00.000Z".into());
        order.partner.partner_id = Some("sim".into());
        order.partner.pickup_id = Some("pk-1".into());
        order
    }

    fn picked_up(id: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: id.into(),
            event_type: EventType::PickedUp,
            data: json!({"partner_order_number": "PN-1"}),
            actor: Actor::new(ActorKind::Partner, "sim"),
            correlation_id: None,
            pickup_id: None,
        }
    }

    fn cancel(id: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: id.into(),
            event_type: EventType::Cancel,
            data: json!({"reason": "changed mind"}),
            actor: Actor::new(ActorKind::Operator, "olga"),
            correlation_id: None,
            pickup_id: None,
        }
    }

    fn batch(id: &str, events: Vec<EventEnvelope>, lease_ms: Option<u64>) -> BatchPrepare {
        BatchPrepare {
            batch_id: id.into(),
            events,
            lease_ms,
        }
    }

    fn never_waits(_: &EventEnvelope) -> Option<Rejection> {
        None
    }

    fn code(result: Result<(), Refusal>) -> RejectionCode {
        result.expect_err("refused").code()
    }

    /// Why `hold` refuses `prepare` on the new example order (nothing waits for a partner).
    fn refused(hold: &BatchHold, prepare: &BatchPrepare) -> Refusal {
        hold.check_prepare(graph(), &order(), prepare, never_waits)
            .expect_err("refused")
    }

    #[test]
    fn a_prepared_batch_holds_the_order_until_its_lease_ends() {
        let mut hold = BatchHold::default();
        let prepare = batch("b1", vec![picked_up("e1")], Some(5_000));
        hold.check_prepare(graph(), &order(), &prepare, never_waits)
            .unwrap();
        hold.prepare(prepare.clone(), 1_000);
        assert_eq!(hold.lease(), Some(("b1", 6_000)));
        assert_eq!(code(hold.check_free()), RejectionCode::LockedByBatch);
        // The same prepare again is answered without running; another batch is refused while
        // this one holds.
        let again = refused(&hold, &prepare);
        assert_eq!(again.code(), RejectionCode::BatchStepRepeated);
        assert_eq!(again.outcome().map(|o| o.version), Some(0));
        hold.prepare(prepare, 9_000);
        assert_eq!(hold.lease(), Some(("b1", 6_000)));
        let other = batch("b2", vec![cancel("e2")], None);
        assert_eq!(refused(&hold, &other).code(), RejectionCode::LockedByBatch);
    }

    #[test]
    fn the_default_lease_is_thirty_seconds_and_bounds_are_enforced() {
        let mut hold = BatchHold::default();
        hold.prepare(batch("b", vec![picked_up("e")], None), 0);
        assert_eq!(hold.lease(), Some(("b", 30_000)));
        let hold = BatchHold::default();
        for lease in [999, 600_001] {
            let failed = refused(&hold, &batch("b", vec![picked_up("e")], Some(lease)));
            assert_eq!(failed.batch_item().map(|i| i.index), Some(0), "{failed}");
        }
    }

    #[test]
    fn commit_hands_over_the_events_once_and_repeats_are_answered() {
        let mut hold = BatchHold::default();
        hold.prepare(batch("b1", vec![picked_up("e1")], None), 0);
        hold.check_commit(graph(), &order(), "b1").unwrap();
        let events = hold.commit("b1").expect("held");
        assert_eq!(events, vec![picked_up("e1")]);
        assert!(!hold.is_holding());
        assert_eq!(hold.fate("b1"), Some(BatchFate::Committed));
        let again = hold.check_commit(graph(), &order(), "b1").unwrap_err();
        assert_eq!(again.code(), RejectionCode::BatchStepRepeated);
        assert!(again.outcome().is_some_and(|o| o.applied), "{again}");
        assert_eq!(
            code(hold.check_abort(graph(), &order(), "b1")),
            RejectionCode::BatchStepRepeated,
            "an abort after the commit changes nothing"
        );
        assert_eq!(hold.commit("b1"), None);
        assert_eq!(
            code(hold.check_commit(graph(), &order(), "b9")),
            RejectionCode::NoSuchBatch
        );
    }

    #[test]
    fn an_abort_releases_the_order_and_refuses_a_later_commit_or_prepare() {
        let mut hold = BatchHold::default();
        hold.prepare(batch("b1", vec![picked_up("e1")], None), 0);
        hold.check_abort(graph(), &order(), "b1").unwrap();
        assert!(hold.abort("b1"));
        assert!(!hold.is_holding());
        assert_eq!(
            code(hold.check_abort(graph(), &order(), "b1")),
            RejectionCode::BatchStepRepeated
        );
        assert!(!hold.abort("b1"), "a repeated abort changes nothing");
        assert_eq!(
            code(hold.check_commit(graph(), &order(), "b1")),
            RejectionCode::BatchReleased
        );
        let again = batch("b1", vec![picked_up("e1")], None);
        assert_eq!(refused(&hold, &again).code(), RejectionCode::BatchFinished);
    }

    #[test]
    fn an_abort_before_its_prepare_is_remembered() {
        let mut hold = BatchHold::default();
        hold.check_abort(graph(), &order(), "early").unwrap();
        assert!(hold.abort("early"));
        assert_eq!(hold.fate("early"), Some(BatchFate::Aborted));
        let late = batch("early", vec![picked_up("e1")], None);
        assert_eq!(refused(&hold, &late).code(), RejectionCode::BatchFinished);
    }

    #[test]
    fn a_lease_extended_for_a_running_coordinator_keeps_the_hold() {
        let mut hold = BatchHold::default();
        hold.prepare(batch("b1", vec![picked_up("e")], Some(5_000)), 1_000);
        assert!(hold.extend("b1", 21_000));
        assert_eq!(hold.lease(), Some(("b1", 21_000)));
        // Never shortened, and another batch's id changes nothing.
        assert!(hold.extend("b1", 10_000));
        assert_eq!(hold.lease(), Some(("b1", 21_000)));
        assert!(!hold.extend("b2", 90_000));
        assert!(hold.check_commit(graph(), &order(), "b1").is_ok());
        assert!(hold.expire("b1"));
        assert!(
            !hold.extend("b1", 90_000),
            "a released hold is not taken again"
        );
    }

    #[test]
    fn an_expired_lease_releases_the_order_and_a_late_commit_learns_it() {
        let mut hold = BatchHold::default();
        hold.prepare(batch("b1", vec![picked_up("e1")], Some(1_000)), 0);
        assert!(!hold.expire("other"));
        assert!(hold.expire("b1"));
        assert!(!hold.is_holding());
        assert_eq!(hold.fate("b1"), Some(BatchFate::Expired));
        let late = hold.check_commit(graph(), &order(), "b1").unwrap_err();
        assert_eq!(late.code(), RejectionCode::BatchReleased);
        assert!(late.message().contains("lease ran out"), "{late}");
    }

    #[test]
    fn a_prepare_names_the_event_that_cannot_apply() {
        let hold = BatchHold::default();
        // CANCEL applies in CREATED, then PICKED_UP cannot follow a cancelled order.
        let prepare = batch("b", vec![cancel("e1"), picked_up("e2")], None);
        let failed = refused(&hold, &prepare);
        let item = failed.batch_item().expect("names the event");
        assert_eq!(item.index, 1);
        assert!(item.reason.starts_with("INVALID_TRANSITION"), "{failed}");
        // A system actor, and a partner the pickup is not confirmed for, are refused too.
        let mut system = picked_up("e3");
        system.actor = Actor::system("pickup_deadline");
        let reason = |r: Refusal| r.batch_item().expect("names the event").reason;
        assert!(
            reason(refused(&hold, &batch("b", vec![system], None))).starts_with("FORBIDDEN_ACTOR")
        );
        let unconfirmed = hold
            .check_prepare(
                graph(),
                &order(),
                &batch("b", vec![picked_up("e4")], None),
                |_| Some(Rejection::PickupNotConfirmed),
            )
            .expect_err("the partner is not confirmed");
        assert!(reason(unconfirmed).starts_with("PICKUP_NOT_CONFIRMED"));
        let empty = refused(&hold, &batch("b", vec![], None));
        assert_eq!(empty.batch_item().map(|i| i.index), Some(0));
        // A partner on an order whose pickup no partner took (and none is being asked).
        let mut unbound = order();
        unbound.partner = Default::default();
        let stranger = hold
            .check_prepare(
                graph(),
                &unbound,
                &batch("b", vec![picked_up("e5")], None),
                never_waits,
            )
            .expect_err("no partner took the pickup");
        let item = stranger.batch_item().expect("names the event");
        assert_eq!(item.index, 0);
        assert!(item.reason.starts_with("NOT_YOUR_ORDER"), "{stranger}");
    }

    #[test]
    fn a_batch_applied_before_holds_nothing_and_answers_the_current_state() {
        let hold = BatchHold::default();
        let mut current = order();
        current.apply(graph(), picked_up("e1"), "now").unwrap();
        let refused = hold
            .check_prepare(
                graph(),
                &current,
                &batch("b", vec![picked_up("e1")], None),
                never_waits,
            )
            .unwrap_err();
        assert_eq!(refused.code(), RejectionCode::BatchNoop);
        let outcome = refused.outcome().expect("current answer");
        assert_eq!((outcome.state, outcome.version), (State::PickedUp, 1));
    }

    #[test]
    fn waiting_signals_are_bounded_and_the_workflows_own_events_always_wait() {
        let mut hold = BatchHold::default();
        for i in 0..DEFERRED_KEPT {
            hold.defer_event("picked_up", picked_up(&format!("e{i}")))
                .unwrap();
        }
        let full = hold
            .defer_event("picked_up", picked_up("one-more"))
            .unwrap_err();
        assert_eq!(full.code(), RejectionCode::InvalidSignal);
        hold.defer_own(Deferred::Own {
            event_type: EventType::DeliveryFailed,
            data: Map::new(),
            actor: Actor::system("pickup_deadline"),
            tag: "pickup_deadline".into(),
        });
        assert!(hold.own_event_waits("pickup_deadline"));
        assert!(!hold.own_event_waits("delivery_deadline"));
        let waiting = hold.take_deferred();
        assert_eq!(waiting.len(), DEFERRED_KEPT + 1);
        assert!(hold.deferred().is_empty());
    }

    #[test]
    fn only_the_most_recent_batches_are_remembered() {
        let mut hold = BatchHold::default();
        for i in 0..=BATCHES_KEPT {
            hold.abort(&format!("b{i}"));
        }
        assert_eq!(hold.finished().len(), BATCHES_KEPT);
        assert_eq!(hold.fate("b0"), None);
        assert_eq!(
            hold.fate(&format!("b{BATCHES_KEPT}")),
            Some(BatchFate::Aborted)
        );
    }
}
