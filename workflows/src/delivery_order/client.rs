//! The typed client of `DeliveryOrderWorkflow`, for every process that drives delivery orders
//! (the gateway, the batch coordinator's activities): start, one event through `apply_event`,
//! the `state` query and the three batch updates. Refusals come back as typed [`Refusal`]s.

use temporalio_client::errors::{WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionDescription,
    WorkflowHandle, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions,
    WorkflowStartOptions,
};
use temporalio_common::{HasWorkflowDefinition, MemoValues, UpdateDefinition};

use super::{
    BatchDecision, BatchPrepare, DeliveryOrderView, DeliveryOrderWorkflow, StartInput, workflow_id,
};
use crate::client::{ClientError, TemporalTarget, decode_update_error, json_digest, update_error};
use crate::domain::{ApplyOutcome, DeliveryOrderInput, EventEnvelope};
use crate::refusal::RejectionCode;

/// Memo key holding a digest of the creation request, so a reused `payment_id` with different
/// content is told apart from a retry.
const FINGERPRINT_MEMO: &str = "request_fingerprint";

/// What starting a reshipment's replacement found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplacementStart {
    /// Started now.
    Started,
    /// A delivery order holds the id already: this replacement, started by an earlier attempt.
    AlreadyStarted,
    /// Another kind of workflow (named) holds the id for now.
    HeldBy(String),
}

#[derive(Debug)]
pub enum Started {
    New,
    /// The workflow existed already; its recorded fingerprint, when it has one.
    Existing {
        fingerprint: Option<String>,
    },
}

#[derive(Clone)]
pub struct DeliveryOrderClient {
    target: TemporalTarget,
}

impl DeliveryOrderClient {
    pub fn new(target: TemporalTarget) -> Self {
        Self { target }
    }

    /// The underlying Temporal client, for what is not about one order (task-queue health).
    pub fn client(&self) -> &Client {
        self.target.client()
    }

