//! Samples, percentiles and the result table.

use std::time::Duration;

pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of the operations that succeeded, how many failed, and the wall time.
pub(crate) struct Samples {
    ok: Vec<Duration>,
    failed: usize,
    wall: Duration,
}

impl Samples {
    pub(crate) fn new(results: Vec<Option<Duration>>, wall: Duration) -> Self {
        let failed = results.iter().filter(|r| r.is_none()).count();
        let mut ok: Vec<Duration> = results.into_iter().flatten().collect();
        ok.sort();
        Self { ok, failed, wall }
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
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
    pub(crate) failed: usize,
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
        Self {
            name: name.to_owned(),
            rate: None,
            p50: s.percentile(50.0),
            p99: s.percentile(99.0),
            count: s.ok.len(),
            failed: s.failed,
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
            failed: 0,
            note: value,
        }
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
        let counts = if r.count + r.failed > 0 {
            format!("{} / {}", r.count, r.failed)
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
