//! Sending one event to a delivery order and turning the workflow's answer into HTTP: shared by
//! the event command and partner webhooks.

use delivery_workflows::{
    ApplyOutcome, ClientError, DELIVERY_ORDER_V1, EventEnvelope, EventType, Refusal, RejectionCode,
};
use std::time::Instant;

use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::model::EventApplied;
use crate::problem::ApiError;
use crate::read::external_events;
use crate::state::AppState;

/// The role a caller sends `event` under: the one it names (`sent_as`), which it must hold and
/// which must be allowed to send the event; else the first of its roles the graph lets send it.
/// The role decides the checks: a customer event is only ever accepted from the order's own
/// customer, whatever other roles the token holds.
pub fn sending_role(
    caller: &Caller,
    event: EventType,
    sent_as: Option<Role>,
) -> Result<Role, ApiError> {
    let allowed = DELIVERY_ORDER_V1.senders(event);
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
        allowed_events: external_events(&DELIVERY_ORDER_V1, outcome.state),
        state: outcome.state.into(),
        version: outcome.version,
        applied: outcome.applied,
        event_id: event_id.clone(),
    };
    // A retry of an event applied before comes back as its original outcome.
    match state.orders.apply_event(&order_id, event).await {
        Ok(outcome) => Ok(answer(outcome)),
        // Temporal may say "not found" rather than "completed" for a run that has just closed;
        // an order the read model knows is finished either way.
        Err(error @ (ClientError::NotFound | ClientError::Completed)) => {
            let known = state.read_model.order(id).await.ok().flatten();
            match (error, known) {
                (ClientError::NotFound, None) => Err(ApiError::delivery_order_not_found(&order_id)),
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
        Err(ClientError::Refused(refusal)) => Err(rejection(state, &order_id, refusal).await),
        // Temporal may have admitted the update and will apply it when a worker gets to the
        // order: the caller learns the event id, so its retry is the same event, not a second.
        Err(ClientError::Unavailable(cause)) => Err(ApiError::undecided_event(&event_id, &cause)),
    }
}

/// The workflow's refusal as a problem, by its code.
async fn rejection(state: &AppState, order_id: &str, refusal: Refusal) -> ApiError {
    let message = refusal.message().to_owned();
    match refusal.code() {
        RejectionCode::InvalidTransition => {
            // The current state and what is allowed now, from the workflow itself.
            match state.orders.state(order_id).await {
                Ok(Some(view)) => ApiError::invalid_transition(
                    message,
                    view.order.state.as_str(),
                    external_events(&DELIVERY_ORDER_V1, view.order.state)
                        .into_iter()
                        .map(|e| EventType::from(e).as_str().to_owned())
                        .collect(),
                ),
                _ => ApiError::conflict("invalid-transition", message),
            }
        }
        // A batch holds the order for a moment: the caller may retry.
        RejectionCode::LockedByBatch => ApiError::conflict("locked-by-batch", message),
        // Another customer's order, or another partner's pickup: as if it did not exist.
        RejectionCode::NotYourOrder => ApiError::delivery_order_not_found(order_id),
        RejectionCode::PickupNotConfirmed => {
            ApiError::retry_later("pickup-not-confirmed", message, 1)
        }
        RejectionCode::PickupMismatch => ApiError::conflict("pickup-mismatch", message),
        RejectionCode::IdempotencyConflict => ApiError::conflict("idempotency-conflict", message),
        RejectionCode::ForbiddenActor => ApiError::forbidden(message),
        RejectionCode::InvalidPayload => ApiError::unprocessable("invalid-payload", message),
        RejectionCode::InvalidEventId => ApiError::unprocessable("invalid-event-id", message),
        _ => ApiError::unprocessable("rejected", message),
    }
}
