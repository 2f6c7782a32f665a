//! How the delivery-order workflow calls its activities: timeouts and retries.

use std::time::Duration;

use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_sdk::ActivityOptions;

/// How long a partner call may go without a heartbeat before the server gives its attempt up
/// and schedules the next: the activity beats every second while the partner answers, so only a
/// worker that died mid-call misses it (the attempt's 30 s limit would otherwise decide).
pub(crate) const PARTNER_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// The heartbeat timeout of a partner call, in runs that set one.
fn partner_heartbeat(heartbeats: bool) -> Option<Duration> {
    heartbeats.then_some(PARTNER_HEARTBEAT_TIMEOUT)
}

/// The pickup request: retried until the pickup deadline, which decides what happens next.
pub(super) fn pickup_options(deadline: Duration, heartbeats: bool) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: deadline,
        start_to_close: Duration::from_secs(30),
    })
    .maybe_heartbeat_timeout(partner_heartbeat(heartbeats))
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(60))
            .build(),
    )
    .build()
}

/// Activities that must land (read-model projections, batch decisions, the replacement):
/// retried without limit, backing off to every 10 s, until they do.
pub(crate) fn retried_until_done() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .build()
}

/// Withdrawing a pickup: worth a few tries, but an order never waits long for it.
pub(super) fn cancel_options(heartbeats: bool) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .maybe_heartbeat_timeout(partner_heartbeat(heartbeats))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(10)
                .build(),
        )
        .build()
}
