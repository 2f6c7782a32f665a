//! The observability contract, against the real processes: docs/metrics.md lists exactly the
//! metrics the gateway and the worker export (ours, and every one the Temporal SDK declares), and
//! every metric a Grafana panel or a Prometheus rule queries exists, so a renamed metric cannot
//! silently blank a panel or mute an alert.

use std::collections::{BTreeMap, BTreeSet};

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_worker::sdk_metrics::{self, DeclaredMetric};
use delivery_worker::{WorkerConfig, build_worker};
use serde_json::{Value, json};
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;

/// Metric families of a Prometheus text exposition: name → type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

async fn scrape(url: &str) -> BTreeMap<String, String> {
    families(&exposition(url).await)
}

/// The text a `/metrics` endpoint answers.
async fn exposition(url: &str) -> String {
    reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scraping {url}: {e}"))
        .text()
        .await
        .expect("metrics body")
}

/// The rows of docs/metrics.md's metric table (the one headed `| metric | type |`): name → type.
fn documented() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(workspace_root().join("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .skip_while(|l| !l.starts_with("| metric | type |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// Every metric the SDK declares for a worker of ours: a worker built in this process with the
/// same meter the worker binary uses (declaring happens when a worker is created).
async fn sdk_declared(stack: &Stack) -> Vec<DeclaredMetric> {
    let (_registry, meter) = sdk_metrics::sdk_registry().expect("sdk registry");
    let options = RuntimeOptions::builder()
        .telemetry_options(sdk_metrics::telemetry_options(meter.clone()))
        .build()
        .expect("runtime options");
    let runtime = Runtime::from_current_tokio(options).expect("runtime");
    let queue = format!("{}-declared", stack.task_queue);
    let keys = payload_key_env();
    let config = WorkerConfig::from_lookup(|key| match key {
        "TASK_QUEUE" => Some(queue.clone()),
        "TEMPORAL_ADDRESS" => Some(stack.temporal.url()),
        _ => keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
    })
    .expect("worker config");
    let _worker = build_worker(
        &runtime,
        stack.client.clone(),
        &config,
        &prometheus::Registry::new(),
        read_model().await,
    )
    .expect("a worker");
    meter.declared()
}

/// One delivery through the gateway from payment to confirmation, its first pickup request
/// failing once, with a read-your-writes read and a readiness check, so every metric of ours has
/// been recorded.
async fn deliver_one(stack: &Stack) {
    let api = stack.api();
    stack.sim.fail_next(1).await;
    let id = api.paid_order("cust-observed").await;
    let ops = api.token("olga", &[Role::Operator]);
    let order = format!("/api/v1/delivery-orders/{id}");
    // The partner's webhooks deliver the order.
    api.wait_state(&ops, &id, "DELIVERED").await;
    let customer = api.token("cust-observed", &[Role::Customer]);
    let confirmed = api
        .post(
            &format!("{order}/events"),
            &customer,
            &json!({"type": "CONFIRMED"}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    let version = confirmed.json["version"].as_u64().expect("version");
    let read = api
        .get(&format!("{order}?min_version={version}"), &ops)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let ready = api
        .send(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

/// What the running processes export plus what the SDK declares: name → type.
async fn exported(stack: &Stack) -> BTreeMap<String, String> {
    let mut all = scrape(&format!("{}/metrics", stack.api().url)).await;
    all.extend(scrape(&stack.worker.metrics_url).await);
    for metric in sdk_declared(stack).await {
        all.insert(metric.name, metric.kind.to_owned());
    }
    all
}

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "le",
    "inf",
    "nan",
];

/// Metric names (and recording-rule names) an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop label matchers, string literals, range selectors and `by (...)` groupings, which
    // hold label names rather than metrics.
    let mut text = String::new();
    let mut depth_braces = 0;
    let mut in_string = false;
    let mut in_range = false;
    for c in expr.chars() {
        match c {
            '"' if depth_braces == 0 => in_string = !in_string,
            '{' if !in_string => depth_braces += 1,
            '}' if !in_string => depth_braces -= 1,
            '[' if !in_string && depth_braces == 0 => in_range = true,
            ']' if in_range => in_range = false,
            _ if depth_braces == 0 && !in_string && !in_range => text.push(c),
            _ => {}
        }
        if c == '{' || c == '[' || c == '"' {
            text.push(' ');
        }
    }
    let grouping = drop_groupings(&text);
    let mut names = BTreeSet::new();
    let chars: Vec<char> = grouping.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' || chars[i] == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let is_function = next == Some(&'(');
            if !is_function && !PROMQL_WORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else if chars[i].is_ascii_digit() || chars[i] == '.' {
            // A number (with exponent), not a name.
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '-')
            {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Removes `by (...)` / `without (...)` groupings, which list label names.
fn drop_groupings(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = ["by", "without"]
        .iter()
        .filter_map(|kw| find_keyword(rest, kw).map(|i| (i, kw.len())))
        .min()
    {
        let (i, len) = at;
        out.push_str(&rest[..i]);
        let after = rest[i + len..].trim_start();
        match after
            .strip_prefix('(')
            .and_then(|a| a.find(')').map(|j| &a[j + 1..]))
        {
            Some(tail) => rest = tail,
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    text.match_indices(keyword).map(|(i, _)| i).find(|&i| {
        let before = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let end = i + keyword.len();
        let after =
            end >= bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
        before && after
    })
}

/// Recording rules and the expressions of every rule, from resources/prometheus.
fn rules() -> (BTreeSet<String>, Vec<(String, String)>) {
    let text =
        std::fs::read_to_string(workspace_root().join("resources/prometheus/delivery.rules.yml"))
            .expect("delivery.rules.yml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules are YAML");
    let mut recorded = BTreeSet::new();
    let mut exprs = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["record"]
                .as_str()
                .or(rule["alert"].as_str())
                .expect("record or alert")
                .to_owned();
            if rule["record"].is_string() {
                recorded.insert(name.clone());
            }
            exprs.push((
                format!("rule {name}"),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    (recorded, exprs)
}

/// The query of every panel of `board` (named `file`), with where it is: the panels at the top
/// and those inside rows (a collapsed row holds its panels in its own `panels`), at any depth.
fn board_queries(file: &str, board: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = board["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("{file}: {}", panel["title"]),
                target["expr"]
                    .as_str()
                    .unwrap_or_else(|| {
                        panic!("{file}: {} has a target without expr", panel["title"])
                    })
                    .to_owned(),
            ));
        }
    }
    queries
}

#[test]
fn the_panels_inside_rows_are_queried_too() {
    let board = serde_json::json!({"panels": [
        {"title": "top", "type": "timeseries", "targets": [{"expr": "a_total"}]},
        {"title": "open row", "type": "row", "collapsed": false, "panels": []},
        {"title": "collapsed row", "type": "row", "collapsed": true, "panels": [
            {"title": "inside", "type": "timeseries", "targets": [{"expr": "b_total"}]},
            {"title": "nested row", "type": "row", "panels": [
                {"title": "deeper", "type": "stat", "targets": [{"expr": "c_total"}, {"expr": "d"}]}
            ]}
        ]}
    ]});
    let mut queries = board_queries("x.json", &board);
    queries.sort();
    assert_eq!(
        queries,
        [
            ("x.json: \"deeper\"".to_owned(), "c_total".to_owned()),
            ("x.json: \"deeper\"".to_owned(), "d".to_owned()),
            ("x.json: \"inside\"".to_owned(), "b_total".to_owned()),
            ("x.json: \"top\"".to_owned(), "a_total".to_owned()),
        ]
    );
}

/// The query of every panel of every dashboard in resources/grafana/dashboards.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = workspace_root().join("resources/grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards dir").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let board: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap())
            .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        queries.extend(board_queries(&file, &board));
    }
    assert!(
        queries.len() > 20,
        "the dashboards have panels: {queries:?}"
    );
    queries
}

/// Histogram series are queried as `<name>_bucket`, `_sum`, `_count`.
fn family_of<'a>(series: &'a str, exported: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && exported.get(base).is_some_and(|k| k == "histogram")
        {
            return base;
        }
    }
    series
}

#[test]
fn names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(delivery_api_x_bucket{status=~"5..",route!~"/a|/b"}[5m]))) / clamp_min(sum(rate(y_total[5m])), 1e-9) > 4 * 3600 or rec:rule:p95 > 5"#,
    );
    assert_eq!(
        names,
        ["delivery_api_x_bucket", "rec:rule:p95", "y_total"]
            .map(String::from)
            .into()
    );
}