    fn handle(&self, delivery_order_id: &str) -> WorkflowHandle<Client, DeliveryOrderWorkflow> {
        self.client()
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(delivery_order_id))
    }

    /// Starts the delivery order's workflow, recording `fingerprint` (a digest of the request).
    /// A workflow id is never reused, not even after its run finished, so a repeated request
    /// can never start a second delivery.
    pub async fn start(
        &self,
        input: DeliveryOrderInput,
        fingerprint: &str,
    ) -> Result<Started, ClientError> {
        let id = workflow_id(&input.delivery_order_id);
        let mut memo = MemoValues::new();
        memo.insert(FINGERPRINT_MEMO, fingerprint.to_owned());
        let options = WorkflowStartOptions::new(self.target.task_queue(), id)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
            .memo(memo)
            .static_summary(format!(
                "delivery order for ordering {} (customer {})",
                input.ordering_id, input.customer_id
            ))
            .rpc_options(self.target.rpc())
            .build();
        let delivery_order_id = input.delivery_order_id.clone();
        match self
            .client()
            .start_workflow(DeliveryOrderWorkflow::run, StartInput::from(input), options)
            .await
        {
            Ok(_) => Ok(Started::New),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Started::Existing {
                fingerprint: self
                    .target
                    .recorded_digest::<DeliveryOrderWorkflow>(
                        &workflow_id(&delivery_order_id),
                        FINGERPRINT_MEMO,
                    )
                    .await?,
            }),
            Err(error) => Err(ClientError::Unavailable(error.to_string())),
        }
    }

    /// Starts the replacement delivery order of a reshipped one, within the target's deadline
    /// as a whole (the start, and the description of whatever holds the id). A closed
    /// replacement is never started twice; a run that failed or was terminated (or something
    /// else that held the id) may be followed by the replacement.
    pub async fn start_replacement(
        &self,
        input: DeliveryOrderInput,
    ) -> Result<ReplacementStart, ClientError> {
        let id = workflow_id(&input.delivery_order_id);
        let options = WorkflowStartOptions::new(self.target.task_queue(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
            .static_summary(format!(
                "Reshipment of delivery order {}",
                input.replaces_id.as_deref().unwrap_or_default()
            ))
            .rpc_options(self.target.rpc())
            .build();
        let delivery_order_id = input.delivery_order_id.clone();
        self.target
            .within_deadline(async {
                match self
                    .client()
                    .start_workflow(DeliveryOrderWorkflow::run, StartInput::from(input), options)
                    .await
                {
                    Ok(_) => Ok(ReplacementStart::Started),
                    Err(WorkflowStartError::AlreadyStarted { .. }) => {
                        let holder = self.holder(&delivery_order_id).await?;
                        Ok(if holder == crate::WORKFLOW_TYPE {
                            ReplacementStart::AlreadyStarted
                        } else {
                            ReplacementStart::HeldBy(holder)
                        })
                    }
                    Err(error) => Err(ClientError::Unavailable(format!(
                        "starting the replacement {id}: {error}"
                    ))),
                }
            })
            .await
    }

    /// What Temporal knows of the workflow holding the order's id, within the call's deadline.
    async fn describe(
        &self,
        delivery_order_id: &str,
    ) -> Result<WorkflowExecutionDescription, ClientError> {
        self.handle(delivery_order_id)
            .describe(
                WorkflowDescribeOptions::builder()
                    .rpc_options(self.target.rpc())
                    .build(),
            )
            .await
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "describing {}: {e}",
                    workflow_id(delivery_order_id)
                ))
            })
    }

    /// The workflow type of whatever holds the order's workflow id.
    async fn holder(&self, delivery_order_id: &str) -> Result<String, ClientError> {
        Ok(self
            .describe(delivery_order_id)
            .await?
            .raw_description
            .workflow_execution_info
            .as_ref()
            .and_then(|info| info.r#type.as_ref())
            .map(|t| t.name.clone())
            .unwrap_or_default())
    }

    /// Sends one event through the `apply_event` update. A retry of an event applied before is
    /// answered with its original outcome (`applied: false`).
    pub async fn apply_event(
        &self,
        delivery_order_id: &str,
        event: EventEnvelope,
    ) -> Result<ApplyOutcome, ClientError> {
        // Temporal answers a repeated update id with the first update's result without asking
        // the workflow, so the id covers the content: the same event again gets its original
        // answer, another event under a used id reaches the validator and its conflict.
        let options = WorkflowExecuteUpdateOptions::builder()
            .update_id(format!(
                "event:{}:{}",
                event.event_id,
                content_digest(&event)
            ))
            .rpc_options(self.target.rpc())
            .build();
        let answer = self
            .update(
                delivery_order_id,
                DeliveryOrderWorkflow::apply_event,
                event,
                options,
            )
            .await;
        answered_if(answer, RejectionCode::Duplicate)
    }

    /// The workflow's own view of the order; `None` while its start input was invalid.
    pub async fn state(
        &self,
        delivery_order_id: &str,
    ) -> Result<Option<DeliveryOrderView>, ClientError> {
        self.handle(delivery_order_id)
            .query(
                DeliveryOrderWorkflow::state,
                (),
                WorkflowQueryOptions::builder()
                    .rpc_options(self.target.rpc())
                    .build(),
            )
            .await
            .map_err(|error| match error {
                WorkflowQueryError::NotFound(_) => ClientError::NotFound,
                other => ClientError::Unavailable(other.to_string()),
            })
    }

    /// Asks the order to check a batch's events and hold itself for it (`prepare_batch`;
    /// repeating it is answered).
    pub async fn prepare_batch(
        &self,
        delivery_order_id: &str,
        prepare: BatchPrepare,
    ) -> Result<ApplyOutcome, ClientError> {
        let options = self.batch_step(&prepare.batch_id, "prepare");
        let answer = self
            .update(
                delivery_order_id,
                DeliveryOrderWorkflow::prepare_batch,
                prepare,
                options,
            )
            .await;
        answered_if(answer, RejectionCode::BatchStepRepeated)
    }

    /// Applies a prepared batch on the order (`commit_batch`; repeating it is answered).
    pub async fn commit_batch(
        &self,
        delivery_order_id: &str,
        batch_id: &str,
    ) -> Result<ApplyOutcome, ClientError> {
        let options = self.batch_step(batch_id, "commit");
        let answer = self
            .update(
                delivery_order_id,
                DeliveryOrderWorkflow::commit_batch,
                decision(batch_id),
                options,
            )
            .await;
        answered_if(answer, RejectionCode::BatchStepRepeated)
    }

    /// Releases the order from a batch without applying anything (`abort_batch`; repeating it
    /// is answered).
    pub async fn abort_batch(
        &self,
        delivery_order_id: &str,
        batch_id: &str,
    ) -> Result<ApplyOutcome, ClientError> {
        let options = self.batch_step(batch_id, "abort");
        let answer = self
            .update(
                delivery_order_id,
                DeliveryOrderWorkflow::abort_batch,
                decision(batch_id),
                options,
            )
            .await;
        answered_if(answer, RejectionCode::BatchStepRepeated)
    }

    /// Runs one update on the order; refusals come back typed.
    async fn update<U>(
        &self,
        delivery_order_id: &str,
        update: U,
        input: U::Input,
        options: WorkflowExecuteUpdateOptions,
    ) -> Result<U::Output, ClientError>
    where
        U: UpdateDefinition<Workflow = <DeliveryOrderWorkflow as HasWorkflowDefinition>::Run>,
        U::Input: Send,
    {
        self.target
            .within_deadline(async {
                match self
                    .handle(delivery_order_id)
                    .execute_update(update, input, options)
                    .await
                {
                    Ok(output) => Ok(output),
                    Err(error) => Err(update_error(
                        decode_update_error(self.target.client(), error).await,
                    )),
                }
            })
            .await
    }

    /// One update id per batch and step, so a retried step is answered by Temporal itself.
    fn batch_step(&self, batch_id: &str, step: &str) -> WorkflowExecuteUpdateOptions {
        WorkflowExecuteUpdateOptions::builder()
            .update_id(format!("batch:{batch_id}:{step}"))
            .rpc_options(self.target.rpc())
            .build()
    }
}

/// An update's answer, with a refusal of kind `answered` (a repeat the validator answered with
/// the outcome it carries) taken as that outcome.
fn answered_if(
    answer: Result<ApplyOutcome, ClientError>,
    answered: RejectionCode,
) -> Result<ApplyOutcome, ClientError> {
    match answer {
        Err(ClientError::Refused(refusal)) => match refusal.outcome() {
            Some(outcome) if refusal.code() == answered => Ok(outcome),
            _ => Err(ClientError::Refused(refusal)),
        },
        answer => answer,
    }
}

fn decision(batch_id: &str) -> BatchDecision {
    BatchDecision {
        batch_id: batch_id.to_owned(),
    }
}

/// A short digest of what an event says (type, data, sender), for its update id.
fn content_digest(event: &EventEnvelope) -> String {
    let content = serde_json::json!([event.event_type, event.data, event.actor, event.pickup_id]);
    json_digest(&content)[..16].to_owned()
}
