//! The words a delivery-order workflow refuses an update with, and how a client reads them.
//!
//! An update validator can only fail with a message, so the contract is the message's first
//! word: a stable code, then `: ` and text for people. The one refusal that carries data is
//! `DUPLICATE`, whose text is the original answer as JSON, so a retried event gets that answer
//! without the retry adding anything to the workflow's history. Both ends use this module.

use crate::domain::ApplyOutcome;

/// The event id was applied before with the same content; the text is the original answer.
pub const DUPLICATE: &str = "DUPLICATE";
/// A batch holds the order between its prepare and its commit or abort.
pub const LOCKED_BY_BATCH: &str = "LOCKED_BY_BATCH";
/// A batch's events do not all apply; the text starts with the failing event's index.
pub const BATCH_REJECTED: &str = "BATCH_REJECTED";
/// Every event of the batch was applied before: the order need not be held; the text is its
/// current outcome as JSON.
pub const BATCH_NOOP: &str = "BATCH_NOOP";
/// The batch ended here already (committed, aborted or released by its lease).
pub const BATCH_FINISHED: &str = "BATCH_FINISHED";
/// The batch ended without being applied (aborted, or released because its lease ran out).
pub const BATCH_RELEASED: &str = "BATCH_RELEASED";

/// The refusal that answers a retried event with its original outcome.
pub fn duplicate(original: &ApplyOutcome) -> String {
    format!(
        "{DUPLICATE}: {}",
        serde_json::to_string(original).expect("an outcome serializes")
    )
}

/// The original outcome, when `message` is a `DUPLICATE` refusal.
pub fn as_duplicate(message: &str) -> Option<ApplyOutcome> {
    outcome_after(DUPLICATE, message)
}

/// The refusal of a prepare that would change nothing.
pub fn batch_noop(current: &ApplyOutcome) -> String {
    format!(
        "{BATCH_NOOP}: {}",
        serde_json::to_string(current).expect("an outcome serializes")
    )
}

/// The order's outcome, when `message` is a `BATCH_NOOP` refusal.
pub fn as_batch_noop(message: &str) -> Option<ApplyOutcome> {
    outcome_after(BATCH_NOOP, message)
}

fn outcome_after(code: &str, message: &str) -> Option<ApplyOutcome> {
    let json = message.strip_prefix(code)?.strip_prefix(": ")?;
    serde_json::from_str(json).ok()
}

/// The stable code a refusal starts with.
pub fn code(message: &str) -> &str {
    message.split_once(':').map_or(message, |(code, _)| code)
}

/// The index of the failing event and the reason, when `message` is a `BATCH_REJECTED`.
pub fn as_batch_rejection(message: &str) -> Option<(usize, &str)> {
    let rest = message.strip_prefix(BATCH_REJECTED)?.strip_prefix(':')?;
    let (index, reason) = rest.split_once(": ")?;
    Some((index.parse().ok()?, reason))
}

/// `BATCH_REJECTED` for the event at `index`.
pub fn batch_rejection(index: usize, reason: impl std::fmt::Display) -> String {
    format!("{BATCH_REJECTED}:{index}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::State;

    #[test]
    fn duplicate_carries_the_original_answer() {
        let original = ApplyOutcome {
            delivery_order_id: "o".into(),
            state: State::PickedUp,
            version: 1,
            applied: false,
            allowed_events: vec![],
        };
        let message = duplicate(&original);
        assert_eq!(code(&message), DUPLICATE);
        assert_eq!(as_duplicate(&message), Some(original));
        assert_eq!(as_duplicate("DUPLICATE: not json"), None);
        assert_eq!(as_duplicate("LOCKED_BY_BATCH: held"), None);
    }

    #[test]
    fn batch_rejection_round_trips() {
        let message = batch_rejection(3, "INVALID_TRANSITION: no");
        assert_eq!(code(&message), BATCH_REJECTED);
        assert_eq!(
            as_batch_rejection(&message),
            Some((3, "INVALID_TRANSITION: no"))
        );
        assert_eq!(as_batch_rejection("BATCH_REJECTED:x: y"), None);
    }
}
