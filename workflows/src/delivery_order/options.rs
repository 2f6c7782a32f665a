//! How the delivery-order workflow calls its activities: timeouts and retries.

use std::time::Duration;

use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_sdk::ActivityOptions;

/// The pickup request: retried until the pickup deadline, which decides what happens next.
pub(super) fn pickup_options(deadline: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: deadline,
        start_to_close: Duration::from_secs(30),
    })
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
pub(super) fn cancel_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
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