/// docs/metrics.md has a row for every exported metric, and no other row.
fn check_metrics_table(exported: &BTreeMap<String, String>) {
    let documented = documented();
    assert!(
        exported
            .keys()
            .any(|n| n.starts_with("temporal_workflow_task")),
        "the worker exports the SDK's metrics: {exported:?}"
    );
    let undocumented: Vec<_> = exported
        .iter()
        .filter(|(name, _)| !documented.contains_key(*name))
        .collect();
    let not_exported: Vec<_> = documented
        .keys()
        .filter(|name| !exported.contains_key(*name))
        .collect();
    let wrong_type: Vec<_> = documented
        .iter()
        .filter(|(name, kind)| exported.get(*name).is_some_and(|k| k != *kind))
        .collect();
    assert!(
        undocumented.is_empty() && not_exported.is_empty() && wrong_type.is_empty(),
        "docs/metrics.md is out of step with the processes:\n  exported, not in the table: {undocumented:?}\n  in the table, not exported: {not_exported:?}\n  documented with another type: {wrong_type:?}"
    );
}

/// Series Prometheus writes itself for every target it scrapes.
const SCRAPE_SERIES: &[&str] = &["up"];

/// Every metric a rule or a panel queries is exported (or is a recording rule's, or one
/// Prometheus writes for each scrape).
fn check_queries(exported: &BTreeMap<String, String>) {
    let (recorded, rule_exprs) = rules();
    let mut missing = Vec::new();
    for (place, expr) in rule_exprs.into_iter().chain(dashboard_queries()) {
        for name in metric_names(&expr) {
            let known = if name.contains(':') {
                recorded.contains(&name)
            } else if SCRAPE_SERIES.contains(&name.as_str()) {
                true
            } else {
                exported.contains_key(family_of(&name, exported))
            };
            if !known {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but neither exported nor recorded:\n{}",
        missing.join("\n")
    );
}

/// Labels every target has once Prometheus scrapes it (or Kubernetes' service discovery adds).
const TARGET_LABELS: &[&str] = &[
    "job",
    "instance",
    "__name__",
    "namespace",
    "pod",
    "container",
];

/// The label names each family's samples carry in an exposition: family → names (the union
/// over its samples; a histogram's `le` included).
fn labels_of_families(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let kinds = families(exposition);
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, _value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, label_text) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = family_of(name, &kinds).to_owned();
        labels
            .entry(family)
            .or_default()
            .extend(label_names_in(label_text));
    }
    labels
}

