//! Starting the replacement delivery order of a reshipped one, with the Temporal client. The
//! workflow calls this as an activity retried until it lands, so a start the server refuses
//! (the id held by another workflow for a while, Temporal unavailable) is tried again.

use std::sync::Arc;

use delivery_workflows::activities::StartReplacement;
use delivery_workflows::{DeliveryOrderInput, DeliveryOrderWorkflow, StartInput, workflow_id};
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct ReplacementActivities {
    client: Client,
    task_queue: String,
}

impl ReplacementActivities {
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
        }
    }

    /// The id is already in use: done if a delivery order holds it (this replacement, started
    /// by an earlier attempt); an error to retry if something else does.
    async fn held_by_the_replacement(&self, id: &str) -> Result<(), ActivityError> {
        let description = self
            .client
            .get_workflow_handle::<DeliveryOrderWorkflow>(id.to_owned())
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("describing {id}: {e}"))?;
        let holder = description
            .raw_description
            .workflow_execution_info
            .as_ref()
            .and_then(|info| info.r#type.as_ref())
            .map(|t| t.name.clone())
            .unwrap_or_default();
        if holder == delivery_workflows::WORKFLOW_TYPE {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "workflow id {id} is held by a {holder:?} workflow; retrying until it is free"
            )
            .into())
        }
    }
}

#[activities]
impl ReplacementActivities {
    #[activity(definition = StartReplacement)]
    pub async fn start_replacement(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: DeliveryOrderInput,
    ) -> Result<(), ActivityError> {
        let id = workflow_id(&input.delivery_order_id);
        // A closed replacement is never started twice; a run that failed or was terminated (or
        // something else that held the id) may be followed by the replacement.
        let options = WorkflowStartOptions::new(self.task_queue.clone(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
            .static_summary(format!(
                "Reshipment of delivery order {}",
                input.replaces_id.as_deref().unwrap_or_default()
            ))
            .build();
        match self
            .client
            .start_workflow(DeliveryOrderWorkflow::run, StartInput::from(input), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                self.held_by_the_replacement(&id).await
            }
            Err(error) => Err(anyhow::anyhow!("starting the replacement {id}: {error}").into()),
        }
    }
}
