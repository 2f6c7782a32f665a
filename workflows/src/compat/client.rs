//! The typed client of `CompatDeliveryWorkflow`, for the gateway's compatible API.

use serde_json::Value;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
};

use super::{
    CompatCommand, CompatDelivery, CompatDeliveryWorkflow, CompatStart, compat_workflow_id,
};
use crate::client::{ClientError, TemporalTarget, decode_update_error, update_error};

#[derive(Clone)]
pub struct CompatClient {
    target: TemporalTarget,
}

impl CompatClient {
    pub fn new(target: TemporalTarget) -> Self {
        Self { target }
    }

    /// Starts a delivery's workflow with its `CREATE_DELIVERY` data (the workflow checks it).
    pub async fn start(&self, id: &str, data: Value) -> Result<(), ClientError> {
        let options = WorkflowStartOptions::new(self.target.task_queue(), compat_workflow_id(id))
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .rpc_options(self.target.rpc())
            .build();
        let start = CompatStart {
            id: id.to_owned(),
            data,
        };
        self.target
            .client()
            .start_workflow(
                CompatDeliveryWorkflow::run,
                serde_json::to_value(start).expect("a start input serializes"),
                options,
            )
            .await
            .map(|_| ())
            .map_err(|e| ClientError::Unavailable(e.to_string()))
    }

    /// Sends one event; a refusal carries the original app's detail as its text.
    pub async fn apply(
        &self,
        id: &str,
        command: CompatCommand,
    ) -> Result<CompatDelivery, ClientError> {
        let options = WorkflowExecuteUpdateOptions::builder()
            .update_id(format!("compat:{}", command.event_id))
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
