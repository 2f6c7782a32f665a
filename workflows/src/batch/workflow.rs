//! `EventBatchWorkflow`: applies events for one or several delivery orders all or none, in
//! order, under one correlation id. Two phases over the orders' own workflows: each order checks
//! its share of the events and holds itself for the batch (`prepare_batch`, refusing other
//! commands meanwhile); if every order agreed, each applies its share (`commit_batch`),
//! otherwise each is released (`abort_batch`) and `BatchRolledBack` is published. Being a
//! workflow itself, the coordinator finishes what it started even across worker crashes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowContextView, WorkflowResult};

use crate::activities::{
    BatchAbortStep, BatchCommitStep, BatchPrepareStep, BatchRolledBack, BatchStepRequest,
    PrepareOutcome, PublishBatchRolledBack,
};
use crate::delivery_order::{DEFAULT_BATCH_LEASE, MAX_BATCH_LEASE, retried_until_done};
use crate::domain::{EventEnvelope, State};
use crate::refusal::RejectionCode;

/// The Temporal workflow id of a batch.
pub fn batch_workflow_id(batch_id: &str) -> String {
    format!("event-batch-{batch_id}")
}

/// How long one order may take to prepare before the batch is aborted.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub delivery_order_id: String,
    pub event: EventEnvelope,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInput {
    pub batch_id: String,
    pub correlation_id: String,
    pub items: Vec<BatchItem>,
    /// How long an order may wait for the commit once the last order prepared (milliseconds;
    /// default 30 s). Each order's lease adds the prepare time of the orders after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderResult {
    pub delivery_order_id: String,
    pub state: State,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchResult {
    Committed {
        results: Vec<OrderResult>,
    },
    RolledBack {
        failed_event_index: usize,
        delivery_order_id: String,
        reason: String,
        /// Why the failing event was refused, when its order said (`NO_SUCH_ORDER` when no
        /// workflow holds the order; absent when the order did not answer in time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<RejectionCode>,
    },
}

#[workflow]
pub struct EventBatchWorkflow {
    input: BatchInput,
}

#[workflow_methods]
impl EventBatchWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: BatchInput) -> Self {
        Self { input }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<BatchResult> {
        let input = ctx.state(|s| s.input.clone());
        let groups = group_by_order(&input.items);
        let step = |order: &str, events: Vec<EventEnvelope>| BatchStepRequest {
            delivery_order_id: order.to_owned(),
            batch_id: input.batch_id.clone(),
            events,
            lease_ms: None,
        };
        let lease = input
            .lease_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_BATCH_LEASE);

        let mut touched: Vec<&str> = Vec::new();
        // Orders whose share was applied before: not held, so not committed either.
        let mut unchanged: Vec<OrderResult> = Vec::new();
        let mut failure = None;
        for (position, (order, indexed)) in groups.iter().enumerate() {
            touched.push(order);
            let events = indexed.iter().map(|(_, e)| e.clone()).collect();
            // Held until every later order prepared too, then `lease` for the commit.
            let later = u32::try_from(groups.len() - position - 1).unwrap_or(u32::MAX);
            let hold = (lease + PREPARE_TIMEOUT.saturating_mul(later)).min(MAX_BATCH_LEASE);
            let request = BatchStepRequest {
                lease_ms: Some(hold.as_millis() as u64),
                ..step(order, events)
            };
            let outcome = ctx
                .execute_activity(BatchPrepareStep, request, prepare_options())
                .await;
            let first = indexed[0].0;
            match outcome {
                Ok(PrepareOutcome::Prepared) => {}
                Ok(PrepareOutcome::Unchanged { state, version }) => unchanged.push(OrderResult {
                    delivery_order_id: order.clone(),
                    state,
                    version,
                }),
                Ok(PrepareOutcome::Rejected {
                    index,
                    reason,
                    code,
                }) => {
                    let global = indexed.get(index).map_or(first, |(i, _)| *i);
                    failure = Some((global, order.clone(), reason, code));
                    break;
                }
                Ok(PrepareOutcome::NotFound) => {
                    failure = Some((
                        first,
                        order.clone(),
                        format!("no delivery order {order}"),
                        Some(RejectionCode::NoSuchOrder),
                    ));
                    break;
                }
                Err(_) => {
                    failure = Some((
                        first,
                        order.clone(),
                        format!("delivery order {order} did not answer in time"),
                        None,
                    ));
                    break;
                }
            }
        }

        if let Some((failed_event_index, delivery_order_id, reason, code)) = failure {
            // Release every order asked so far (the last may hold itself even if its answer
            // was lost; aborting an order that does not hold the batch changes nothing).
            let held = touched
                .into_iter()
                .filter(|o| !unchanged.iter().any(|r| r.delivery_order_id == *o));
            for order in held {
                ctx.execute_activity(
                    BatchAbortStep,
                    step(order, Vec::new()),
                    retried_until_done(),
                )
                .await?;
            }
            let event = BatchRolledBack {
                batch_id: input.batch_id.clone(),
                correlation_id: input.correlation_id.clone(),
                reason: reason.clone(),
                failed_event_index,
                delivery_order_id: delivery_order_id.clone(),
            };
            ctx.execute_activity(PublishBatchRolledBack, event, retried_until_done())
                .await?;
            return Ok(BatchResult::RolledBack {
                failed_event_index,
                delivery_order_id,
                reason,
                code,
            });
        }

        let mut results = Vec::with_capacity(groups.len());
        for (order, _) in &groups {
            if let Some(result) = unchanged.iter().find(|r| r.delivery_order_id == *order) {
                results.push(result.clone());
                continue;
            }
            let outcome = ctx
                .execute_activity(
                    BatchCommitStep,
                    step(order, Vec::new()),
                    retried_until_done(),
                )
                .await?;
            results.push(OrderResult {
                delivery_order_id: order.clone(),
                state: outcome.state,
                version: outcome.version,
            });
        }
        Ok(BatchResult::Committed { results })
    }
}

/// The events per order, orders in order of first appearance, each event with its position in
/// the batch.
fn group_by_order(items: &[BatchItem]) -> Vec<(String, Vec<(usize, EventEnvelope)>)> {
    let mut groups: Vec<(String, Vec<(usize, EventEnvelope)>)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(o, _)| *o == item.delivery_order_id)
        {
            Some((_, events)) => events.push((index, item.event.clone())),
            None => groups.push((
                item.delivery_order_id.clone(),
                vec![(index, item.event.clone())],
            )),
        }
    }
    groups
}

fn prepare_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: PREPARE_TIMEOUT,
        start_to_close: Duration::from_secs(10),
    })
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_millis(200))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(2))
            .build(),
    )
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, ActorKind, EventType};

    #[test]
    fn events_are_grouped_per_order_keeping_their_positions() {
        let item = |order: &str, id: &str| BatchItem {
            delivery_order_id: order.into(),
            event: EventEnvelope {
                event_id: id.into(),
                event_type: EventType::PickedUp,
                data: serde_json::Value::Null,
                actor: Actor::new(ActorKind::Partner, "p"),
                correlation_id: None,
                pickup_id: None,
            },
        };
        let groups = group_by_order(&[item("a", "1"), item("b", "2"), item("a", "3")]);
        let shape: Vec<(String, Vec<usize>)> = groups
            .into_iter()
            .map(|(o, e)| (o, e.into_iter().map(|(i, _)| i).collect()))
            .collect();
        assert_eq!(shape, [("a".into(), vec![0, 2]), ("b".into(), vec![1])]);
    }
}
