//! The command side: everything that changes a delivery order goes to its Temporal workflow.
//! Creation starts the workflow (its id is the idempotency key); events go through the
//! `apply_event` update, whose validator refuses what the graph does not allow without leaving
//! a trace in history.

use std::time::Duration;

use delivery_workflows::batch_workflow::{
    BatchInput, BatchResult, EventBatchWorkflow, batch_workflow_id,
};
use delivery_workflows::compat::CompatDelivery;
use delivery_workflows::compat_workflow::{
    CompatCommand, CompatDeliveryWorkflow, compat_workflow_id,
};
use delivery_workflows::{
    ApplyOutcome, DeliveryOrderInput, DeliveryOrderView, DeliveryOrderWorkflow, EventEnvelope,
    StartInput, workflow_id,
};
use temporalio_client::errors::{WorkflowQueryError, WorkflowStartError, WorkflowUpdateError};
use temporalio_client::{
    Client, RpcOptions, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions,
    WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::MemoValues;

/// Memo key holding a digest of the creation request, so a reused `payment_id` with different
/// content is told apart from a retry.
const FINGERPRINT_MEMO: &str = "request_fingerprint";

#[derive(Debug)]
pub enum Created {
    New,
    /// The workflow existed already; its recorded fingerprint, when it has one.
    Existing {
        fingerprint: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no workflow for this delivery order")]
    NotFound,
    /// The workflow refused the event; the text starts with the rejection code.
    #[error("{0}")]
    Rejected(String),
    /// The workflow has finished and takes no more events.
    #[error("the delivery order's workflow has completed")]
    Completed,
    #[error("Temporal did not answer: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Commands {
    client: Client,
    task_queue: String,
    timeout: Duration,
}

impl Commands {
    pub fn new(client: Client, task_queue: String, timeout: Duration) -> Self {
        Self {
            client,
            task_queue,
            timeout,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn rpc(&self) -> RpcOptions {
        RpcOptions::builder().timeout(self.timeout).build()
    }

    /// Starts the delivery order's workflow. A workflow id is never reused, not even after its
    /// run finished, so a repeated request can never start a second delivery.
    pub async fn start(
        &self,
        input: DeliveryOrderInput,
        fingerprint: &str,
    ) -> Result<Created, CommandError> {
        let id = workflow_id(&input.delivery_order_id);
        let mut memo = MemoValues::new();
        memo.insert(FINGERPRINT_MEMO, fingerprint.to_owned());
        let options = WorkflowStartOptions::new(self.task_queue.clone(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
            .memo(memo)
            .static_summary(format!(
                "delivery order for ordering {} (customer {})",
                input.ordering_id, input.customer_id
            ))
            .rpc_options(self.rpc())
            .build();
        match self
            .client
            .start_workflow(DeliveryOrderWorkflow::run, StartInput::from(input), options)
            .await
        {
            Ok(_) => Ok(Created::New),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Created::Existing {
                fingerprint: self.fingerprint(&id).await?,
            }),
            Err(error) => Err(CommandError::Unavailable(error.to_string())),
        }
    }

    async fn fingerprint(&self, workflow_id: &str) -> Result<Option<String>, CommandError> {
        let description = self
            .client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id.to_owned())
            .describe(
                WorkflowDescribeOptions::builder()
                    .rpc_options(self.rpc())
                    .build(),
            )
            .await
            .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        Ok(description
            .memo()
            .get::<String>(FINGERPRINT_MEMO)
            .ok()
            .flatten())
    }

    /// Sends one event through the `apply_event` update.
    pub async fn apply(
        &self,
        delivery_order_id: &str,
        event: EventEnvelope,
    ) -> Result<ApplyOutcome, CommandError> {
        // Temporal answers a repeated update id with the first update's result without asking
        // the workflow, so the id covers the content: the same event again gets its original
        // answer, another event under a used id reaches the validator and its conflict.
        let options = WorkflowExecuteUpdateOptions::builder()
            .update_id(format!(
                "event:{}:{}",
                event.event_id,
                content_digest(&event)
            ))
            .rpc_options(self.rpc())
            .build();
        self.client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(delivery_order_id))
            .execute_update(DeliveryOrderWorkflow::apply_event, event, options)
            .await
            .map_err(update_error)
    }

    /// The workflow's own view of the order (used to explain a refused event).
    pub async fn state(
        &self,
        delivery_order_id: &str,
    ) -> Result<Option<DeliveryOrderView>, CommandError> {
        self.client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(delivery_order_id))
            .query(
                DeliveryOrderWorkflow::state,
                (),
                WorkflowQueryOptions::builder()
                    .rpc_options(self.rpc())
                    .build(),
            )
            .await
            .map_err(|error| match error {
                WorkflowQueryError::NotFound(_) => CommandError::NotFound,
                other => CommandError::Unavailable(other.to_string()),
            })
    }
}

impl Commands {
    /// Starts a compatible-API delivery's workflow.
    pub async fn start_compat(
        &self,
        id: &str,
        data: serde_json::Value,
    ) -> Result<(), CommandError> {
        let options = WorkflowStartOptions::new(self.task_queue.clone(), compat_workflow_id(id))
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .rpc_options(self.rpc())
            .build();
        self.client
            .start_workflow(
                CompatDeliveryWorkflow::run,
                serde_json::json!({"id": id, "data": data}),
                options,
            )
            .await
            .map(|_| ())
            .map_err(|e| CommandError::Unavailable(e.to_string()))
    }

    /// Sends one event to a compatible-API delivery.
    pub async fn apply_compat(
        &self,
        id: &str,
        command: CompatCommand,
    ) -> Result<CompatDelivery, CommandError> {
        let options = WorkflowExecuteUpdateOptions::builder()
            .update_id(format!("compat:{}", command.event_id))
            .rpc_options(self.rpc())
            .build();
        self.client
            .get_workflow_handle::<CompatDeliveryWorkflow>(compat_workflow_id(id))
            .execute_update(CompatDeliveryWorkflow::apply, command, options)
            .await
            .map_err(update_error)
    }
}

impl Commands {
    /// Runs an atomic batch through its coordinator workflow and waits (bounded) for its end.
    /// A repeated batch id joins the batch already running instead of starting another.
    pub async fn run_batch(
        &self,
        input: BatchInput,
        wait: Duration,
    ) -> Result<BatchResult, CommandError> {
        let id = batch_workflow_id(&input.batch_id);
        let options = WorkflowStartOptions::new(self.task_queue.clone(), id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .rpc_options(self.rpc())
            .build();
        match self
            .client
            .start_workflow(EventBatchWorkflow::run, input, options)
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => {}
            Err(error) => return Err(CommandError::Unavailable(error.to_string())),
        }
        let handle = self.client.get_workflow_handle::<EventBatchWorkflow>(id);
        match tokio::time::timeout(wait, handle.get_result(WorkflowGetResultOptions::default()))
            .await
        {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(CommandError::Unavailable(error.to_string())),
            Err(_) => Err(CommandError::Unavailable(format!(
                "the batch did not finish within {} s",
                wait.as_secs()
            ))),
        }
    }
}

/// A short digest of what an event says (type, data, sender), for its update id.
fn content_digest(event: &EventEnvelope) -> String {
    use sha2::{Digest, Sha256};
    let content = serde_json::json!([event.event_type, event.data, event.actor, event.pickup_id]);
    let digest = Sha256::digest(content.to_string().as_bytes());
    hex::encode(&digest[..8])
}

fn update_error(error: WorkflowUpdateError) -> CommandError {
    match error {
        WorkflowUpdateError::NotFound(status) if is_completed(status.message()) => {
            CommandError::Completed
        }
        WorkflowUpdateError::NotFound(_) => CommandError::NotFound,
        WorkflowUpdateError::Failed(failure) => CommandError::Rejected(failure.message),
        WorkflowUpdateError::Rpc(status) if is_completed(status.message()) => {
            CommandError::Completed
        }
        other => CommandError::Unavailable(other.to_string()),
    }
}

fn is_completed(message: &str) -> bool {
    message.contains("already completed")
}
