//! What the worker sees of each workflow task, from the SDK's worker interceptor (outside
//! workflow code, so nothing here touches determinism):
//! - every failure, logged once with its cause chain and the delivery order, and counted by
//!   workflow type and kind: a workflow task the workflow code failed (`task_failed`, a panic
//!   or an error; `nondeterminism` when the SDK says so), one Temporal's core found
//!   inconsistent with the history (`nondeterminism`) or could not process (`internal`), and a
//!   workflow that failed (`workflow_failed`);
//! - the history length at each workflow task that is not a replay, as a histogram: how close
//!   runs come to the length at which they continue as new.
//!
//! The SDK counts failing workflow tasks too (`temporal_workflow_task_execution_failed_total`)
//! but does not say why, nor for which order.

use std::collections::HashMap;
use std::sync::Mutex;

use delivery_workflows::client::readable_failure;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use temporalio_common::data_converters::DataConverter;
use temporalio_common::protos::coresdk::workflow_activation::WorkflowActivation;
use temporalio_common::protos::coresdk::workflow_activation::remove_from_cache::EvictionReason;
use temporalio_common::protos::coresdk::workflow_activation::workflow_activation_job::Variant;
use temporalio_common::protos::coresdk::workflow_commands::workflow_command;
use temporalio_common::protos::coresdk::workflow_completion::{
    WorkflowActivationCompletion, workflow_activation_completion,
};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowTaskFailedCause;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_sdk::interceptors::WorkerInterceptor;

use crate::failure_log::delivery_order_id;

/// Failure kinds, all counted from 0.
const KINDS: [&str; 4] = [
    "task_failed",
    "nondeterminism",
    "internal",
    "workflow_failed",
];
/// Workflow types the kinds start at 0 for.
const WORKFLOW_TYPES: [&str; 3] = [
    "DeliveryOrderWorkflow",
    "EventBatchWorkflow",
    "CompatDeliveryWorkflow",
];

/// The run a workflow task belongs to (its activations name the run only).
#[derive(Clone)]
struct Run {
    workflow_id: String,
    workflow_type: String,
}

pub struct WorkflowTaskWatch {
    /// The client's: failures reach the interceptor encoded (their messages encrypted).
    converter: DataConverter,
    failures: IntCounterVec,
    history_length: HistogramVec,
    /// Runs this worker has in its cache: learnt from their first activation (which always
    /// initializes the workflow), forgotten on eviction.
    runs: Mutex<HashMap<String, Run>>,
}

impl WorkflowTaskWatch {
    pub fn register(registry: &Registry, converter: DataConverter) -> prometheus::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                "workflow_failures_total",
                "Failed workflow tasks and failed workflows by workflow type and kind (task_failed, nondeterminism, internal, workflow_failed)",
            ),
            &["workflow_type", "kind"],
        )?;
        for workflow_type in WORKFLOW_TYPES {
            for kind in KINDS {
                failures.with_label_values(&[workflow_type, kind]);
            }
        }
        let history_length = HistogramVec::new(
            HistogramOpts::new(
                "workflow_history_length",
                "Events in a workflow's history at each workflow task this worker ran (replays left out)",
            )
            .buckets(vec![
                10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 5000.0, 10000.0,
                51200.0,
            ]),
            &["workflow_type"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(history_length.clone()))?;
        Ok(Self {
            converter,
            failures,
            history_length,
            runs: Mutex::new(HashMap::new()),
        })
    }

    fn run(&self, run_id: &str) -> Option<Run> {
        self.runs.lock().ok()?.get(run_id).cloned()
    }

    /// The failure's chain as its author wrote it (decrypted for the log line).
    async fn cause_chain(&self, failure: Option<&Failure>) -> String {
        let Some(failure) = failure else {
            return "no failure given".to_owned();
        };
        let mut failure = failure.clone();
        readable_failure(&self.converter, &mut failure).await;
        cause_chain(&failure)
    }

    fn record(&self, run_id: &str, kind: &'static str, cause: &str) {
        let run = self.run(run_id);
        let workflow_type = run.as_ref().map_or("unknown", |r| r.workflow_type.as_str());
        let workflow_id = run.as_ref().map_or("", |r| r.workflow_id.as_str());
        self.failures
            .with_label_values(&[workflow_type, kind])
            .inc();
        let message = if kind == "workflow_failed" {
            "workflow failed"
        } else {
            "workflow task failed"
        };
        tracing::error!(
            workflow_type,
            workflow_id,
            delivery_order_id = delivery_order_id(workflow_id).unwrap_or_default(),
            run_id,
            kind,
            cause,
            "{message}"
        );
    }
}

