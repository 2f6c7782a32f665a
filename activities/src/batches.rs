//! The batch coordinator's steps: each is one update on a delivery order's workflow, sent with
//! the typed `DeliveryOrderClient` (a workflow cannot send updates itself), and the
//! `BatchRolledBack` domain event, written to the outbox so it reaches the `delivery-events`
//! stream exactly once.

use std::sync::Arc;

use delivery_read_model::ReadModelWriter;

use delivery_workflows::activities::{
    BatchAbortStep, BatchCommitStep, BatchCoordinatorRunning, BatchPrepareStep, BatchRolledBack,
    BatchStepRequest, PrepareOutcome, PublishBatchRolledBack,
};
use delivery_workflows::delivery_order::BatchPrepare;
use delivery_workflows::{
    ApplyOutcome, ClientError, DeliveryOrderClient, RejectionCode, batch::EventBatchClient,
};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct BatchActivities {
    orders: DeliveryOrderClient,
    coordinators: EventBatchClient,
    read_model: ReadModelWriter,
}

impl BatchActivities {
    pub fn new(
        orders: DeliveryOrderClient,
        coordinators: EventBatchClient,
        read_model: ReadModelWriter,
    ) -> Self {
        Self {
            orders,
            coordinators,
            read_model,
        }
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
            batch_id: request.batch_id,
            events: request.events,
            lease_ms: request.lease_ms,
        };
        match self
            .orders
            .prepare_batch(&request.delivery_order_id, prepare)
            .await
        {
            Ok(_) => Ok(PrepareOutcome::Prepared),
            Err(ClientError::Refused(refusal)) => {
                Ok(match (refusal.outcome(), refusal.batch_item()) {
                    (Some(current), _) => PrepareOutcome::Unchanged {
                        state: current.state,
                        version: current.version,
                    },
                    (_, Some(item)) => PrepareOutcome::Rejected {
                        index: item.index,
                        reason: item.reason,
                        code: item.code,
                    },
                    // Held by another batch, or a batch over here already: the first event stands
                    // for the order.
                    _ => PrepareOutcome::Rejected {
                        index: 0,
                        reason: refusal.message().to_owned(),
                        code: Some(refusal.code()),
                    },
                })
            }
            Err(ClientError::Completed) => Ok(PrepareOutcome::Rejected {
                index: 0,
                reason: "the delivery order is finished and takes no more events".into(),
                code: None,
            }),
            Err(ClientError::NotFound) => Ok(PrepareOutcome::NotFound),
            Err(error) => Err(anyhow::anyhow!("prepare_batch: {error}").into()),
        }
    }

    #[activity(definition = BatchCommitStep)]
    pub async fn batch_commit(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: BatchStepRequest,
    ) -> Result<ApplyOutcome, ActivityError> {
        self.orders
            .commit_batch(&request.delivery_order_id, &request.batch_id)
            .await
            .map_err(|error| match error {
                // The order released itself before the commit came (its lease ran out): it
                // will never apply this batch, so retrying cannot help.
                ClientError::Refused(refusal) if refusal.code() == RejectionCode::BatchReleased => {
                    ActivityError::Application(Box::new(ApplicationFailure::non_retryable(
                        refusal.message().to_owned(),
                    )))
                }
                // The order's workflow no longer runs (terminated, or reset away from its hold):
                // nothing can apply the commit there, ever. Retrying would keep the coordinator
                // running for good, and with it the hold of every other order of the batch, which
                // waits for a running coordinator's decision; failing ends it, so they release
                // themselves by their leases.
                ClientError::NotFound | ClientError::Completed => ActivityError::Application(
                    Box::new(ApplicationFailure::non_retryable(format!(
                        "delivery order {} no longer runs: it cannot take the commit of batch {}",
                        request.delivery_order_id, request.batch_id
                    ))),
                ),
                other => anyhow::anyhow!("commit_batch: {other}").into(),
            })
    }

    #[activity(definition = BatchAbortStep)]
    pub async fn batch_abort(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: BatchStepRequest,
    ) -> Result<(), ActivityError> {
        match self
            .orders
            .abort_batch(&request.delivery_order_id, &request.batch_id)
            .await
        {
            // Nothing to release on an order that is gone or finished, or that refuses the
            // abort (a run whose start input was invalid holds no batch).
            Ok(_)
            | Err(ClientError::NotFound | ClientError::Completed | ClientError::Refused(_)) => {
                Ok(())
            }
            Err(error) => Err(anyhow::anyhow!("abort_batch: {error}").into()),
        }
    }

    /// Whether the batch's coordinator still runs, for an order whose hold outlived its lease.
    #[activity(definition = BatchCoordinatorRunning)]
    pub async fn batch_coordinator_running(
        self: Arc<Self>,
        _ctx: ActivityContext,
        batch_id: String,
    ) -> Result<bool, ActivityError> {
        self.coordinators.is_running(&batch_id).await.map_err(|e| {
            anyhow::anyhow!("asking about the coordinator of batch {batch_id}: {e}").into()
        })
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
