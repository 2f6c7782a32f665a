//! The typed client of `EventBatchWorkflow`, for the gateway's `POST /event-batches`.

use std::time::Duration;

use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_common::MemoValues;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;

use super::{BatchInput, BatchResult, EventBatchWorkflow, batch_workflow_id};
use crate::client::{ClientError, TemporalTarget, json_digest};

/// Memo key holding a digest of the batch's events, so a reused batch id (the same caller's
/// `Idempotency-Key`) with other events is told apart from a retry of the same batch.
const CONTENT_MEMO: &str = "batch_content";

/// How a batch run ended for its caller.
#[derive(Debug)]
pub enum BatchRun {
    /// The batch (started now, or the one this retry joined) finished with this result.
    Finished(BatchResult),
    /// The batch id belongs to a batch of other events: nothing was started or joined.
    IdReused,
}

#[derive(Clone)]
pub struct EventBatchClient {
    target: TemporalTarget,
}

impl EventBatchClient {
    pub fn new(target: TemporalTarget) -> Self {
        Self { target }
    }

    /// Runs an atomic batch through its coordinator workflow and waits (at most `wait`) for its
    /// end. A repeated batch id with the same events joins the batch already running (or
    /// finished) instead of starting another; with other events it is [`BatchRun::IdReused`].
    pub async fn run(&self, input: BatchInput, wait: Duration) -> Result<BatchRun, ClientError> {
        let id = batch_workflow_id(&input.batch_id);
        let content = content_digest(&input);
        let mut memo = MemoValues::new();
        memo.insert(CONTENT_MEMO, content.clone());
        let options = WorkflowStartOptions::new(self.target.task_queue(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .memo(memo)
            .rpc_options(self.target.rpc())
            .build();
        match self
            .target
            .client()
            .start_workflow(EventBatchWorkflow::run, input, options)
            .await
        {
            Ok(_) => {}
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                // A coordinator started before digests were recorded has none: it is joined.
                if self
                    .target
                    .recorded_digest::<EventBatchWorkflow>(&id, CONTENT_MEMO)
                    .await?
                    .is_some_and(|recorded| recorded != content)
                {
                    return Ok(BatchRun::IdReused);
                }
            }
            Err(error) => return Err(ClientError::Unavailable(error.to_string())),
        }
        let handle = self
            .target
            .client()
            .get_workflow_handle::<EventBatchWorkflow>(id);
        match tokio::time::timeout(wait, handle.get_result(WorkflowGetResultOptions::default()))
            .await
        {
            Ok(Ok(result)) => Ok(BatchRun::Finished(result)),
            Ok(Err(error)) => Err(ClientError::Unavailable(error.to_string())),
            Err(_) => Err(ClientError::Unavailable(format!(
                "the batch did not finish within {} s",
                wait.as_secs()
            ))),
        }
    }

    /// Whether the coordinator of `batch_id` is still running: false once it closed in any way
    /// (completed, failed, terminated, timed out) and when no such batch was ever started.
    pub async fn is_running(&self, batch_id: &str) -> Result<bool, ClientError> {
        let id = batch_workflow_id(batch_id);
        let described = self
            .target
            .client()
            .get_workflow_handle::<EventBatchWorkflow>(id)
            .describe(
                WorkflowDescribeOptions::builder()
                    .rpc_options(self.target.rpc())
                    .build(),
            )
            .await;
        match described {
            Ok(description) => Ok(description
                .raw_description
                .workflow_execution_info
                .is_some_and(|info| info.status() == WorkflowExecutionStatus::Running)),
            Err(WorkflowInteractionError::NotFound(_)) => Ok(false),
            Err(error) => Err(ClientError::Unavailable(error.to_string())),
        }
    }
}

/// A digest of what a batch asks for: each event's order, id, type and data, in order. The
/// correlation id and the lease are left out: a retry may carry another trace, not other events.
fn content_digest(input: &BatchInput) -> String {
    let content: Vec<_> = input
        .items
        .iter()
        .map(|item| {
            serde_json::json!([
                item.delivery_order_id,
                item.event.event_id,
                item.event.event_type,
                item.event.data
            ])
        })
        .collect();
    json_digest(&serde_json::Value::from(content))
}
