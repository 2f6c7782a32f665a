//! The stack under test as real processes this run owns: a Temporal dev server on a database file
//! of its own, a private Redis with an append-only file (so a restart keeps what it held), the
//! machine's PostgreSQL behind a TCP proxy that can be cut, the partner simulator, two workers and
//! two gateways. Each process can be killed (`SIGKILL`), stopped (`SIGTERM`) and started again
//! with the same settings, ports and files; every one is stopped by its PID when the run ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delivery_tests::{TEST_JWT_SECRET, TEST_PARTNER_SECRET, TcpProxy, free_port};

use crate::balancer::Balancer;

/// How a process shows it is ready to serve.
#[derive(Debug, Clone)]
enum Ready {
    /// An HTTP URL answering 2xx.
    Http(String),
    /// A Temporal frontend (`host:port`) whose cluster health check passes.
    Temporal(String),
    /// A Redis server answering PING on this port.
    Redis(u16),
}

/// One child process with everything needed to start it again the same way.
pub(crate) struct Proc {
    pub(crate) name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    ready: Ready,
    child: Option<Child>,
    http: reqwest::Client,
}

/// What one process holds, from `/proc`: resident memory and open file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) pid: u32,
    pub(crate) rss_kib: u64,
    pub(crate) fds: usize,
}

