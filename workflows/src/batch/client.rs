//! The typed client of `EventBatchWorkflow`, for the gateway's `POST /event-batches`.

use std::time::Duration;

use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;

use super::{BatchInput, BatchResult, EventBatchWorkflow, batch_workflow_id};
use crate::client::{ClientError, TemporalTarget};

#[derive(Clone)]
pub struct EventBatchClient {
    target: TemporalTarget,
}

impl EventBatchClient {
    pub fn new(target: TemporalTarget) -> Self {
        Self { target }
    }

    /// Runs an atomic batch through its coordinator workflow and waits (at most `wait`) for its
    /// end. A repeated batch id joins the batch already running instead of starting another.
    pub async fn run(&self, input: BatchInput, wait: Duration) -> Result<BatchResult, ClientError> {
        let id = batch_workflow_id(&input.batch_id);
        let options = WorkflowStartOptions::new(self.target.task_queue(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .rpc_options(self.target.rpc())
            .build();
        match self
            .target
            .client()
            .start_workflow(EventBatchWorkflow::run, input, options)
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => {}
            Err(error) => return Err(ClientError::Unavailable(error.to_string())),
        }
        let handle = self
            .target
            .client()
            .get_workflow_handle::<EventBatchWorkflow>(id);
        match tokio::time::timeout(wait, handle.get_result(WorkflowGetResultOptions::default()))
            .await
        {
            Ok(Ok(result)) => Ok(result),
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