/// The names of a label list's `name="value"` pairs (values may hold commas and escaped
/// quotes), or of a PromQL selector's matchers (`name=`, `!=`, `=~`, `!~`).
fn label_names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        if name.is_empty() {
            break;
        }
        names.push(name);
        // The operator, then the quoted value.
        while chars.next_if(|c| *c != '"').is_some() {}
        chars.next();
        let mut escaped = false;
        for c in chars.by_ref() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => break,
                _ => escaped = false,
            }
        }
    }
    names
}

/// Each `metric{matchers}` of a PromQL expression: (metric, label names its matchers use).
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(open) = expr[i..].find('{').map(|at| i + at) {
        let name_end = expr[..open].trim_end().len();
        let name_start = expr[..name_end]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |at| at + 1);
        // The matchers end at the first `}` outside a quoted value.
        let (mut close, mut quoted, mut escaped) = (open + 1, false, false);
        while close < bytes.len() {
            match bytes[close] {
                b'\\' if quoted && !escaped => escaped = true,
                b'"' if !escaped => quoted = !quoted,
                b'}' if !quoted => break,
                _ => escaped = false,
            }
            close += 1;
        }
        let name = &expr[name_start..name_end];
        if !name.is_empty() {
            found.push((name.to_owned(), label_names_in(&expr[open + 1..close])));
        }
        i = close.min(expr.len() - 1) + 1;
        if i >= expr.len() {
            break;
        }
    }
    found
}

