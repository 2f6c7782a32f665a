//! The delivery order as a pure state machine: applies events to the graph, keeps the audit trail,
//! deduplicates event ids. No Temporal types here, so it is unit-tested exhaustively and the
//! workflow only adds timers, activities and messaging around it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    Actor, ActorKind, AppliedEvent, ApplyOutcome, DeliveryOrderInput, DisputeReason, EventEnvelope,
    EventType, FailureReason, RejectedEvent, State,
};
use crate::graph::{PayloadError, StateGraph};
use crate::refusal::{Refusal, RejectionCode};
use crate::validation::check_ref_id;

/// How many rejected events the state keeps (the total is counted separately).
pub const REJECTED_KEPT: usize = 50;

/// Event ids the delivery order gives its own events (timers, escalation, partner refusal)
/// start with this; callers may not use it, so no caller can pre-empt or suppress one of them.
pub const INTERNAL_EVENT_ID_PREFIX: &str = "wf:";

/// Why an event was refused. The text starts with a stable code for programs, then says what was
/// wrong for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("INVALID_EVENT_ID: {0}")]
    InvalidEventId(String),
    #[error(
        "INVALID_TRANSITION: event {event} is not allowed in state {current_state}; allowed events: {}",
        list_or_none(allowed_events)
    )]
    InvalidTransition {
        event: EventType,
        current_state: State,
        allowed_events: Vec<EventType>,
    },
    #[error("FORBIDDEN_ACTOR: {actor} may not send {event}; it is sent by: {}", allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))]
    ForbiddenActor {
        event: EventType,
        actor: ActorKind,
        allowed: Vec<ActorKind>,
    },
    #[error("INVALID_PAYLOAD: {event}: {error}")]
    InvalidPayload {
        event: EventType,
        error: PayloadError,
    },
    #[error("INVALID_SIGNAL: {0}")]
    InvalidSignal(String),
    #[error(
        "IDEMPOTENCY_CONFLICT: event id {event_id} was already used for {original} (version {original_version}) with other content; a retry must repeat the original event, a new event needs a new id"
    )]
    IdempotencyConflict {
        event_id: String,
        original: EventType,
        original_version: u64,
    },
    /// The sender is not the order's customer, or not the partner that took its pickup.
    #[error("NOT_YOUR_ORDER: {0}")]
    NotYourOrder(String),
    /// A partner event before the partner confirmed the pickup: the sender may retry shortly.
    #[error(
        "PICKUP_NOT_CONFIRMED: the partner has not confirmed the pickup of this delivery order yet; retry shortly"
    )]
    PickupNotConfirmed,
    #[error("PICKUP_MISMATCH: pickup_id {given:?} is not this delivery order's pickup")]
    PickupMismatch { given: String },
}

impl Rejection {
    /// The stable code the text starts with.
    pub fn code(&self) -> RejectionCode {
        match self {
            Self::InvalidEventId(_) => RejectionCode::InvalidEventId,
            Self::InvalidTransition { .. } => RejectionCode::InvalidTransition,
            Self::ForbiddenActor { .. } => RejectionCode::ForbiddenActor,
            Self::InvalidPayload { .. } => RejectionCode::InvalidPayload,
            Self::InvalidSignal(_) => RejectionCode::InvalidSignal,
            Self::IdempotencyConflict { .. } => RejectionCode::IdempotencyConflict,
            Self::NotYourOrder(_) => RejectionCode::NotYourOrder,
            Self::PickupNotConfirmed => RejectionCode::PickupNotConfirmed,
            Self::PickupMismatch { .. } => RejectionCode::PickupMismatch,
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Self::worded(rejection.code(), rejection.to_string())
    }
}

fn list_or_none(events: &[EventType]) -> String {
    if events.is_empty() {
        "none (the delivery order is finished)".into()
    } else {
        events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where an event comes from: a caller (gateway, signal, batch) or the workflow itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Caller,
    Workflow,
}

/// What a successful check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply it: the target state and the validated data.
    Apply { to: State, data: Map<String, Value> },
    /// Already applied under this event id, with the same content: the original answer,
    /// nothing changes.
    Duplicate(ApplyOutcome),
}

/// Partner-side facts that are not transitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartnerPickup {
    /// The partner that accepted the pickup: from then on only it may send partner events.
    #[serde(default)]
    pub partner_id: Option<String>,
    /// The partner's id for the pickup job, once it accepted.
    pub pickup_id: Option<String>,
    pub partner_order_number: Option<String>,
    pub driver: Option<Value>,
    pub eta: Option<String>,
    pub proof: Option<Value>,
    /// Set when the partner refused the job outright.
    pub rejected: Option<String>,
    pub cancelled: bool,
}

