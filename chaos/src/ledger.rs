//! What the run's clients were told, kept for the checker: every order created, every command
//! acknowledged, every batch and its answer, every compatible-API delivery, every request's
//! outcome and timing, every fault injected, and what the WebSocket watchers saw go wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one HTTP request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// An HTTP status; for 503, whether `Retry-After` came with it.
    Status { code: u16, retry_after: bool },
    /// No answer: refused, reset or timed out.
    NoAnswer,
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Method and path, ids replaced by `{id}` (`POST /api/v1/delivery-orders/{id}/events`).
    pub(crate) endpoint: String,
    pub(crate) outcome: Outcome,
}

/// An event a client was told was applied (200 with this version).
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub(crate) order: String,
    pub(crate) event_id: String,
    pub(crate) version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchAnswer {
    Applied,
    RolledBack,
    /// No final answer (the client gave up): all or nothing still holds.
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// `(order, event_id)` of each event, in order.
    pub(crate) events: Vec<(String, String)>,
    pub(crate) answer: BatchAnswer,
}

/// A delivery of the compatible API and the events acknowledged on it (`Idempotency-Key`s).
#[derive(Debug, Clone, Default)]
pub(crate) struct CompatDelivery {
    pub(crate) acked: Vec<String>,
}

/// One injected fault: when it began and when the service it hit was back.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) kind: &'static str,
    pub(crate) injected: Duration,
    pub(crate) repaired: Duration,
    /// From the repair until commands and reads answered normally again.
    pub(crate) recovery: Option<Duration>,
}

/// Something a WebSocket watcher saw that the promise excludes.
#[derive(Debug, Clone)]
pub(crate) struct SocketFinding {
    pub(crate) order: String,
    pub(crate) what: SocketProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketProblem {
    /// A version skipped, and the order read right after still behind what the socket showed.
    StaleAfterGap { got: u64, read: u64 },
    /// The same version twice.
    Repeated { version: u64 },
    /// A lower version after a higher one.
    Backwards { after: u64, got: u64 },
}

/// The last version a watcher of one order saw, and whether it was still watching at the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchEnd {
    pub(crate) last_version: Option<u64>,
    pub(crate) saw_terminal: bool,
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

pub(crate) struct Ledger {
    started: Instant,
    books: Mutex<Books>,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            books: Mutex::default(),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn request(&self, endpoint: String, outcome: Outcome) {
        self.books().requests.push(Request { endpoint, outcome });
    }

    pub(crate) fn order(&self, id: &str) {
        self.books().orders.insert(id.to_owned());
    }

    pub(crate) fn silent(&self, id: &str) {
        self.books().silent.insert(id.to_owned());
    }

    pub(crate) fn burst(&self, id: &str) {
        self.books().burst.insert(id.to_owned());
    }

    pub(crate) fn ack(&self, order: &str, event_id: &str, version: u64) {
        self.books().acks.push(Ack {
            order: order.to_owned(),
            event_id: event_id.to_owned(),
            version,
        });
    }

    pub(crate) fn batch(&self, batch: Batch) {
        self.books().batches.push(batch);
    }

    pub(crate) fn compat_created(&self, id: &str) {
        self.books().compat.entry(id.to_owned()).or_default();
    }

    pub(crate) fn compat_ack(&self, id: &str, key: &str) {
        self.books()
            .compat
            .entry(id.to_owned())
            .or_default()
            .acked
            .push(key.to_owned());
    }

    pub(crate) fn fault(&self, fault: Fault) {
        self.books().faults.push(fault);
    }

    pub(crate) fn socket_finding(&self, order: &str, what: SocketProblem) {
        self.books().socket_findings.push(SocketFinding {
            order: order.to_owned(),
            what,
        });
    }

    pub(crate) fn watch_end(&self, order: &str, end: WatchEnd) {
        self.books().watch_ends.insert(order.to_owned(), end);
    }

    pub(crate) fn sim_record(&self, pickups: Vec<serde_json::Value>) {
        self.books().sim_records.push(pickups);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
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
}

/// A copy of the books for the checker and the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) orders: BTreeSet<String>,
    pub(crate) acks: Vec<Ack>,
    pub(crate) batches: Vec<Batch>,
    pub(crate) compat: BTreeMap<String, CompatDelivery>,
    pub(crate) requests: Vec<Request>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) socket_findings: Vec<SocketFinding>,
    pub(crate) watch_ends: BTreeMap<String, WatchEnd>,
    pub(crate) sim_records: Vec<Vec<serde_json::Value>>,
    pub(crate) silent: BTreeSet<String>,
    pub(crate) burst: BTreeSet<String>,
}
