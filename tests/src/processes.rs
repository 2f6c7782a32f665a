//! The worker and the partner simulator as real child processes, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::free_port;
use crate::temporal::TemporalServer;

/// Where cargo put the workspace binaries: `*_BIN` from `make test` (which built them just
/// before), else next to this test. `cargo test -p delivery-tests` alone does not rebuild other
/// packages' binaries, so a binary older than the sources it is built from is refused rather
/// than tested.
pub fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} not built: run `make test` or `cargo build --workspace`",
                path.display()
            )
        });
    let root = crate::workspace_root();
    let sources: &[&str] = match name {
        "partner-sim" => &["partner-sim"],
        "delivery-api" => &["workflows", "read-model", "platform", "api", "resources"],
        "delivery-bench" => &[
            "platform",
            "workflows",
            "read-model",
            "activities",
            "worker",
            "api",
            "bench",
            "tests/src",
        ],
        _ => &[
            "platform",
            "workflows",
            "read-model",
            "activities",
            "worker",
            "resources",
        ],
    };
    if let Some(newer) = sources.iter().find_map(|dir| {
        newest_change(&root.join(dir))
            .filter(|t| *t > built)
            .map(|_| dir)
    }) {
        panic!(
            "{} is older than {newer}/: run `make test` or `cargo build --workspace` first",
            path.display()
        );
    }
    path
}

/// The `delivery-worker` binary, for tests that run it with their own arguments.
pub fn worker_binary() -> PathBuf {
    binary("delivery-worker", "DELIVERY_WORKER_BIN")
}

fn newest_change(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Where a process started by the tests writes its stdout.
pub(crate) fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join("delivery-tests-logs")
        .join(format!("{name}.log"))
}

/// The JSON lines of a log (a process started with `LOG_FORMAT=json`); other lines are skipped.
pub fn json_log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

pub(crate) fn log_file(name: &str) -> Stdio {
    let path = log_path(name);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::File::create(&path) {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    }
}

pub(crate) async fn wait_http_ok(http: &reqwest::Client, url: &str, what: &str, child: &mut Child) {
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before answering {url}");
        }
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not answer {url} within 30 s");
}

/// `delivery-worker` on its own task queue.
pub struct WorkerProcess {
    child: Child,
    pub metrics_url: String,
    /// Prefix of every Redis key and channel this worker writes.
    pub redis_prefix: String,
    /// Its stdout.
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

impl WorkerProcess {
    pub async fn start(
        temporal: &TemporalServer,
        task_queue: &str,
        partner_url: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let metrics_port = free_port();
        let mut env: Vec<(String, String)> = crate::payload_key_env();
        env.extend([
            ("TEMPORAL_ADDRESS".into(), temporal.url()),
            ("TASK_QUEUE".into(), task_queue.into()),
            ("PARTNER_API_URL".into(), partner_url.into()),
            ("WORKER_METRICS_PORT".into(), metrics_port.to_string()),
            (
                "DATABASE_URL".into(),
                crate::database_url().await.to_owned(),
            ),
            ("REDIS_URL".into(), crate::redis_url()),
            ("REDIS_KEY_PREFIX".into(), crate::redis_prefix().await),
            ("RUST_LOG".into(), "info".into()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::spawn(env, task_queue).await
    }

    async fn spawn(env: Vec<(String, String)>, task_queue: &str) -> Self {
        let mut child = Command::new(binary("delivery-worker", "DELIVERY_WORKER_BIN"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&format!("worker-{task_queue}")))
            // A panic's message goes to stderr: kept beside the log, not thrown away.
            .stderr(log_file(&format!("worker-{task_queue}.stderr")))
            .spawn()
            .expect("starting delivery-worker");
        // The last entry of a key wins, as it does for the child's environment.
        let setting = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let port = setting("WORKER_METRICS_PORT");
        let redis_prefix = setting("REDIS_KEY_PREFIX");
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        wait_http_ok(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{port}/healthz"),
            "delivery-worker",
            &mut child,
        )
        .await;
        Self {
            child,
            metrics_url,
            redis_prefix,
            log: log_path(&format!("worker-{task_queue}")),
            env,
        }
    }

    /// The process id (for resource figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no shutdown, no goodbye to the server.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for the process to finish its in-flight work and exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "sending SIGTERM");
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the worker did not stop within 30 s of SIGTERM");
    }

    /// A fresh process with the same configuration.
    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    /// A fresh process with the same configuration but `changes` (later entries win).
    pub async fn restart_with(&mut self, changes: &[(&str, &str)]) {
        self.kill_hard();
        self.env
            .extend(changes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let queue = self
            .env
            .iter()
            .find(|(k, _)| k == "TASK_QUEUE")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let fresh = Self::spawn(self.env.clone(), &format!("{queue}-restarted")).await;
        *self = fresh;
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// `partner-sim` signalling workflows on the test's Temporal server.
pub struct SimProcess {
    child: Child,
    pub url: String,
    /// Its stdout.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl SimProcess {
    pub async fn start(temporal: &TemporalServer, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut env: Vec<(String, String)> = crate::payload_key_env();
        env.extend([
            ("PARTNER_SIM_PORT".into(), port.to_string()),
            ("PARTNER_CALLBACK_MODE".into(), "temporal".into()),
            ("TEMPORAL_ADDRESS".into(), temporal.url()),
            ("PARTNER_PICKUP_DELAY_MS".into(), "200".into()),
            ("PARTNER_DELIVERY_DELAY_MS".into(), "400".into()),
            ("PARTNER_PING_INTERVAL_MS".into(), "100".into()),
            ("PARTNER_FAILURE_RATE".into(), "0".into()),
            ("RUST_LOG".into(), "info".into()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut child = Command::new(binary("partner-sim", "PARTNER_SIM_BIN"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&format!("partner-sim-{port}")))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting partner-sim");
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &reqwest::Client::new(),
            &format!("{url}/_sim/config"),
            "partner-sim",
            &mut child,
        )
        .await;
        Self {
            child,
            url,
            log: log_path(&format!("partner-sim-{port}")),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("simulator reachable");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "simulator {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Scripts one delivery: `deliver`, `fail`, `reject`, `silent`, `pickup_only`.
    pub async fn scenario(&self, delivery_order_id: &str, scenario: Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/_sim/scenarios/{delivery_order_id}"),
            Some(scenario),
        )
        .await;
    }

    pub async fn fail_next(&self, n: u32) {
        self.call(
            reqwest::Method::POST,
            "/_sim/faults",
            Some(serde_json::json!({"fail_next": n})),
        )
        .await;
    }

    /// The next `n` partner API requests answer `status` (401 for refused credentials, ...).
    pub async fn answer_next_with(&self, n: u32, status: u16) {
        self.call(
            reqwest::Method::POST,
            "/_sim/faults",
            Some(serde_json::json!({"fail_next": n, "status": status})),
        )
        .await;
    }

    pub async fn configure(&self, patch: Value) {
        self.call(reqwest::Method::PUT, "/_sim/config", Some(patch))
            .await;
    }

    pub async fn stats(&self) -> Value {
        self.call(reqwest::Method::GET, "/_sim/stats", None).await
    }

    /// Every job this simulator accepted, with its status now.
    pub async fn pickups(&self) -> Vec<Value> {
        match self.call(reqwest::Method::GET, "/_sim/pickups", None).await {
            Value::Object(mut body) => match body.remove("pickups") {
                Some(Value::Array(pickups)) => pickups,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