/// The whole delivery order as the workflow holds it; the `state` query returns this plus the
/// allowed events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryOrder {
    pub delivery_order_id: String,
    pub ordering_id: String,
    pub customer_id: String,
    pub payment_id: Option<String>,
    pub state: State,
    /// Bumped by every applied event; the read model's ordering key.
    pub version: u64,
    pub graph: String,
    pub graph_version: u32,
    pub input: DeliveryOrderInput,
    pub partner: PartnerPickup,
    pub failure_reason: Option<FailureReason>,
    pub failure_detail: Option<String>,
    pub dispute_reason: Option<DisputeReason>,
    pub dispute_detail: Option<String>,
    pub cancel_reason: Option<String>,
    pub resolution_note: Option<String>,
    pub refund_needed: bool,
    pub replaces_id: Option<String>,
    pub replaced_by_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<AppliedEvent>,
    pub rejected: VecDeque<RejectedEvent>,
    pub rejected_total: u64,
    /// Whether events are checked against the order's customer and bound partner. Always on,
    /// except while replaying runs recorded before these checks existed (they must replay as
    /// they ran).
    #[serde(default)]
    pub checks_senders: bool,
    /// Whether a partner event that names its partner is refused while no partner has taken
    /// the pickup (none bound, no pickup id known). On for new orders; the workflow turns it
    /// off until its run asks the patch that decides (runs recorded before this check took
    /// such events from any partner, and must replay as they ran).
    #[serde(default)]
    pub refuses_unbound_partners: bool,
}

impl DeliveryOrder {
    pub fn new(graph: &StateGraph, input: DeliveryOrderInput, now: String) -> Self {
        Self {
            delivery_order_id: input.delivery_order_id.clone(),
            ordering_id: input.ordering_id.clone(),
            customer_id: input.customer_id.clone(),
            payment_id: input.payment_id.clone(),
            state: graph.initial,
            version: 0,
            graph: graph.graph.clone(),
            graph_version: graph.version,
            partner: PartnerPickup::default(),
            failure_reason: None,
            failure_detail: None,
            dispute_reason: None,
            dispute_detail: None,
            cancel_reason: None,
            resolution_note: None,
            refund_needed: false,
            replaces_id: input.replaces_id.clone(),
            replaced_by_id: None,
            created_at: now.clone(),
            updated_at: now,
            events: Vec::new(),
            rejected: VecDeque::new(),
            rejected_total: 0,
            checks_senders: true,
            refuses_unbound_partners: true,
            input,
        }
    }

    /// Decides whether `event` may be applied now, without changing anything (update validator).
    pub fn check(&self, graph: &StateGraph, event: &EventEnvelope) -> Result<Verdict, Rejection> {
        self.check_from(graph, event, Origin::Caller)
    }

    fn check_from(
        &self,
        graph: &StateGraph,
        event: &EventEnvelope,
        origin: Origin,
    ) -> Result<Verdict, Rejection> {
        check_ref_id("event_id", &event.event_id).map_err(Rejection::InvalidEventId)?;
        let internal_id = event.event_id.starts_with(INTERNAL_EVENT_ID_PREFIX);
        if internal_id != (origin == Origin::Workflow) {
            return Err(Rejection::InvalidEventId(format!(
                "event ids starting with {INTERNAL_EVENT_ID_PREFIX:?} are reserved for events the delivery order raises itself, got {:?}",
                event.event_id
            )));
        }
        if origin == Origin::Caller && event.actor.kind == ActorKind::System {
            return Err(Rejection::InvalidSignal(
                "actor kind system is reserved for the workflow itself".into(),
            ));
        }
        // Who may act on this order comes first, so a stranger learns nothing about it. The
        // order's own events (a partner refusal included) are not a sender's.
        if origin == Origin::Caller {
            self.check_sender(event)?;
        }
        if let Some(index) = self
            .events
            .iter()
            .position(|e| e.event_id == event.event_id)
        {
            return self.repeat_of(graph, index, event);
        }
        let Some(transition) = graph.transition(self.state, event.event_type) else {
            return Err(Rejection::InvalidTransition {
                event: event.event_type,
                current_state: self.state,
                allowed_events: graph.allowed_events(self.state),
            });
        };
        if !transition.sent_by.contains(&event.actor.kind) {
            return Err(Rejection::ForbiddenActor {
                event: event.event_type,
                actor: event.actor.kind,
                allowed: transition.sent_by.clone(),
            });
        }
        if let Some(id) = &event.actor.id {
            check_ref_id("actor.id", id).map_err(Rejection::InvalidSignal)?;
        }
        if let Some(id) = &event.correlation_id {
            check_ref_id("correlation_id", id).map_err(Rejection::InvalidSignal)?;
        }
        let data = graph
            .validate_payload(event.event_type, &event.data)
            .map_err(|error| Rejection::InvalidPayload {
                event: event.event_type,
                error,
            })?;
        Ok(Verdict::Apply {
            to: transition.to,
            data,
        })
    }

