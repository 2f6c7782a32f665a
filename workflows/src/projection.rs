//! How a workflow hands a new version to the read model (ADR 0007): by a local activity inside
//! the workflow task that made the version, so the task that answers a command also leaves the
//! read model current; and, when that does not land within its short limit, by an ordinary
//! activity retried until done, so a read model that is down delays only the read side.
//!
//! An ordinary activity costs the server an activity task and a second workflow task for its
//! result (six more history events per version); a local activity costs one marker. Its price
//! is that the task, and the answer to the command it carries, waits for it: hence the limit.

use std::time::Duration;

use temporalio_common::{ActivityDefinition, RetryPolicy};
use temporalio_sdk::{
    ActivityExecutionError, LocalActivityOptions, WorkflowContext, WorkflowResult,
    WorkflowTermination,
};

use crate::activities::ProjectionOutcome;
use crate::delivery_order::retried_until_done;

/// Patch id of projecting through a local activity first, asked at a run's start (runs before it
/// scheduled every projection as an activity task of its own).
pub const LOCAL_PROJECTION_PATCH: &str = "projection-local-activity-v1";

/// The local attempt: two seconds in all, three quick tries within them.
fn projected_locally() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .schedule_to_close_timeout(Duration::from_secs(2))
        .start_to_close_timeout(Duration::from_secs(2))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(50))
                .backoff_coefficient(2.0)
                .maximum_attempts(3)
                .build(),
        )
        .build()
}

/// Projects `input` with `activity`: locally first when `locally` (the run's patch says so),
/// else, or when the local attempt does not land, as an activity retried until done. Only the
/// run's cancellation ends it without a projection.
pub(crate) async fn project<W, AD>(
    ctx: &WorkflowContext<W>,
    activity: AD,
    input: AD::Input,
    locally: bool,
) -> WorkflowResult<ProjectionOutcome>
where
    AD: ActivityDefinition<Output = ProjectionOutcome> + Copy,
    AD::Input: Clone,
{
    if locally {
        match ctx
            .execute_local_activity(activity, input.clone(), projected_locally())
            .await
        {
            Ok(outcome) => return Ok(outcome),
            Err(ActivityExecutionError::Cancelled(_)) => {
                return Err(WorkflowTermination::cancelled());
            }
            Err(error) => {
                if !ctx.is_replaying() {
                    tracing::warn!(%error, activity = activity.name(), "local projection did not land; it goes on as an activity");
                }
            }
        }
    }
    match ctx
        .execute_activity(activity, input, retried_until_done())
        .await
    {
        Ok(outcome) => Ok(outcome),
        // Retries are unlimited, so only cancellation of the run ends them.
        Err(error) => {
            if !ctx.is_replaying() {
                tracing::warn!(%error, activity = activity.name(), "read model projection stopped");
            }
            Err(WorkflowTermination::cancelled())
        }
    }
}
