//! Workflow time in the forms the workflows record. Deterministic: a workflow's time is the start
//! time of its current task, the same on every replay.

use std::time::SystemTime;

/// Workflow time as milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(time: Option<SystemTime>) -> u64 {
    time.unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Workflow time as RFC 3339 (milliseconds, UTC).
pub(crate) fn rfc3339(time: Option<SystemTime>) -> String {
    let time = time.unwrap_or(SystemTime::UNIX_EPOCH);
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