#[async_trait::async_trait(?Send)]
impl WorkerInterceptor for WorkflowTaskWatch {
    async fn on_workflow_activation(
        &self,
        activation: &WorkflowActivation,
    ) -> Result<(), anyhow::Error> {
        let mut evicted = None;
        for job in &activation.jobs {
            match &job.variant {
                Some(Variant::InitializeWorkflow(init)) => {
                    if let Ok(mut runs) = self.runs.lock() {
                        runs.insert(
                            activation.run_id.clone(),
                            Run {
                                workflow_id: init.workflow_id.clone(),
                                workflow_type: init.workflow_type.clone(),
                            },
                        );
                    }
                }
                Some(Variant::RemoveFromCache(remove)) => evicted = Some(remove),
                _ => {}
            }
        }
        if let Some(remove) = evicted {
            // A failure of the workflow code was logged with its completion (`LangFail`);
            // these the core found itself.
            let kind = match remove.reason() {
                EvictionReason::Nondeterminism => Some("nondeterminism"),
                EvictionReason::Fatal | EvictionReason::PaginationOrHistoryFetch => {
                    Some("internal")
                }
                _ => None,
            };
            if let Some(kind) = kind {
                self.record(&activation.run_id, kind, &remove.message);
            }
            if let Ok(mut runs) = self.runs.lock() {
                runs.remove(&activation.run_id);
            }
        } else if !activation.is_replaying
            && let Some(run) = self.run(&activation.run_id)
        {
            self.history_length
                .with_label_values(&[run.workflow_type.as_str()])
                .observe(f64::from(activation.history_length));
        }
        Ok(())
    }

    async fn on_workflow_activation_completion(&self, completion: &WorkflowActivationCompletion) {
        match &completion.status {
            Some(workflow_activation_completion::Status::Failed(failed)) => {
                let kind = if failed.force_cause
                    == WorkflowTaskFailedCause::NonDeterministicError as i32
                {
                    "nondeterminism"
                } else {
                    "task_failed"
                };
                let cause = self.cause_chain(failed.failure.as_ref()).await;
                self.record(&completion.run_id, kind, &cause);
            }
            Some(workflow_activation_completion::Status::Successful(success)) => {
                for command in &success.commands {
                    if let Some(workflow_command::Variant::FailWorkflowExecution(fail)) =
                        &command.variant
                    {
                        let cause = self.cause_chain(fail.failure.as_ref()).await;
                        self.record(&completion.run_id, "workflow_failed", &cause);
                    }
                }
            }
            None => {}
        }
    }
}

/// `message: cause: root cause`, the failure's whole chain.
fn cause_chain(failure: &Failure) -> String {
    let mut text = failure.message.clone();
    let mut cause = failure.cause.as_deref();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.message);
        cause = next.cause.as_deref();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_chain_reads_outer_to_root() {
        let failure = Failure {
            message: "INVALID_INPUT: no items".into(),
            cause: Some(Box::new(Failure {
                message: "items is empty".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            cause_chain(&failure),
            "INVALID_INPUT: no items: items is empty"
        );
    }

    #[tokio::test]
    async fn a_failed_task_is_counted_for_its_workflow_type() {
        let watch =
            WorkflowTaskWatch::register(&Registry::new(), DataConverter::default()).unwrap();
        let activation = WorkflowActivation {
            run_id: "run-1".into(),
            history_length: 3,
            jobs: vec![
                temporalio_common::protos::coresdk::workflow_activation::WorkflowActivationJob {
                    variant: Some(Variant::InitializeWorkflow(
                        temporalio_common::protos::coresdk::workflow_activation::InitializeWorkflow {
                            workflow_id: "delivery-order-abc".into(),
                            workflow_type: "DeliveryOrderWorkflow".into(),
                            ..Default::default()
                        },
                    )),
                },
            ],
            ..Default::default()
        };
        watch.on_workflow_activation(&activation).await.unwrap();
        assert_eq!(
            watch
                .history_length
                .with_label_values(&["DeliveryOrderWorkflow"])
                .get_sample_count(),
            1
        );
        let completion = WorkflowActivationCompletion {
            run_id: "run-1".into(),
            status: Some(workflow_activation_completion::Status::Failed(
                temporalio_common::protos::coresdk::workflow_completion::Failure {
                    failure: Some(Failure {
                        message: "panicked".into(),
                        ..Default::default()
                    }),
                    force_cause: 0,
                },
            )),
            ..Default::default()
        };
        watch.on_workflow_activation_completion(&completion).await;
        assert_eq!(
            watch
                .failures
                .with_label_values(&["DeliveryOrderWorkflow", "task_failed"])
                .get(),
            1
        );
    }
}
