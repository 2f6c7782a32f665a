//! The suites that need the test database's outbox relay to themselves, as one test binary whose
//! tests run one at a time.
//!
//! Every worker runs an outbox relay, and one relay per database holds the lease and publishes
//! every order's changes to Redis. `relay_ordering` watches that lease change hands, and
//! `redis_side` cuts one worker's Redis and checks that nothing of its order reached Redis; any
//! other worker running meanwhile would hold the lease or publish the order. So these suites are
//! not modules of `integration` (whose tests run beside each other), and each test here holds
//! [`ONE_AT_A_TIME`]. Cargo runs test binaries one after another, so no other suite's worker
//! runs while this binary does.
//!
//! Select a suite as in `integration`: `cargo test -p delivery-tests --test serial redis_side::`.

mod redis_side;
mod relay_ordering;

/// Held by every test of this binary for its whole run.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