/// The label names of an expression's `by (...)`, `without (...)`, `on (...)` and
/// `ignoring (...)` clauses.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for keyword in ["by", "without", "on", "ignoring"] {
        let mut rest = expr;
        while let Some(at) = find_keyword(rest, keyword) {
            let after = rest[at + keyword.len()..].trim_start();
            rest = &rest[at + keyword.len()..];
            if let Some(list) = after
                .strip_prefix('(')
                .and_then(|a| a.split_once(')').map(|(list, _)| list))
            {
                labels.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    labels
}

/// Labels a query asks of metrics that do not carry them: each matcher's label must be on its
/// metric, and each grouping label on one of the metrics the query reads, unless the query
/// reads a recording rule (whose labels are its own expression's) or makes labels itself
/// (`label_replace`). Metrics with no samples yet are not judged.
fn label_problems(
    place: &str,
    expr: &str,
    labels: &BTreeMap<String, BTreeSet<String>>,
    exported: &BTreeMap<String, String>,
) -> Vec<String> {
    let known = |metric: &str, label: &str| {
        TARGET_LABELS.contains(&label)
            || labels
                .get(family_of(metric, exported))
                .is_none_or(|names| names.contains(label))
    };
    let mut problems = Vec::new();
    for (metric, used) in selectors(expr) {
        if metric.contains(':') {
            continue;
        }
        for label in used.iter().filter(|l| !known(&metric, l.as_str())) {
            problems.push(format!("{place}: {metric} has no label {label:?}"));
        }
    }
    let metrics = metric_names(expr);
    if expr.contains("label_replace") || metrics.iter().any(|m| m.contains(':')) {
        return problems;
    }
    for label in grouping_labels(expr) {
        let on_some = metrics.iter().any(|m| {
            labels
                .get(family_of(m, exported))
                .is_some_and(|names| names.contains(&label))
        });
        let unjudged = metrics
            .iter()
            .all(|m| !labels.contains_key(family_of(m, exported)));
        if !(on_some || unjudged || TARGET_LABELS.contains(&label.as_str()) || label == "le") {
            problems.push(format!(
                "{place}: groups by {label:?}, which none of {metrics:?} has"
            ));
        }
    }
    problems
}

#[test]
fn labels_a_query_asks_for_are_checked_against_the_samples() {
    let exposition = "# TYPE a_total counter\n\
        a_total{route=\"/x,y\",status=\"200\"} 1\n\
        # TYPE lat histogram\n\
        lat_bucket{route=\"/x\",le=\"0.1\"} 1\n\
        lat_sum{route=\"/x\"} 1\n\
        lat_count{route=\"/x\"} 1\n";
    let exported = families(exposition);
    let labels = labels_of_families(exposition);
    assert_eq!(
        labels["a_total"],
        ["route", "status"].map(String::from).into()
    );
    assert_eq!(labels["lat"], ["le", "route"].map(String::from).into());
    let fine = r#"histogram_quantile(0.95, sum by (le, route) (rate(lat_bucket{route!~"/a|/b"}[5m]))) / sum(rate(a_total{status=~"5..",instance="gw1"}[5m]))"#;
    assert!(label_problems("ok", fine, &labels, &exported).is_empty());
    let wrong = r#"sum by (method) (rate(a_total{code="500"}[5m]))"#;
    assert_eq!(
        label_problems("bad", wrong, &labels, &exported),
        [
            r#"bad: a_total has no label "code""#,
            r#"bad: groups by "method", which none of {"a_total"} has"#
        ]
    );
    // A value holding a brace or an escaped quote ends where the quote does.
    assert_eq!(
        selectors(r#"a_total{route="/{id}\"x",status="2"} + lat_count"#),
        [(
            "a_total".to_owned(),
            vec!["route".to_owned(), "status".to_owned()]
        )]
    );
}

/// Every label a rule or a panel selects on or groups by is one its metrics carry.
fn check_query_labels(
    labels: &BTreeMap<String, BTreeSet<String>>,
    exported: &BTreeMap<String, String>,
) {
    let (_, rule_exprs) = rules();
    let problems: Vec<String> = rule_exprs
        .into_iter()
        .chain(dashboard_queries())
        .flat_map(|(place, expr)| label_problems(&place, &expr, labels, exported))
        .collect();
    assert!(
        problems.is_empty(),
        "queried labels the metrics do not carry:\n{}",
        problems.join("\n")
    );
}

/// The label names of every family the gateway and the worker export samples of.
async fn exported_labels(stack: &Stack) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels = BTreeMap::new();
    for url in [
        format!("{}/metrics", stack.api().url),
        stack.worker.metrics_url.clone(),
    ] {
        for (family, names) in labels_of_families(&exposition(&url).await) {
            labels
                .entry(family)
                .or_insert_with(BTreeSet::new)
                .extend(names);
        }
    }
    labels
}

#[tokio::test]
async fn exported_metrics_match_the_table_the_dashboards_and_the_rules() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    deliver_one(&stack).await;
    let exported = exported(&stack).await;
    check_metrics_table(&exported);
    check_queries(&exported);
    check_query_labels(&exported_labels(&stack).await, &exported);
    check_sdk_series_recorded(&stack).await;
}

