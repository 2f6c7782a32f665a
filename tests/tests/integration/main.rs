//! The end-to-end suites as one test binary: each file here is a module named after its suite,
//! so the workspace links the whole stack (worker, gateway, activities, Temporal SDK) into one
//! executable instead of one per suite.
//!
//! A suite is still a filter: `cargo test -p delivery-tests --test integration lifecycle::` runs
//! one (`TEST_ARGS="-p delivery-tests --test integration lifecycle::" make test`), and several
//! filters may follow each other (`... -- lifecycle:: batches::`).
//!
//! Tests of every suite share this process, its Temporal dev server and its test database, and
//! run side by side (each on its own task queue, its own orders and its own child processes).
//! The suites that need the database's outbox relay to themselves, `relay_ordering` and
//! `redis_side`, are the `serial` binary instead: see its header.

mod api_fuzzing;
mod audit_trail;
mod authorization_matrix;
mod batches;
mod bench_smoke;
mod compat_api;
mod compose;
mod contract;
mod crash_recovery;
mod deployment;
mod disaster_recovery;
mod documents;
mod edge_security;
mod encryption_at_rest;
mod error_tracking;
mod gateway_edges;
mod gateway_flows;
mod integrity;
mod integrity_flood;
mod lifecycle;
mod live_tracking;
mod observability;
mod operator_views;
mod partner_client;
mod projection_integrity;
mod read_model;
mod replay;
mod reship_replacement;
mod slow_clients;
mod socket_limits;
mod traces;
mod transport_security;
mod web_ui;
mod worker_versioning;
