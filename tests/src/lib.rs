//! Test harness: a real Temporal dev server (the one `make test` started, or a private one), and
//! the worker and partner simulator as real processes on free ports, each test on its own task
//! queue. Nothing here mocks Temporal or the partner.

pub mod database;
pub mod encryption;
pub mod fixtures;
pub mod gateway;
pub mod processes;
pub mod proxy;
pub mod stack;
pub mod temporal;
pub mod tls;
pub mod workflows;

pub use database::{
    database_url, drop_database, fresh_database, read_model, redis_prefix, redis_url,
};
pub use encryption::{
    TEST_KEY_A, TEST_KEY_B, decoded_update_error, payload_key_env, readable, test_keyring,
};
pub use fixtures::{confirm, delivered, pending_by_operator};
pub use gateway::{
    Answer, GatewayProcess, Socket, TEST_JWT_SECRET, TEST_PARTNER_SECRET, new_payment_id,
    next_socket_message, payment_event,
};
pub use processes::{SimProcess, WorkerProcess, json_log_lines};
pub use proxy::TcpProxy;
pub use stack::{Stack, StackOptions};
pub use temporal::{
    TemporalServer, dedicated_temporal_server, temporal_server, temporal_server_with_ui,
};
pub use tls::{TestCa, TlsProxy, TlsRedis};
pub use workflows::*;

use std::path::PathBuf;

/// The workspace root (for `.venv`, `resources/`, `tests/histories/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free TCP port on loopback for a process a test starts, handed out once per test process
/// and taken from below the kernel's ephemeral range (32768–60999 on Linux). A port the kernel
/// picks (`bind(0)`) is free again until the child binds it, seconds later for a gateway, which
/// connects to Temporal, PostgreSQL and Redis before it listens; in that window the kernel may
/// give it to another process's `bind(0)` or connection, and the test then talks to whatever
/// holds it (seen: another test's worker answered a gateway's `/healthz`, then `404 not found`).
/// The kernel never hands out ports below its range, and the counter never hands one out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 32_768 - FIRST;
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    // A random start, so test processes run one after another (or beside a bench) do not walk
    // the same ports while the previous one's children may still be closing theirs.
    let next = NEXT.get_or_init(|| AtomicU32::new(uuid::Uuid::new_v4().as_u128() as u32 % SPAN));
    for _ in 0..SPAN {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback between {FIRST} and 32767");
}