/// The sum of the samples of `series` (a full sample name, `_count` included) whose label text
/// contains `labels` (`""` for all): `None` when there is no such sample.
fn sample_total(exposition: &str, series: &str, labels: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name_and_labels, value) = line.rsplit_once(' ')?;
            let (name, label_text) = match name_and_labels.split_once('{') {
                Some((name, rest)) => (name, rest),
                None => (name_and_labels, ""),
            };
            (name == series && label_text.contains(labels)).then(|| value.parse().ok())?
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// After a delivery the worker's `/metrics` holds the SDK's figures of where a workflow task's
/// time goes, recorded and not only declared: schedule-to-start, execution, polls, the sticky
/// cache and the slots (the bench's breakdown reads these).
async fn check_sdk_series_recorded(stack: &Stack) {
    let body = reqwest::get(&stack.worker.metrics_url)
        .await
        .and_then(|r| r.error_for_status())
        .expect("the worker's /metrics")
        .text()
        .await
        .expect("metrics body");
    let delivery = "workflow_type=\"DeliveryOrderWorkflow\"";
    for (series, labels) in [
        (
            "temporal_workflow_task_schedule_to_start_latency_seconds_count",
            "",
        ),
        (
            "temporal_workflow_task_execution_latency_seconds_count",
            delivery,
        ),
        ("temporal_workflow_task_queue_poll_succeed_total", ""),
        ("temporal_sticky_cache_hit_total", ""),
        (
            "temporal_activity_schedule_to_start_latency_seconds_count",
            "",
        ),
        ("temporal_activity_execution_latency_seconds_count", ""),
    ] {
        let total = sample_total(&body, series, labels);
        assert!(
            total.is_some_and(|t| t > 0.0),
            "{series}{{{labels}}} not recorded after a delivery ({total:?}):\n{body}"
        );
    }
    for (gauge, labels) in [
        ("temporal_sticky_cache_size", ""),
        (
            "temporal_worker_task_slots_available",
            "worker_type=\"WorkflowWorker\"",
        ),
        ("temporal_num_pollers", ""),
    ] {
        assert!(
            sample_total(&body, gauge, labels).is_some(),
            "{gauge}{{{labels}}} not exported:\n{body}"
        );
    }
}

