//! Prometheus text expositions: parsed into series, compared before and after a phase, and
//! summed over the processes that export them (two workers export the same series).

use std::collections::BTreeMap;

/// One sample line: metric name, labels (sorted by name) and value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

impl Series {
    pub(crate) fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// The sample lines of an exposition; comments and lines that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Series {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

/// What one or more processes exported at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    pub(crate) series: Vec<Series>,
}

impl Snapshot {
    pub(crate) fn add(&mut self, text: &str) {
        self.series.extend(parse(text));
    }

    /// The sum of the series named `name` that `keep` accepts, grouped by the value of `by`.
    fn sums(
        &self,
        name: &str,
        keep: &dyn Fn(&Series) -> bool,
        by: &[&str],
    ) -> BTreeMap<(String, String), f64> {
        let mut sums = BTreeMap::new();
        for s in self.series.iter().filter(|s| s.name == name && keep(s)) {
            let group = by
                .iter()
                .map(|k| s.label(k))
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            *sums.entry((group, s.label("le").to_owned())).or_insert(0.0) += s.value;
        }
        sums
    }
}

/// A histogram's change over a phase: observations, their sum, and cumulative bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HistogramDelta {
    pub(crate) count: f64,
    pub(crate) sum: f64,
    /// (upper bound, cumulative count), by upper bound.
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl HistogramDelta {
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Estimated as Prometheus' `histogram_quantile` does: linear within the bucket holding the
    /// rank. Coarse where the buckets are.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = (cumulative - lower.1).max(1e-9);
                return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / within);
            }
            lower = (bound, cumulative);
        }
        Some(lower.0)
    }
}

/// The change of histogram `family` between two snapshots, for the series `keep` accepts,
/// grouped by the labels `by` (joined by a space). Groups that saw no observation are left out.
pub(crate) fn histogram_delta(
    before: &Snapshot,
    after: &Snapshot,
    family: &str,
    keep: &dyn Fn(&Series) -> bool,
    by: &[&str],
) -> BTreeMap<String, HistogramDelta> {
    let change = |suffix: &str| {
        let name = format!("{family}{suffix}");
        let old = before.sums(&name, keep, by);
        let mut new = after.sums(&name, keep, by);
        for (key, value) in new.iter_mut() {
            *value -= old.get(key).copied().unwrap_or(0.0);
        }
        new
    };
    let mut out: BTreeMap<String, HistogramDelta> = BTreeMap::new();
    for ((group, _), count) in change("_count") {
        out.entry(group).or_default().count = count;
    }
    for ((group, _), sum) in change("_sum") {
        out.entry(group).or_default().sum = sum;
    }
    for ((group, le), cumulative) in change("_bucket") {
        let bound = match le.as_str() {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap_or(f64::INFINITY),
        };
        out.entry(group)
            .or_default()
            .buckets
            .push((bound, cumulative));
    }
    out.retain(|_, h| h.count > 0.0);
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The change of counter `name` (summed over the series `keep` accepts).
pub(crate) fn counter_delta(
    before: &Snapshot,
    after: &Snapshot,
    name: &str,
    keep: &dyn Fn(&Series) -> bool,
) -> f64 {
    let total = |s: &Snapshot| s.sums(name, keep, &[]).values().sum::<f64>();
    total(after) - total(before)
}

/// The value of gauge `name` in `snapshot`, summed over the series `keep` accepts; `None` when
/// there is no such series.
pub(crate) fn gauge(
    snapshot: &Snapshot,
    name: &str,
    keep: &dyn Fn(&Series) -> bool,
) -> Option<f64> {
    let sums = snapshot.sums(name, keep, &[]);
    (!sums.is_empty()).then(|| sums.values().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE rpc histogram
rpc_bucket{op="Start",le="0.01"} 1
rpc_bucket{op="Start",le="0.1"} 2
rpc_bucket{op="Start",le="+Inf"} 2
rpc_sum{op="Start"} 0.05
rpc_count{op="Start"} 2
polls_total{queue="a b",kind="x\"y"} 3
"#;
    const AFTER: &str = r#"rpc_bucket{op="Start",le="0.01"} 51
rpc_bucket{op="Start",le="0.1"} 101
rpc_bucket{op="Start",le="+Inf"} 102
rpc_sum{op="Start"} 2.05
rpc_count{op="Start"} 102
rpc_bucket{op="Update",le="0.01"} 0
rpc_bucket{op="Update",le="0.1"} 0
rpc_bucket{op="Update",le="+Inf"} 0
rpc_sum{op="Update"} 0
rpc_count{op="Update"} 0
polls_total{queue="a b",kind="x\"y"} 10
polls_total{queue="c",kind="z"} 1
"#;

    fn snapshot(text: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.add(text);
        s
    }

    #[test]
    fn labels_with_escapes_and_spaces_parse() {
        let series = parse(BEFORE);
        let polls = series.iter().find(|s| s.name == "polls_total").unwrap();
        assert_eq!(polls.label("queue"), "a b");
        assert_eq!(polls.label("kind"), "x\"y");
        assert_eq!(polls.value, 3.0);
    }

    #[test]
    fn a_histogram_changes_by_its_phase_only() {
        let (before, after) = (snapshot(BEFORE), snapshot(AFTER));
        let deltas = histogram_delta(&before, &after, "rpc", &|_| true, &["op"]);
        assert_eq!(
            deltas.keys().collect::<Vec<_>>(),
            ["Start"],
            "no Update seen"
        );
        let start = &deltas["Start"];
        assert_eq!(start.count, 100.0);
        assert!((start.mean().unwrap() - 0.02).abs() < 1e-9);
        // 50 of 100 below 10 ms, all but one below 100 ms.
        assert!((start.quantile(0.5).unwrap() - 0.01).abs() < 1e-9);
        let p99 = start.quantile(0.99).unwrap();
        assert!(p99 > 0.09 && p99 <= 0.1, "{p99}");
        assert_eq!(
            start.quantile(1.0),
            Some(0.1),
            "the rank of the last observation is in the 100 ms bucket"
        );
    }

    #[test]
    fn counters_sum_over_processes() {
        let before = snapshot(BEFORE);
        let mut after = snapshot(AFTER);
        after.add("polls_total{queue=\"d\"} 4\n");
        assert_eq!(
            counter_delta(&before, &after, "polls_total", &|_| true),
            12.0
        );
        assert_eq!(
            counter_delta(&before, &after, "polls_total", &|s| s.label("queue") == "c"),
            1.0
        );
        assert_eq!(gauge(&after, "missing", &|_| true), None);
    }
}