    /// A customer acts only on its own order; a partner only on an order whose pickup it
    /// accepted, and only on that pickup: while no partner has taken the pickup, no partner
    /// acts on the order (the workflow answers "not confirmed yet" instead while its pickup
    /// request is still out). An actor without an id is a trusted internal sender (a signal
    /// from a service with Temporal access), which the gateway never produces.
    fn check_sender(&self, event: &EventEnvelope) -> Result<(), Rejection> {
        let Some(id) = event.actor.id.as_deref().filter(|_| self.checks_senders) else {
            return Ok(());
        };
        match event.actor.kind {
            ActorKind::Customer if id != self.customer_id => Err(Rejection::NotYourOrder(
                "a customer may only send events for its own delivery orders".into(),
            )),
            ActorKind::Partner => {
                let bound = self.partner.partner_id.as_deref();
                match (bound, &event.pickup_id, &self.partner.pickup_id) {
                    (Some(bound), _, _) if bound != id => Err(Rejection::NotYourOrder(format!(
                        "partner {id:?} did not take the pickup of this delivery order"
                    ))),
                    (None, _, None) if self.refuses_unbound_partners => {
                        Err(Rejection::NotYourOrder(format!(
                            "no partner has taken the pickup of this delivery order, so partner {id:?} may not act on it"
                        )))
                    }
                    (_, Some(given), Some(pickup)) if given != pickup => {
                        Err(Rejection::PickupMismatch {
                            given: given.clone(),
                        })
                    }
                    (_, Some(_), None) => Err(Rejection::PickupNotConfirmed),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// An event id seen before: the same event again is a retry and gets the original answer;
    /// anything else under that id is a conflict.
    fn repeat_of(
        &self,
        graph: &StateGraph,
        index: usize,
        event: &EventEnvelope,
    ) -> Result<Verdict, Rejection> {
        let original = &self.events[index];
        let same_data = graph
            .validate_payload(event.event_type, &event.data)
            .is_ok_and(|data| Value::Object(data) == original.data);
        if original.event_type != event.event_type || original.actor != event.actor || !same_data {
            return Err(Rejection::IdempotencyConflict {
                event_id: event.event_id.clone(),
                original: original.event_type,
                original_version: original.seq,
            });
        }
        // The original answer included the automatic steps that followed it at once.
        let last = self.events[index + 1..]
            .iter()
            .take_while(|e| {
                e.actor.kind == ActorKind::System
                    && graph
                        .automatic_transition(e.from_state)
                        .is_some_and(|t| t.event == e.event_type)
            })
            .last()
            .unwrap_or(original);
        Ok(Verdict::Duplicate(ApplyOutcome {
            delivery_order_id: self.delivery_order_id.clone(),
            state: last.to_state,
            version: last.seq,
            applied: false,
            allowed_events: graph.allowed_events(last.to_state),
        }))
    }

    /// Applies `event` and any automatic step that follows it (DELIVERY_FAILED escalates to an
    /// operator at once). Refusals change nothing; the caller decides whether to record them.
    pub fn apply(
        &mut self,
        graph: &StateGraph,
        event: EventEnvelope,
        now: &str,
    ) -> Result<ApplyOutcome, Rejection> {
        self.apply_from(graph, event, now, Origin::Caller)
    }

    /// Applies an event the order raises itself (a deadline, a partner refusal): its id is in
    /// the order's own namespace (see [`Self::internal_event_id`]).
    pub fn apply_own(
        &mut self,
        graph: &StateGraph,
        event: EventEnvelope,
        now: &str,
    ) -> Result<ApplyOutcome, Rejection> {
        self.apply_from(graph, event, now, Origin::Workflow)
    }

    fn apply_from(
        &mut self,
        graph: &StateGraph,
        event: EventEnvelope,
        now: &str,
        origin: Origin,
    ) -> Result<ApplyOutcome, Rejection> {
        let (to, data) = match self.check_from(graph, &event, origin)? {
            Verdict::Duplicate(original) => return Ok(original),
            Verdict::Apply { to, data } => (to, data),
        };
        self.record(event, to, data, now);
        while let Some(auto) = graph.automatic_transition(self.state) {
            let automatic = EventEnvelope {
                event_id: self.internal_event_id(auto.event.as_str()),
                event_type: auto.event,
                data: Value::Object(Map::new()),
                actor: Actor::system("workflow"),
                correlation_id: self.events.last().and_then(|e| e.correlation_id.clone()),
                pickup_id: None,
            };
            let to = auto.to;
            self.record(automatic, to, Map::new(), now);
        }
        Ok(self.outcome(graph, true))
    }

    /// Keeps a refused event for the `state` query (bounded).
    pub fn record_rejection(&mut self, rejected: RejectedEvent) {
        self.rejected_total += 1;
        if self.rejected.len() == REJECTED_KEPT {
            self.rejected.pop_front();
        }
        self.rejected.push_back(rejected);
    }

    pub fn outcome(&self, graph: &StateGraph, applied: bool) -> ApplyOutcome {
        ApplyOutcome {
            delivery_order_id: self.delivery_order_id.clone(),
            state: self.state,
            version: self.version,
            applied,
            allowed_events: graph.allowed_events(self.state),
        }
    }

    /// The id the replacement order gets on reshipment: derived from this order's id, so a
    /// retried or replayed reshipment can never create two replacements.
    pub fn reship_id(&self) -> String {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("delivery-order:{}:reship", self.delivery_order_id).as_bytes(),
        )
        .hyphenated()
        .to_string()
    }

    /// The id of an event the order raises itself: unique per order and version, in the
    /// namespace callers cannot use.
    pub fn internal_event_id(&self, tag: &str) -> String {
        format!(
            "{INTERNAL_EVENT_ID_PREFIX}{}:{tag}:{}",
            self.delivery_order_id,
            self.version + 1
        )
    }

    fn record(&mut self, event: EventEnvelope, to: State, data: Map<String, Value>, now: &str) {
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        match event.event_type {
            EventType::PickedUp => {
                self.partner.partner_order_number = text("partner_order_number");
                self.partner.driver = data.get("driver").cloned();
                self.partner.eta = text("eta");
            }
            EventType::Delivered => self.partner.proof = data.get("proof").cloned(),
            EventType::DeliveryFailed => {
                self.failure_reason = text("reason").and_then(|r| parse_enum(&r));
                self.failure_detail = text("detail");
            }
            EventType::Disputed => {
                self.dispute_reason = text("reason").and_then(|r| parse_enum(&r));
                self.dispute_detail = text("detail");
            }
            EventType::Cancel => self.cancel_reason = text("reason"),
            EventType::OperatorReship => {
                self.resolution_note = text("note");
                self.replaced_by_id = Some(self.reship_id());
            }
            EventType::OperatorCancel => {
                self.resolution_note = text("note");
                self.refund_needed = true;
            }
            EventType::OperatorConfirmDelivered => self.resolution_note = text("note"),
            EventType::Confirmed | EventType::EscalateToOperator => {}
        }
        self.version += 1;
        self.events.push(AppliedEvent {
            seq: self.version,
            event_id: event.event_id,
            event_type: event.event_type,
            from_state: self.state,
            to_state: to,
            data: Value::Object(data),
            actor: event.actor,
            correlation_id: event.correlation_id,
            occurred_at: now.to_owned(),
        });
        self.state = to;
        self.updated_at = now.to_owned();
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::rejected_update;

    #[test]
    fn machine_rejections_keep_their_text_and_gain_their_code() {
        let failure = rejected_update(Rejection::PickupNotConfirmed.into());
        let received = Refusal::from_failure(&failure).expect("typed");
        assert_eq!(received.code(), RejectionCode::PickupNotConfirmed);
        assert_eq!(
            received.message(),
            Rejection::PickupNotConfirmed.to_string()
        );
    }
}