#[test]
fn sample_totals_sum_the_matching_series() {
    let text = "# TYPE a counter\na_total{q=\"x\",k=\"1\"} 2\na_total{q=\"y\"} 3\nb 1\n";
    assert_eq!(sample_total(text, "a_total", ""), Some(5.0));
    assert_eq!(sample_total(text, "a_total", "q=\"x\""), Some(2.0));
    assert_eq!(sample_total(text, "b", ""), Some(1.0));
    assert_eq!(sample_total(text, "c", ""), None);
}

/// The base of runbook links the test Prometheus is given (`global.external_labels`).
const RUNBOOK_BASE_URL: &str = "https://runbooks.test/delivery";

/// A Prometheus server (Debian's, as `make test` installs it) scraping the stack every second
/// with the project's rules, stopped when dropped. Beside them, a rule that always fires with a
/// runbook link written as the project's alerts write theirs, so the link's rendering under an
/// external label is seen on a real server (promtool's unit tests cannot set one).
struct PrometheusProcess {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl PrometheusProcess {
    fn start(targets: &[(&str, String)]) -> Self {
        let binary =
            std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
        let dir =
            std::env::temp_dir().join(format!("delivery-prometheus-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let rules = workspace_root().join("resources/prometheus/delivery.rules.yml");
        let scrape: String = targets
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs: [{{targets: [\"{target}\"]}}]\n")
            })
            .collect();
        let text = std::fs::read_to_string(&rules).expect("the rules");
        let link = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: '"))
            .expect("an alert with a runbook link");
        let template = &link[..link.rfind('/').expect("a link to a file")];
        let probe = dir.join("probe.rules.yml");
        std::fs::write(
            &probe,
            format!(
                "groups:\n  - name: probe\n    rules:\n      - alert: RunbookLinkProbe\n        expr: vector(1)\n        annotations:\n          runbook_url: '{template}/probe.md'\n"
            ),
        )
        .expect("probe rule");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s, external_labels: {{runbook_base_url: \"{RUNBOOK_BASE_URL}\"}}}}\nrule_files: [\"{}\", \"{}\"]\nscrape_configs:\n{scrape}",
            rules.display(),
            probe.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let port = free_port();
        let child = std::process::Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {binary} (`make test` installs Debian's prometheus): {e}")
            });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let answer = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        answer.json::<Value>().await.ok()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_stack_and_evaluates_every_rule() {
    let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
    deliver_one(&stack).await;
    let worker = stack
        .worker
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prometheus = PrometheusProcess::start(&[
        ("delivery-api", format!("127.0.0.1:{}", stack.api().port)),
        ("delivery-worker", worker),
    ]);
    // Both targets scraped successfully.
    eventually("Prometheus scraping the gateway and the worker", || async {
        let targets = prometheus.api("/api/v1/targets").await?;
        let active = targets["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 2 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;
    // Every rule evaluated at least once, none with an error.
    let rules = eventually("every rule evaluated", || async {
        let rules = prometheus.api("/api/v1/rules").await?;
        let all: Vec<Value> = rules["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = all.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        (!all.is_empty() && evaluated).then_some(all)
    })
    .await;
    let unhealthy: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
    assert!(unhealthy.is_empty(), "rules with errors: {unhealthy:?}");
    // A runbook link goes under the external label's base (without one, promtool's unit tests
    // show the repository path).
    let link = eventually("the probe alert firing", || async {
        let alerts = prometheus.api("/api/v1/alerts").await?;
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "RunbookLinkProbe")
            .and_then(|a| a["annotations"]["runbook_url"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(link, format!("{RUNBOOK_BASE_URL}/probe.md"));
    // The SDK's metrics reach Prometheus through the worker's one endpoint.
    eventually("temporal_* series in Prometheus", || async {
        let answer = prometheus
            .api("/api/v1/query?query=count(temporal_worker_task_slots_available)")
            .await?;
        let count = answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<u32>()
            .ok()?;
        (count > 0).then_some(())
    })
    .await;
}
