//! Sending one event to a delivery order and turning the workflow's answer into HTTP: shared by
//! the event command and partner webhooks.

use delivery_workflows::refusal;
use delivery_workflows::{
    ActorKind, ApplyOutcome, DELIVERY_ORDER_V1, EventEnvelope, EventType, StateGraph,
};
use std::time::Instant;

use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::commands::CommandError;
use crate::model::EventApplied;
use crate::problem::ApiError;
use crate::read::external_events;
use crate::state::AppState;

/// Who may send `event`, from the graph.
pub fn senders(event: EventType) -> Vec<ActorKind> {
    let graph: &StateGraph = &DELIVERY_ORDER_V1;
    let mut kinds: Vec<ActorKind> = graph
        .transitions
        .iter()
        .filter(|t| t.event == event)
        .flat_map(|t| t.sent_by.iter().copied())
        .filter(|k| *k != ActorKind::System)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The role a caller sends `event` under: the one it names (`sent_as`), which it must hold and
/// which must be allowed to send the event; else the first of its roles the graph lets send it.
/// The role decides the checks: a customer event is only ever accepted from the order's own
/// customer, whatever other roles the token holds.
pub fn sending_role(
    caller: &Caller,
    event: EventType,
    sent_as: Option<Role>,
) -> Result<Role, ApiError> {
    let allowed = senders(event);
    let refuse = || {
        let names: Vec<String> = allowed.iter().map(|k| k.as_str().to_owned()).collect();
        let detail = if names.is_empty() {
            format!("{event} is raised by the delivery order itself and cannot be sent")
        } else {
            format!("{event} may be sent by: {}", names.join(", "))
        };
        ApiError::forbidden_sender(detail, names)
    };
    match sent_as {
        Some(role) if !caller.has(role) => Err(ApiError::forbidden(format!(
            "sent_as {} is not one of this token's roles",
            role.as_str()
        ))),
        Some(role) if !allowed.contains(&role.actor_kind()) => Err(refuse()),
        Some(role) => Ok(role),
        None => caller
            .roles
            .iter()
            .copied()
            .find(|r| allowed.contains(&r.actor_kind()))
            .ok_or_else(refuse),
    }
}

/// Applies `event` and answers as the API does: 200 with the new state, or the problem that
/// says why not. Counted per event type and outcome, and timed.
pub async fn apply(
    state: &AppState,
    id: Uuid,
    event: EventEnvelope,
) -> Result<EventApplied, ApiError> {
    let event_type = event.event_type;
    let started = Instant::now();
    let result = apply_event(state, id, event).await;
    state
        .metrics
        .observe_event(event_type.as_str(), &result, started.elapsed());
    result
}

async fn apply_event(
    state: &AppState,
    id: Uuid,
    event: EventEnvelope,
) -> Result<EventApplied, ApiError> {
    let order_id = id.to_string();
    let event_id = event.event_id.clone();
    let answer = |outcome: ApplyOutcome| EventApplied {
        delivery_order_id: outcome.delivery_order_id,
        state: outcome.state.into(),
        version: outcome.version,
        applied: outcome.applied,
        event_id: event_id.clone(),
        allowed_events: outcome
            .allowed_events
            .into_iter()
            .filter(|e| *e != EventType::EscalateToOperator)
            .map(Into::into)
            .collect(),
    };
    match state.commands.apply(&order_id, event).await {
        Ok(outcome) => Ok(answer(outcome)),
        // Temporal may say "not found" rather than "completed" for a run that has just closed;
        // an order the read model knows is finished either way.
        Err(error @ (CommandError::NotFound | CommandError::Completed)) => {
            let known = state.read_model.order(id).await.ok().flatten();
            match (error, known) {
                (CommandError::NotFound, None) => {
                    Err(ApiError::delivery_order_not_found(&order_id))
                }
                (_, known) => {
                    let current = known
                        .map(|o| o.order.state.as_str().to_owned())
                        .unwrap_or_else(|| "finished".to_owned());
                    Err(ApiError::invalid_transition(
                        format!(
                            "the delivery order is finished ({current}) and takes no more events"
                        ),
                        &current,
                        Vec::new(),
                    ))
                }
            }
        }
        // A retry: the workflow answered with the original outcome without recording anything.
        Err(CommandError::Rejected(message)) => match refusal::as_duplicate(&message) {
            Some(original) => Ok(answer(original)),
            None => Err(rejection(state, &order_id, message).await),
        },
        Err(CommandError::Unavailable(cause)) => Err(ApiError::unavailable(
            "the workflow engine did not answer",
            &cause,
        )),
    }
}

/// The workflow's refusal as a problem; the message starts with a stable code.
async fn rejection(state: &AppState, order_id: &str, message: String) -> ApiError {
    match refusal::code(&message) {
        "INVALID_TRANSITION" => {
            // The current state and what is allowed now, from the workflow itself.
            match state.commands.state(order_id).await {
                Ok(Some(view)) => ApiError::invalid_transition(
                    message.clone(),
                    view.order.state.as_str(),
                    external_events(&DELIVERY_ORDER_V1, view.order.state)
                        .into_iter()
                        .map(|e| delivery_workflows::EventType::from(e).as_str().to_owned())
                        .collect(),
                ),
                _ => ApiError::conflict("invalid-transition", message),
            }
        }
        // A batch holds the order for a moment: the caller may retry.
        refusal::LOCKED_BY_BATCH => ApiError::conflict("locked-by-batch", message),
        // Another customer's order, or another partner's pickup: as if it did not exist.
        "NOT_YOUR_ORDER" => ApiError::delivery_order_not_found(order_id),
        "PICKUP_NOT_CONFIRMED" => ApiError::retry_later("pickup-not-confirmed", message, 1),
        "PICKUP_MISMATCH" => ApiError::conflict("pickup-mismatch", message),
        "IDEMPOTENCY_CONFLICT" => ApiError::conflict("idempotency-conflict", message),
        "FORBIDDEN_ACTOR" => ApiError::forbidden(message),
        "INVALID_PAYLOAD" => ApiError::unprocessable("invalid-payload", message),
        "INVALID_EVENT_ID" => ApiError::unprocessable("invalid-event-id", message),
        _ => ApiError::unprocessable("rejected", message),
    }
}
