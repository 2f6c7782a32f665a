//! What the run's clients were told, kept for the checker: every order created, every command
//! acknowledged, every batch and its answer, every compatible-API delivery, every request's
//! outcome and timing, every fault injected, and what the WebSocket watchers saw go wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one HTTP request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// An HTTP status; for 503, whether `Retry-After` came with it.
    Status { code: u16, retry_after: bool },
    /// No answer: refused, reset or timed out.
    NoAnswer,
}

impl Outcome {
    /// An answer a client of a healthy service gets (2xx, or a 4xx the request itself caused).
    pub fn is_normal(self) -> bool {
        matches!(self, Outcome::Status { code, .. } if code < 500 && code != 429)
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    /// Since the run started.
    pub at: Duration,
    pub took: Duration,
    pub outcome: Outcome,
}

/// An event a client was told was applied (200 with this version).
#[derive(Debug, Clone)]
pub struct Ack {
    pub order: String,
    pub event_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAnswer {
    Applied,
    RolledBack,
    /// No final answer (the client gave up): all or nothing still holds.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Batch {
    /// `(order, event_id)` of each event, in order.
    pub events: Vec<(String, String)>,
    pub answer: BatchAnswer,
}

/// A delivery of the compatible API and the events acknowledged on it (`Idempotency-Key`s).
#[derive(Debug, Clone, Default)]
pub struct CompatDelivery {
    pub acked: Vec<String>,
}

/// One injected fault: when it began and when the service it hit was back.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: &'static str,
    pub injected: Duration,
    pub repaired: Duration,
    /// From the repair until commands and reads answered normally again.
    pub recovery: Option<Duration>,
}

/// Something a WebSocket watcher saw that the promise excludes.
#[derive(Debug, Clone)]
pub struct SocketFinding {
    pub order: String,
    pub what: SocketProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketProblem {
    /// A version skipped without a resync.
    Gap { after: u64, got: u64 },
    /// The same version twice.
    Repeated { version: u64 },
    /// A lower version after a higher one.
    Backwards { after: u64, got: u64 },
}

/// The last version a watcher of one order saw, and whether it was still watching at the end.
#[derive(Debug, Clone, Copy)]
pub struct WatchEnd {
    pub last_version: Option<u64>,
    pub saw_terminal: bool,
}

#[derive(Default)]
struct Books {
    orders: BTreeSet<String>,
    acks: Vec<Ack>,
    batches: Vec<Batch>,
    compat: BTreeMap<String, CompatDelivery>,
    requests: Vec<Request>,
    faults: Vec<Fault>,
    socket_findings: Vec<SocketFinding>,
    watch_ends: BTreeMap<String, WatchEnd>,
    /// The pickups of simulator processes that were killed, as each listed them just before.
    sim_records: Vec<Vec<serde_json::Value>>,
    /// Orders whose partner was scripted never to call back.
    silent: BTreeSet<String>,
    /// Orders created in the burst before the whole-stack restart.
    burst: BTreeSet<String>,
}

pub struct Ledger {
    started: Instant,
    books: Mutex<Books>,
}

impl Ledger {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            books: Mutex::default(),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn request(&self, started: Instant, outcome: Outcome) {
        let at = started.saturating_duration_since(self.started);
        self.books().requests.push(Request {
            at,
            took: started.elapsed(),
            outcome,
        });
    }

    pub fn order(&self, id: &str) {
        self.books().orders.insert(id.to_owned());
    }

    pub fn silent(&self, id: &str) {
        self.books().silent.insert(id.to_owned());
    }

    pub fn burst(&self, id: &str) {
        self.books().burst.insert(id.to_owned());
    }

    pub fn ack(&self, order: &str, event_id: &str, version: u64) {
        self.books().acks.push(Ack {
            order: order.to_owned(),
            event_id: event_id.to_owned(),
            version,
        });
    }

    pub fn batch(&self, batch: Batch) {
        self.books().batches.push(batch);
    }

    pub fn compat_created(&self, id: &str) {
        self.books().compat.entry(id.to_owned()).or_default();
    }

    pub fn compat_ack(&self, id: &str, key: &str) {
        self.books()
            .compat
            .entry(id.to_owned())
            .or_default()
            .acked
            .push(key.to_owned());
    }

    pub fn fault(&self, fault: Fault) {
        self.books().faults.push(fault);
    }

    pub fn socket_finding(&self, order: &str, what: SocketProblem) {
        self.books().socket_findings.push(SocketFinding {
            order: order.to_owned(),
            what,
        });
    }

    pub fn watch_end(&self, order: &str, end: WatchEnd) {
        self.books().watch_ends.insert(order.to_owned(), end);
    }

    pub fn sim_record(&self, pickups: Vec<serde_json::Value>) {
        self.books().sim_records.push(pickups);
    }

    pub fn snapshot(&self) -> Snapshot {
        let b = self.books();
        Snapshot {
            orders: b.orders.clone(),
            acks: b.acks.clone(),
            batches: b.batches.clone(),
            compat: b.compat.clone(),
            requests: b.requests.clone(),
            faults: b.faults.clone(),
            socket_findings: b.socket_findings.clone(),
            watch_ends: b.watch_ends.clone(),
            sim_records: b.sim_records.clone(),
            silent: b.silent.clone(),
            burst: b.burst.clone(),
        }
    }

    /// Requests that started in `[from, to)`.
    pub fn requests_between(&self, from: Duration, to: Duration) -> Vec<Request> {
        self.books()
            .requests
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .cloned()
            .collect()
    }
}

/// A copy of the books for the checker and the report.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub orders: BTreeSet<String>,
    pub acks: Vec<Ack>,
    pub batches: Vec<Batch>,
    pub compat: BTreeMap<String, CompatDelivery>,
    pub requests: Vec<Request>,
    pub faults: Vec<Fault>,
    pub socket_findings: Vec<SocketFinding>,
    pub watch_ends: BTreeMap<String, WatchEnd>,
    pub sim_records: Vec<Vec<serde_json::Value>>,
    pub silent: BTreeSet<String>,
    pub burst: BTreeSet<String>,
}
