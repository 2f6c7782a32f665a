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
use crate::validation::check_ref_id;

/// How many rejected events the state keeps (the total is counted separately).
pub const REJECTED_KEPT: usize = 50;

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

/// What a successful check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply it: the target state and the validated data.
    Apply { to: State, data: Map<String, Value> },
    /// Already applied under this event id: answer with the current state, change nothing.
    Duplicate,
}

/// Partner-side facts that are not transitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartnerPickup {
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
            input,
        }
    }

    /// Decides whether `event` may be applied now, without changing anything (update validator).
    pub fn check(&self, graph: &StateGraph, event: &EventEnvelope) -> Result<Verdict, Rejection> {
        check_ref_id("event_id", &event.event_id).map_err(Rejection::InvalidEventId)?;
        if self.events.iter().any(|e| e.event_id == event.event_id) {
            return Ok(Verdict::Duplicate);
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

    /// Applies `event` and any automatic step that follows it (DELIVERY_FAILED escalates to an
    /// operator at once). Refusals change nothing; the caller decides whether to record them.
    pub fn apply(
        &mut self,
        graph: &StateGraph,
        event: EventEnvelope,
        now: &str,
    ) -> Result<ApplyOutcome, Rejection> {
        let (to, data) = match self.check(graph, &event)? {
            Verdict::Duplicate => return Ok(self.outcome(graph, false)),
            Verdict::Apply { to, data } => (to, data),
        };
        self.record(event, to, data, now);
        while let Some(auto) = graph.automatic_transition(self.state) {
            let automatic = EventEnvelope {
                event_id: format!(
                    "{}:{}:{}",
                    self.delivery_order_id,
                    auto.event,
                    self.version + 1
                ),
                event_type: auto.event,
                data: Value::Object(Map::new()),
                actor: Actor::system("workflow"),
                correlation_id: self.events.last().and_then(|e| e.correlation_id.clone()),
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
