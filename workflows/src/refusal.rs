//! Why a workflow refuses an update, as a typed contract between processes.
//!
//! An update validator answers with an error; the SDK turns it into a Temporal failure whose
//! message is the error's text. That text stays what it always was (a stable code, `: `, then
//! words for people), so the `temporal` CLI and other-language clients read the same thing, but
//! no program parses it: a [`Refusal`] also travels as an `ApplicationFailure` whose type is the
//! [`RejectionCode`] and whose details carry its data (the original answer of a `DUPLICATE`, the
//! index of the batch event that failed). [`Refusal::from_failure`] reads it back on the client.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_common::error::ApplicationFailure;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;

use crate::domain::ApplyOutcome;

/// Every reason a workflow of this crate refuses an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionCode {
    /// The workflow's start input (or an update's input) is not valid.
    InvalidInput,
    InvalidEventId,
    InvalidTransition,
    ForbiddenActor,
    InvalidPayload,
    InvalidSignal,
    /// The event id was used before for another event.
    IdempotencyConflict,
    /// The sender is not the order's customer, or not the partner that took its pickup.
    NotYourOrder,
    /// A partner event before the partner confirmed the pickup: retry shortly.
    PickupNotConfirmed,
    PickupMismatch,
    /// The event id was applied before with the same content; the details are the original
    /// answer.
    Duplicate,
    /// A batch holds the order between its prepare and its commit or abort.
    LockedByBatch,
    /// A batch's events do not all apply; the details name the failing event.
    BatchRejected,
    /// Every event of the batch was applied before: the order need not be held; the details
    /// are its current answer.
    BatchNoop,
    /// This step of the batch was taken here before (a prepare of the batch that holds the
    /// order, a commit of a committed batch, an abort of a batch over here): nothing changes,
    /// and the details are the order's current answer. A coordinator's retry is answered by its
    /// update id while Temporal remembers it; this answers it after that too (in a run continued
    /// as new), so a repeated step never adds to the history.
    BatchStepRepeated,
    /// The batch ended here already (committed, aborted or released by its lease).
    BatchFinished,
    /// The batch ended without being applied (aborted, or released because its lease ran out).
    BatchReleased,
    /// A commit for a batch the order never prepared.
    NoSuchBatch,
    /// The compatible API's rules refuse the event; the text is the original app's detail.
    CompatRefused,
    /// No workflow holds the delivery order a batch names (never a workflow's own refusal:
    /// the batch coordinator reports it, so a caller is answered as for an order it may not see).
    NoSuchOrder,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "INVALID_INPUT",
            Self::InvalidEventId => "INVALID_EVENT_ID",
            Self::InvalidTransition => "INVALID_TRANSITION",
            Self::ForbiddenActor => "FORBIDDEN_ACTOR",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::InvalidSignal => "INVALID_SIGNAL",
            Self::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Self::NotYourOrder => "NOT_YOUR_ORDER",
            Self::PickupNotConfirmed => "PICKUP_NOT_CONFIRMED",
            Self::PickupMismatch => "PICKUP_MISMATCH",
            Self::Duplicate => "DUPLICATE",
            Self::LockedByBatch => "LOCKED_BY_BATCH",
            Self::BatchRejected => "BATCH_REJECTED",
            Self::BatchNoop => "BATCH_NOOP",
            Self::BatchStepRepeated => "BATCH_STEP_REPEATED",
            Self::BatchFinished => "BATCH_FINISHED",
            Self::BatchReleased => "BATCH_RELEASED",
            Self::NoSuchBatch => "NO_SUCH_BATCH",
            Self::CompatRefused => "COMPAT_REFUSED",
            Self::NoSuchOrder => "NO_SUCH_ORDER",
        }
    }

    /// The code an `ApplicationFailure` type names, if it is one of ours.
    pub fn from_type_name(name: &str) -> Option<Self> {
        serde_json::from_value(Value::String(name.to_owned())).ok()
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which event of a batch failed, and why (the refusal of that event on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemRefusal {
    /// Position of the event among the events this order was asked to prepare.
    pub index: usize,
    pub reason: String,
    /// Why that event on its own would be refused, when it would be (absent for a batch that
    /// is malformed as a whole, and in refusals of orders that ran older code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<RejectionCode>,
}

/// A refused update: the code programs act on, the text people read, and the data some codes
/// carry (see [`RejectionCode`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    code: RejectionCode,
    message: String,
    details: Option<Value>,
}

impl Refusal {
    /// A refusal whose text says why, after the code.
    pub fn new(code: RejectionCode, why: impl fmt::Display) -> Self {
        Self::worded(code, format!("{code}: {why}"))
    }

    /// A refusal with exactly this text (texts that do not start with their code, kept as
    /// they always read).
    pub fn worded(code: RejectionCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A retried event, answered with its original outcome.
    pub fn duplicate(original: &ApplyOutcome) -> Self {
        Self::with_outcome(RejectionCode::Duplicate, original)
    }

    /// A prepare that would change nothing, answered with the order's current outcome.
    pub fn batch_noop(current: &ApplyOutcome) -> Self {
        Self::with_outcome(RejectionCode::BatchNoop, current)
    }

    /// A batch step taken before, answered with the order's current outcome.
    pub fn batch_step_repeated(current: &ApplyOutcome) -> Self {
        Self::with_outcome(RejectionCode::BatchStepRepeated, current)
    }

    fn with_outcome(code: RejectionCode, outcome: &ApplyOutcome) -> Self {
        let json = serde_json::to_value(outcome).expect("an outcome serializes");
        Self {
            code,
            message: format!("{code}: {json}"),
            details: Some(json),
        }
    }

    /// The batch event at `index` (of this order's share) cannot apply; `code` is why that
    /// event on its own would be refused, when it would be.
    pub fn batch_rejected(
        index: usize,
        code: Option<RejectionCode>,
        reason: impl fmt::Display,
    ) -> Self {
        let item = BatchItemRefusal {
            index,
            reason: reason.to_string(),
            code,
        };
        Self {
            code: RejectionCode::BatchRejected,
            message: format!("{}:{index}: {}", RejectionCode::BatchRejected, item.reason),
            details: Some(serde_json::to_value(&item).expect("a batch refusal serializes")),
        }
    }

    pub fn code(&self) -> RejectionCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer a `DUPLICATE`, `BATCH_NOOP` or `BATCH_STEP_REPEATED` carries.
    pub fn outcome(&self) -> Option<ApplyOutcome> {
        match self.code {
            RejectionCode::Duplicate
            | RejectionCode::BatchNoop
            | RejectionCode::BatchStepRepeated => self.details_as(),
            _ => None,
        }
    }

    /// The failing event a `BATCH_REJECTED` names.
    pub fn batch_item(&self) -> Option<BatchItemRefusal> {
        match self.code {
            RejectionCode::BatchRejected => self.details_as(),
            _ => None,
        }
    }

    fn details_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.details.clone()?).ok()
    }

    /// The refusal a client received, when `failure` (an update's outcome) is one of ours. The
    /// SDK may nest the typed failure as a cause of the one it reports, so the whole chain is
    /// searched; the text is always the outermost message.
    pub fn from_failure(failure: &Failure) -> Option<Self> {
        let mut next = Some(failure);
        while let Some(current) = next {
            if let Some(FailureInfo::ApplicationFailureInfo(info)) = &current.failure_info
                && let Some(code) = RejectionCode::from_type_name(&info.r#type)
            {
                let details = info
                    .details
                    .as_ref()
                    .and_then(|d| d.payloads.first())
                    .and_then(|p| serde_json::from_slice(&p.data).ok());
                return Some(Self {
                    code,
                    message: failure.message.clone(),
                    details,
                });
            }
            next = current.cause.as_deref();
        }
        None
    }
}

/// How a run whose start input was refused fails: typed `INVALID_INPUT` (readers such as the
/// read-model rebuild tell it from other failures by its type, never by its words), with
/// `message` saying what was wrong.
pub fn invalid_start(message: String) -> ApplicationFailure {
    ApplicationFailure::builder(message)
        .type_name(RejectionCode::InvalidInput.as_str().to_owned())
        .non_retryable(true)
        .build()
}

/// Whether `failure` is how a run with a refused start input ended ([`invalid_start`]).
pub fn is_invalid_start(failure: &Failure) -> bool {
    Refusal::from_failure(failure).is_some_and(|r| r.code() == RejectionCode::InvalidInput)
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a validator returns: the text as the failure's message, the typed failure as its
/// source. The SDK wraps a validator's error in a failure of its own and encodes the error's
/// source as that failure's cause, keeping an `ApplicationFailure`'s type and details there.
#[derive(Debug)]
struct OnTheWire {
    message: String,
    typed: ApplicationFailure,
}

impl fmt::Display for OnTheWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OnTheWire {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.typed)
    }
}