impl Proc {
    /// The running process's memory and open files; `None` when it is not running.
    pub(crate) fn usage(&self) -> Option<Usage> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        Some(Usage { pid, rss_kib, fds })
    }

    fn new(name: &str, program: PathBuf, log_dir: &Path, ready: Ready) -> Self {
        Self {
            name: name.to_owned(),
            program,
            args: Vec::new(),
            env: Vec::new(),
            log: log_dir.join(format!("{name}.log")),
            ready,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        }
    }

    fn env(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(pairs);
        self
    }

    fn args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.args.extend(args);
        self
    }

    /// Starts the process (its log is appended to, so a restart keeps what came before) and
    /// waits until it is ready, for at most `patience`.
    pub(crate) async fn start(&mut self, patience: Duration) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("starting {} ({}): {e}", self.name, self.program.display())
            })?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < patience {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                anyhow::bail!(
                    "{} exited with {status} during start-up (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            if self.is_ready().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "{} was not ready within {patience:?} (log: {})",
            self.name,
            self.log.display()
        )
    }

    async fn is_ready(&self) -> bool {
        match &self.ready {
            Ready::Http(url) => self
                .http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Ready::Temporal(address) => {
                let (cli, address) = (self.program.clone(), address.clone());
                tokio::task::spawn_blocking(move || {
                    Command::new(cli)
                        .args(["operator", "cluster", "health", "--address", &address])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .await
                .unwrap_or(false)
            }
            Ready::Redis(port) => redis_pings(*port).await,
        }
    }

    /// `kill -9`: no shutdown at all.
    pub(crate) fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGTERM`, up to 10 s to finish, then `SIGKILL`.
    pub(crate) async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

async fn redis_pings(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(Ok(mut connection)) = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}

/// Every process of the run, and where each listens.
pub(crate) struct Stack {
    pub(crate) temporal: Proc,
    /// `host:port` of the Temporal frontend.
    pub(crate) temporal_address: String,
    pub(crate) redis: Proc,
    pub(crate) redis_url: String,
    pub(crate) redis_prefix: String,
    /// The read model's database, directly (the checker reads it this way).
    pub(crate) database_url: String,
    /// Between the services and PostgreSQL.
    pub(crate) postgres_proxy: TcpProxy,
    /// Between the simulator's webhooks and the two gateways, as a load balancer would be
    /// (held for its lifetime).
    _balancer: Balancer,
    pub(crate) sim: Proc,
    pub(crate) sim_url: String,
    pub(crate) workers: Vec<Proc>,
    pub(crate) gateways: Vec<Proc>,
    pub(crate) gateway_urls: Vec<String>,
}

/// The patience for a start: a Temporal server restarted on a database with thousands of open
/// workflows, or a debug build on a busy machine, takes a while.
const START_PATIENCE: Duration = Duration::from_secs(120);

impl Stack {
    pub(crate) async fn start(log_dir: &Path, database_url: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let task_queue = format!("chaos-{}", uuid::Uuid::new_v4().simple());
        let redis_prefix = "chaos:".to_owned();

        // Temporal: fixed ports and one database file, so a restart is the same server.
        let temporal_port = free_port();
        let temporal_address = format!("127.0.0.1:{temporal_port}");
        let mut args: Vec<String> = [
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
            "--namespace",
            "default",
        ]
        .map(str::to_owned)
        .into();
        args.extend(delivery_tests::temporal::dev_server_flags());
        args.extend([
            "--port".into(),
            temporal_port.to_string(),
            "--http-port".into(),
            free_port().to_string(),
            "--metrics-port".into(),
            free_port().to_string(),
            "--db-filename".into(),
            log_dir.join("temporal.db").display().to_string(),
        ]);
        for attribute in delivery_tests::temporal::SEARCH_ATTRIBUTES {
            args.extend(["--search-attribute".into(), format!("{attribute}=Keyword")]);
        }
        let mut temporal = Proc::new(
            "temporal",
            delivery_tests::temporal::temporal_cli(),
            log_dir,
            Ready::Temporal(temporal_address.clone()),
        )
        .args(args);
        temporal.start(START_PATIENCE).await?;

        // Redis: private, with an append-only file fsynced on every write, so stopping and
        // starting it loses nothing it acknowledged (the machine's shared Redis is never touched).
        let redis_port = free_port();
        let redis_dir = log_dir.join("redis");
        std::fs::create_dir_all(&redis_dir)?;
        let mut redis = Proc::new(
            "redis",
            PathBuf::from(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())),
            log_dir,
            Ready::Redis(redis_port),
        )
        .args(
            [
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--dir",
                &redis_dir.display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ]
            .map(str::to_owned),
        );
        redis.start(START_PATIENCE).await?;
        let redis_url = format!("redis://127.0.0.1:{redis_port}");

        let database_url = database_url.to_owned();
        let (postgres_proxy, proxied_database_url) =
            TcpProxy::in_front_of(&database_url, 5432).await;

        let gateway_ports = [free_port(), free_port()];
        let balancer = Balancer::start(
            gateway_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}").parse().expect("an address"))
                .collect(),
        )
        .await?;

        let sim_port = free_port();
        let sim_url = format!("http://127.0.0.1:{sim_port}");
        let mut sim = Proc::new(
            "partner-sim",
            delivery_tests::processes::binary("partner-sim", "PARTNER_SIM_BIN"),
            log_dir,
            Ready::Http(format!("{sim_url}/_sim/config")),
        )
        .env(pairs(&[
            ("PARTNER_SIM_PORT", &sim_port.to_string()),
            ("PARTNER_CALLBACK_MODE", "webhook"),
            (
                "PARTNER_WEBHOOK_URL",
                &format!(
                    "http://127.0.0.1:{}/api/v1/partner-webhooks/sim",
                    balancer.port
                ),
            ),
            ("PARTNER_WEBHOOK_SECRET", TEST_PARTNER_SECRET),
            ("PARTNER_PICKUP_DELAY_MS", "1000"),
            ("PARTNER_DELIVERY_DELAY_MS", "2000"),
            ("PARTNER_PING_INTERVAL_MS", "500"),
            ("PARTNER_FAILURE_RATE", "0.1"),
            // A partner keeps calling back for about two minutes: longer than any outage here.
            ("PARTNER_CALLBACK_RETRY_SECS", "180"),
            ("RUST_LOG", "warn"),
        ]));
        sim.start(START_PATIENCE).await?;

        let shared = |database: &str| {
            let mut env = delivery_tests::payload_key_env();
            env.extend(pairs(&[
                ("TEMPORAL_ADDRESS", &format!("http://{temporal_address}")),
                ("TASK_QUEUE", &task_queue),
                ("DATABASE_URL", database),
                ("REDIS_URL", &redis_url),
                ("REDIS_KEY_PREFIX", &redis_prefix),
                ("RUST_LOG", "warn"),
            ]));
            env
        };
        let mut workers = Vec::new();
        for n in 0..2 {
            let metrics_port = free_port();
            let mut worker = Proc::new(
                &format!("worker-{n}"),
                delivery_tests::processes::binary("delivery-worker", "DELIVERY_WORKER_BIN"),
                log_dir,
                Ready::Http(format!("http://127.0.0.1:{metrics_port}/healthz")),
            )
            .env(shared(&proxied_database_url))
            .env(pairs(&[
                ("PARTNER_API_URL", &sim_url),
                ("WORKER_METRICS_PORT", &metrics_port.to_string()),
                ("WORKER_IDENTITY", &format!("chaos-worker-{n}")),
            ]));
            worker.start(START_PATIENCE).await?;
            workers.push(worker);
        }
        let mut gateways = Vec::new();
        let mut gateway_urls = Vec::new();
        for (n, port) in gateway_ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{port}");
            let mut gateway = Proc::new(
                &format!("gateway-{n}"),
                delivery_tests::processes::binary("delivery-api", "DELIVERY_API_BIN"),
                log_dir,
                Ready::Http(format!("{url}/healthz")),
            )
            .env(shared(&proxied_database_url))
            .env(pairs(&[
                ("API_PORT", &port.to_string()),
                ("JWT_SECRET", TEST_JWT_SECRET),
                (
                    "PARTNER_WEBHOOK_SECRETS",
                    &format!("sim={TEST_PARTNER_SECRET}"),
                ),
                ("RATE_LIMIT_PER_SECOND", "100000"),
                ("RATE_LIMIT_BURST", "100000"),
                ("MIN_VERSION_WAIT_MS", "3000"),
                ("WS_MAX_PER_CALLER", "10000"),
            ]));
            gateway.start(START_PATIENCE).await?;
            gateways.push(gateway);
            gateway_urls.push(url);
        }
        Ok(Self {
            temporal,
            temporal_address,
            redis,
            redis_url,
            redis_prefix,
            database_url,
            postgres_proxy,
            _balancer: balancer,
            sim,
            sim_url,
            workers,
            gateways,
            gateway_urls,
        })
    }

    pub(crate) async fn restart(proc: &mut Proc) -> anyhow::Result<()> {
        proc.start(START_PATIENCE).await
    }

    /// Every process's memory and open files now, by name.
    pub(crate) fn usage(&self) -> Vec<(String, Option<Usage>)> {
        [&self.temporal, &self.redis, &self.sim]
            .into_iter()
            .chain(&self.workers)
            .chain(&self.gateways)
            .map(|proc| (proc.name.clone(), proc.usage()))
            .collect()
    }

    /// Everything stopped, newest first (the run's end).
    pub(crate) async fn stop_all(&mut self) {
        for gateway in self.gateways.iter_mut().rev() {
            gateway.stop().await;
        }
        for worker in self.workers.iter_mut().rev() {
            worker.stop().await;
        }
        self.sim.stop().await;
        self.redis.stop().await;
        self.temporal.stop().await;
    }

    /// A Temporal client with the stack's payload codec.
    pub(crate) async fn temporal_client(&self) -> anyhow::Result<temporalio_client::Client> {
        let server = delivery_tests::TemporalServer {
            address: self.temporal_address.clone(),
            cli: delivery_tests::temporal::temporal_cli(),
            // Only its client is wanted here.
            metrics_url: None,
        };
        Ok(server.client().await)
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
