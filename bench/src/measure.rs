//! Samples, percentiles, the result table and the reasons of failed requests.

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One operation: its latency, or why it failed (status and body snippet, or the error).
pub(crate) type Outcome = Result<Duration, String>;

/// Latencies of the operations that succeeded, the reasons of those that failed, and the wall
/// time.
pub(crate) struct Samples {
    ok: Vec<Duration>,
    failures: Vec<String>,
    wall: Duration,
}

impl Samples {
    pub(crate) fn new(results: Vec<Outcome>, wall: Duration) -> Self {
        let mut ok = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(latency) => ok.push(latency),
                Err(reason) => failures.push(reason),
            }
        }
        ok.sort();
        Self { ok, failures, wall }
    }

    /// Operations that failed before the timed part began (their setup).
    pub(crate) fn add_failures(&mut self, reasons: Vec<String>) {
        self.failures.extend(reasons);
    }

    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        if self.ok.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.ok.len() as f64).ceil() as usize;
        Some(self.ok[rank.clamp(1, self.ok.len()) - 1])
    }

    fn rate(&self) -> f64 {
        self.ok.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) rate: Option<f64>,
    pub(crate) p50: Option<Duration>,
    pub(crate) p99: Option<Duration>,
    pub(crate) count: usize,
    /// Why each failed operation failed, counted by reason.
    pub(crate) failures: BTreeMap<String, usize>,
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn throughput(name: &str, s: &Samples) -> Self {
        Self {
            rate: Some(s.rate()),
            ..Self::latency(name, s)
        }
    }

    pub(crate) fn latency(name: &str, s: &Samples) -> Self {
        let mut failures = BTreeMap::new();
        for reason in &s.failures {
            *failures.entry(without_ids(reason)).or_insert(0) += 1;
        }
        Self {
            name: name.to_owned(),
            rate: None,
            p50: s.percentile(50.0),
            p99: s.percentile(99.0),
            count: s.ok.len(),
            failures,
            note: String::new(),
        }
    }

    pub(crate) fn figure(name: &str, value: String) -> Self {
        Self {
            name: name.to_owned(),
            rate: None,
            p50: None,
            p99: None,
            count: 0,
            failures: BTreeMap::new(),
            note: value,
        }
    }

    pub(crate) fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    /// This row's p50 and p99 (and rate) as a percentage of `ceiling`'s, in its note.
    pub(crate) fn against(mut self, ceiling: &Row) -> Self {
        let mut parts = Vec::new();
        if let (Some(ours), Some(best)) = (self.rate, ceiling.rate) {
            parts.push(format!(
                "{:.0} % of its rate",
                100.0 * ours / best.max(1e-9)
            ));
        }
        // Latency: the ceiling's as a share of ours (100 % = as fast as a no-op).
        for (label, ours, best) in [
            ("p50", self.p50, ceiling.p50),
            ("p99", self.p99, ceiling.p99),
        ] {
            if let (Some(ours), Some(best)) = (ours, best) {
                parts.push(format!(
                    "{label} {:.1}×",
                    ours.as_secs_f64() / best.as_secs_f64().max(1e-9)
                ));
            }
        }
        if !parts.is_empty() {
            let text = format!("vs the no-op ceiling: {}", parts.join(", "));
            self.note = if self.note.is_empty() {
                text
            } else {
                format!("{}; {text}", self.note)
            };
        }
        self
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "–".into())
}

pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measure | per second | p50 | p99 | ok / failed | note |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let rate = r
            .rate
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "–".into());
        let counts = if r.count + r.failed() > 0 {
            format!("{} / {}", r.count, r.failed())
        } else {
            "–".into()
        };
        out.push_str(&format!(
            "| {} | {rate} | {} | {} | {counts} | {} |\n",
            r.name,
            ms(r.p50),
            ms(r.p99),
            r.note
        ));
    }
    out
}

/// Distinct reasons printed per row; the rest are counted.
const REASONS_SHOWN: usize = 10;

/// Every failed operation's reason, by row, most frequent first; empty when none failed.
pub(crate) fn failure_report(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| r.failed() > 0) {
        out.push_str(&format!("{} — {} failed:\n", row.name, row.failed()));
        let mut reasons: Vec<_> = row.failures.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, count) in reasons.iter().take(REASONS_SHOWN) {
            out.push_str(&format!("  {count} × {reason}\n"));
        }
        if reasons.len() > REASONS_SHOWN {
            let rest: usize = reasons[REASONS_SHOWN..].iter().map(|(_, n)| **n).sum();
            out.push_str(&format!(
                "  {rest} more, for {} other reasons\n",
                reasons.len() - REASONS_SHOWN
            ));
        }
    }
    out
}

/// A reason with its ids (UUIDs, request ids: runs of 16 or more hex digits and dashes) written
/// as `<id>`, so the same failure of many requests counts as one reason.
fn without_ids(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let hex = word.chars().filter(char::is_ascii_hexdigit).count();
        if word.len() >= 16 && hex >= 16 && word.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("<id>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in reason.chars() {
        if c.is_ascii_hexdigit() || c == '-' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Resident memory of a process, in MiB (Linux).
pub(crate) fn rss_mib(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{}", kb / 1024))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Outcome {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn failures_keep_their_reasons() {
        let samples = Samples::new(
            vec![
                ms(5),
                Err("503: busy".into()),
                ms(7),
                Err("503: busy".into()),
                Err("timeout".into()),
            ],
            Duration::from_secs(1),
        );
        let row = Row::latency("x", &samples);
        assert_eq!(row.count, 2);
        assert_eq!(row.failed(), 3);
        let report = failure_report(&[row]);
        assert_eq!(report, "x — 3 failed:\n  2 × 503: busy\n  1 × timeout\n");
    }

    #[test]
    fn reasons_are_counted_without_their_ids() {
        let samples = Samples::new(
            vec![
                Err("GET /t/c75b398b-382f-5f56-bb94-2abcfbb011b6 → 400: {\"request_id\":\"79ae7b988b204f3a9f88d5eec56cff9c\"}".into()),
                Err("GET /t/02e24921-0dc2-5102-bd09-809a42b929fc → 400: {\"request_id\":\"7d7351e036de4012b9cf96f945a7f5bb\"}".into()),
                Err("a deadline of 10 s passed".into()),
            ],
            Duration::from_secs(1),
        );
        let row = Row::latency("x", &samples);
        assert_eq!(
            row.failures.keys().collect::<Vec<_>>(),
            [
                "GET /t/<id> → 400: {\"request_id\":\"<id>\"}",
                "a deadline of 10 s passed"
            ]
        );
        assert_eq!(row.failures.values().sum::<usize>(), 3);
    }

    #[test]
    fn a_row_against_its_ceiling() {
        let ours = Samples::new(vec![ms(10), ms(40)], Duration::from_secs(1));
        let best = Samples::new(vec![ms(5), ms(5), ms(10), ms(10)], Duration::from_secs(1));
        let row = Row::throughput("ours", &ours).against(&Row::throughput("best", &best));
        assert_eq!(
            row.note,
            "vs the no-op ceiling: 50 % of its rate, p50 2.0×, p99 4.0×"
        );
    }
}
