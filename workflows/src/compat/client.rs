//! The typed client of `CompatDeliveryWorkflow`, for the gateway's compatible API.

use serde_json::Value;
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_common::MemoValues;

use super::{
    CompatCommand, CompatDelivery, CompatDeliveryWorkflow, CompatStart, compat_workflow_id,
};
use crate::client::{ClientError, TemporalTarget, decode_update_error, json_digest, update_error};

/// Memo key holding a digest of the delivery's `CREATE_DELIVERY` data, so a reused creation key
/// with other data is told apart from a retry.
const CREATION_MEMO: &str = "creation_digest";

/// What a creation found.
#[derive(Debug, PartialEq, Eq)]
pub enum CompatStarted {
    /// Started now.
    New,
    /// Started before with the same data (a retry).
    Existing,
    /// The id holds a delivery created with other data: nothing was started.
    IdReused,
}

#[derive(Clone)]
pub struct CompatClient {
    target: TemporalTarget,
}

impl CompatClient {
    pub fn new(target: TemporalTarget) -> Self {
        Self { target }
    }

    /// Starts a delivery's workflow with its `CREATE_DELIVERY` data (the workflow checks it). An
    /// id is never reused, so a retry of a creation (same id, same data) finds its delivery.
    pub async fn start(&self, id: &str, data: Value) -> Result<CompatStarted, ClientError> {
        let workflow_id = compat_workflow_id(id);
        let digest = json_digest(&data);
        let mut memo = MemoValues::new();
        memo.insert(CREATION_MEMO, digest.clone());
        let options = WorkflowStartOptions::new(self.target.task_queue(), workflow_id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .memo(memo)
            .rpc_options(self.target.rpc())
            .build();
        let start = CompatStart {
            id: id.to_owned(),
            data,
        };
        match self
            .target
            .client()
            .start_workflow(
                CompatDeliveryWorkflow::run,
                serde_json::to_value(start).expect("a start input serializes"),
                options,
            )
            .await
        {
            Ok(_) => Ok(CompatStarted::New),
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                let recorded = self
                    .target
                    .recorded_digest::<CompatDeliveryWorkflow>(&workflow_id, CREATION_MEMO)
                    .await?;
                Ok(if recorded.is_some_and(|r| r != digest) {
                    CompatStarted::IdReused
                } else {
                    CompatStarted::Existing
                })
            }
            Err(error) => Err(ClientError::Unavailable(error.to_string())),
        }
    }

    /// Sends one event; a refusal carries the original app's detail as its text.
    pub async fn apply(
        &self,
        id: &str,
        command: CompatCommand,
    ) -> Result<CompatDelivery, ClientError> {
        // Temporal answers a repeated update id with the first update's result without asking
        // the workflow, so the id covers the content: another event under a used key reaches
        // the validator, which refuses it.
        let content = json_digest(&serde_json::json!([command.event_type, command.data]));
        let options = WorkflowExecuteUpdateOptions::builder()
            .update_id(format!("compat:{}:{}", command.event_id, &content[..16]))
            .rpc_options(self.target.rpc())
            .build();
        let client = self.target.client();
        self.target
            .within_deadline(async {
                match client
                    .get_workflow_handle::<CompatDeliveryWorkflow>(compat_workflow_id(id))
                    .execute_update(CompatDeliveryWorkflow::apply, command, options)
                    .await
                {
                    Ok(delivery) => Ok(delivery),
                    Err(error) => Err(update_error(decode_update_error(client, error).await)),
                }
            })
            .await
    }
}
