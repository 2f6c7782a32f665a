//! Every failed activity attempt, logged once with its cause chain and the delivery order it
//! works for, and counted by activity type and kind. The SDK counts failures too
//! (`temporal_activity_execution_failed_total`) but does not say why; this line does.

use prometheus::{IntCounterVec, Opts, Registry};
use temporalio_sdk::activities::{ActivityError, ActivityInfo};
use temporalio_sdk::interceptors::{
    ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, Next,
};

/// The activity interceptor that logs and counts failures.
pub struct ActivityFailureLog {
    failures: IntCounterVec,
}

impl ActivityFailureLog {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                "activity_failures_total",
                "Failed activity attempts by activity type and kind (retryable, non_retryable, cancelled)",
            ),
            &["activity_type", "kind"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        Ok(Self { failures })
    }

    fn record(&self, info: &ActivityInfo, error: &ActivityError) {
        let (kind, cause) = match error {
            ActivityError::Application(failure) => (
                if failure.is_non_retryable() {
                    "non_retryable"
                } else {
                    "retryable"
                },
                cause_chain(failure.source_error()),
            ),
            ActivityError::Cancelled { .. } => ("cancelled", "cancelled".to_owned()),
            // Not a failure: another party completes the activity.
            _ => return,
        };
        self.failures
            .with_label_values(&[info.activity_type.as_str(), kind])
            .inc();
        let workflow_id = info.workflow_id.as_deref().unwrap_or_default();
        tracing::warn!(
            activity_type = %info.activity_type,
            delivery_order_id = delivery_order_id(workflow_id).unwrap_or_default(),
            workflow_id,
            attempt = info.attempt,
            kind,
            cause = %cause,
            "activity failed"
        );
    }
}

impl ActivityInboundInterceptor for ActivityFailureLog {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        let info = input.activity_info().clone();
        let attempt = next.run(input);
        Box::pin(async move {
            let result = attempt.await;
            if let Err(error) = &result {
                self.record(&info, error);
            }
            result
        })
    }
}

/// `outer: inner: root`, the whole `source()` chain of an error.
fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        // anyhow and thiserror often repeat the cause in the outer message.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// The delivery order of a workflow id `delivery-order-{id}`.
pub(crate) fn delivery_order_id(workflow_id: &str) -> Option<&str> {
    workflow_id.strip_prefix("delivery-order-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("partner answered 503")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_cause_chain_names_every_cause_once() {
        let error = Outer(std::io::Error::other("connection reset"));
        assert_eq!(
            cause_chain(&error),
            "partner answered 503: connection reset"
        );
    }

    #[test]
    fn order_ids_come_from_delivery_order_workflow_ids() {
        assert_eq!(delivery_order_id("delivery-order-abc"), Some("abc"));
        assert_eq!(delivery_order_id("event-batch-1"), None);
    }
}
