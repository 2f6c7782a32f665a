//! The batch coordinator's steps: each is one update on a delivery order's workflow, sent with
//! the Temporal client (a workflow cannot send updates itself), and the `BatchRolledBack` domain
//! event, written to the outbox so it reaches the `delivery-events` stream exactly once.

use std::sync::Arc;

use delivery_read_model::ReadModelWriter;
use delivery_workflows::activities::{
    BatchAbortStep, BatchCommitStep, BatchPrepareStep, BatchRolledBack, BatchStepRequest,
    PrepareOutcome, PublishBatchRolledBack,
};
use delivery_workflows::refusal;
use delivery_workflows::workflow::{BatchDecision, BatchPrepare};
use delivery_workflows::{ApplyOutcome, DeliveryOrderWorkflow, workflow_id};
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{Client, WorkflowExecuteUpdateOptions};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct BatchActivities {
    client: Client,
    read_model: ReadModelWriter,
}

impl BatchActivities {
    pub fn new(client: Client, read_model: ReadModelWriter) -> Self {
        Self { client, read_model }
    }

    fn options(&self, step: &str, request: &BatchStepRequest) -> WorkflowExecuteUpdateOptions {
        WorkflowExecuteUpdateOptions::builder()
            .update_id(format!("batch:{}:{step}", request.batch_id))
            .build()
    }
}

fn finished(error: &WorkflowUpdateError) -> bool {
    match error {
        WorkflowUpdateError::NotFound(status) | WorkflowUpdateError::Rpc(status) => {
            status.message().contains("already completed")
        }
        _ => false,
    }
}

#[activities]
impl BatchActivities {
    #[activity(definition = BatchPrepareStep)]
    pub async fn batch_prepare(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: BatchStepRequest,
    ) -> Result<PrepareOutcome, ActivityError> {
        let prepare = BatchPrepare {
            batch_id: request.batch_id.clone(),
            events: request.events.clone(),
            lease_ms: request.lease_ms,
        };
        let answer = self
            .client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(&request.delivery_order_id))
            .execute_update(
                DeliveryOrderWorkflow::prepare_batch,
                prepare,
                self.options("prepare", &request),
            )
            .await;
        match answer {
            Ok(_) => Ok(PrepareOutcome::Prepared),
            Err(WorkflowUpdateError::Failed(failure))
                if refusal::as_batch_noop(&failure.message).is_some() =>
            {
                let current = refusal::as_batch_noop(&failure.message).expect("checked");
                Ok(PrepareOutcome::Unchanged {
                    state: current.state,
                    version: current.version,
                })
            }
            Err(WorkflowUpdateError::Failed(failure)) => {
                let message = failure.message;
                let (index, reason) = match refusal::as_batch_rejection(&message) {
                    Some((index, reason)) => (index, reason.to_owned()),
                    None => (0, message),
                };
                Ok(PrepareOutcome::Rejected { index, reason })
            }
            Err(error) if finished(&error) => Ok(PrepareOutcome::Rejected {
                index: 0,
                reason: "the delivery order is finished and takes no more events".into(),
            }),
            Err(WorkflowUpdateError::NotFound(_)) => Ok(PrepareOutcome::NotFound),
            Err(error) => Err(anyhow::anyhow!("prepare_batch: {error}").into()),
        }
    }

    #[activity(definition = BatchCommitStep)]
    pub async fn batch_commit(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: BatchStepRequest,
    ) -> Result<ApplyOutcome, ActivityError> {
        self.client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(&request.delivery_order_id))
            .execute_update(
                DeliveryOrderWorkflow::commit_batch,
                BatchDecision {
                    batch_id: request.batch_id.clone(),
                },
                self.options("commit", &request),
            )
            .await
            .map_err(|error| match error {
                // The order released itself before the commit came (its lease ran out): it
                // will never apply this batch, so retrying cannot help.
                WorkflowUpdateError::Failed(failure)
                    if refusal::code(&failure.message) == refusal::BATCH_RELEASED =>
                {
                    ActivityError::Application(Box::new(ApplicationFailure::non_retryable(
                        failure.message,
                    )))
                }
                other => anyhow::anyhow!("commit_batch: {other}").into(),
            })
    }

    #[activity(definition = BatchAbortStep)]
    pub async fn batch_abort(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: BatchStepRequest,
    ) -> Result<(), ActivityError> {
        let answer = self
            .client
            .get_workflow_handle::<DeliveryOrderWorkflow>(workflow_id(&request.delivery_order_id))
            .execute_update(
                DeliveryOrderWorkflow::abort_batch,
                BatchDecision {
                    batch_id: request.batch_id.clone(),
                },
                self.options("abort", &request),
            )
            .await;
        match answer {
            Ok(_) => Ok(()),
            // Nothing to release on an order that is gone or finished.
            Err(WorkflowUpdateError::NotFound(_)) => Ok(()),
            Err(error) if finished(&error) => Ok(()),
            Err(error) => Err(anyhow::anyhow!("abort_batch: {error}").into()),
        }
    }

    #[activity(definition = PublishBatchRolledBack)]
    pub async fn batch_rolled_back(
        self: Arc<Self>,
        _ctx: ActivityContext,
        event: BatchRolledBack,
    ) -> Result<(), ActivityError> {
        self.read_model
            .publish_batch_rolled_back(&event)
            .await
            .map_err(ActivityError::from)?;
        Ok(())
    }
}
