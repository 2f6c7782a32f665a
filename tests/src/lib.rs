//! Test harness: a real Temporal dev server (the one `make test` started, or a private one), and
//! the worker and partner simulator as real processes on free ports, each test on its own task
//! queue. Nothing here mocks Temporal or the partner.

pub mod database;
pub mod encryption;
pub mod fixtures;
pub mod gateway;
pub mod processes;
pub mod proxy;
pub mod temporal;
pub mod tls;
pub mod workflows;

pub use database::{
    database_url, drop_database, fresh_database, read_model, redis_prefix, redis_url,
};
pub use encryption::{TEST_KEY_A, TEST_KEY_B, decoded_update_error, payload_key_env, test_keyring};
pub use fixtures::{confirm, delivered, pending_by_operator};
pub use gateway::{
    Answer, GatewayProcess, TEST_JWT_SECRET, TEST_PARTNER_SECRET, new_payment_id, payment_event,
};
pub use processes::{SimProcess, Stack, StackOptions, WorkerProcess, json_log_lines};
pub use proxy::TcpProxy;
pub use temporal::{TemporalServer, temporal_server};
pub use tls::{TestCa, TlsProxy};
pub use workflows::*;

use std::path::PathBuf;

/// The workspace root (for `.venv`, `resources/`, `tests/histories/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free TCP port on loopback. The kernel picks it; the tiny window before the child binds it is
/// acceptable for tests (every test uses fresh ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