impl From<Refusal> for Box<dyn std::error::Error + Send + Sync> {
    fn from(refusal: Refusal) -> Self {
        let builder = ApplicationFailure::builder(refusal.message.clone())
            .type_name(refusal.code.as_str().to_owned())
            .non_retryable(true);
        let typed = match refusal.details {
            Some(details) => builder.details(details).build(),
            None => builder.build(),
        };
        Box::new(OnTheWire {
            message: refusal.message,
            typed,
        })
    }
}

/// Encodes a validator's error as the SDK does for a rejected update (for tests here and in
/// [`crate::machine`]).
#[cfg(test)]
pub(crate) fn rejected_update(refusal: Refusal) -> Failure {
    use temporalio_common::data_converters::{
        DataConverter, SerializationContextData, WorkflowSerializationContext,
    };
    use temporalio_common::error::{OutgoingError, OutgoingWorkflowError};

    let error: Box<dyn std::error::Error + Send + Sync> = refusal.into();
    DataConverter::default().to_failure(
        &SerializationContextData::Workflow(WorkflowSerializationContext::new()),
        OutgoingError::Workflow(OutgoingWorkflowError::Application(Box::new(
            ApplicationFailure::new(error),
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::State;

    fn outcome() -> ApplyOutcome {
        ApplyOutcome {
            delivery_order_id: "o".into(),
            state: State::PickedUp,
            version: 1,
            applied: false,
            allowed_events: vec![],
        }
    }

    #[test]
    fn a_duplicate_reaches_the_client_with_its_original_answer() {
        let sent = Refusal::duplicate(&outcome());
        let failure = rejected_update(sent.clone());
        assert!(failure.message.starts_with("DUPLICATE: {"), "{failure:?}");
        let received = Refusal::from_failure(&failure).expect("typed");
        assert_eq!(received, sent);
        assert_eq!(received.outcome(), Some(outcome()));
        assert_eq!(received.batch_item(), None);
    }

    #[test]
    fn a_batch_rejection_names_its_event() {
        let failure = rejected_update(Refusal::batch_rejected(
            3,
            Some(RejectionCode::InvalidTransition),
            "INVALID_TRANSITION: no",
        ));
        assert_eq!(failure.message, "BATCH_REJECTED:3: INVALID_TRANSITION: no");
        let received = Refusal::from_failure(&failure).expect("typed");
        assert_eq!(received.code(), RejectionCode::BatchRejected);
        assert_eq!(
            received.batch_item(),
            Some(BatchItemRefusal {
                index: 3,
                reason: "INVALID_TRANSITION: no".into(),
                code: Some(RejectionCode::InvalidTransition),
            })
        );
        assert_eq!(received.outcome(), None);
    }

    #[test]
    fn failures_of_others_are_not_refusals() {
        let plain = Failure::application_failure("Update failed: boom".into(), false);
        assert_eq!(Refusal::from_failure(&plain), None);
    }

    #[test]
    fn every_code_names_itself_as_its_failure_type() {
        for code in [
            RejectionCode::InvalidInput,
            RejectionCode::LockedByBatch,
            RejectionCode::BatchReleased,
            RejectionCode::NoSuchBatch,
            RejectionCode::CompatRefused,
        ] {
            assert_eq!(RejectionCode::from_type_name(code.as_str()), Some(code));
        }
        assert_eq!(RejectionCode::from_type_name("Nope"), None);
    }
}
