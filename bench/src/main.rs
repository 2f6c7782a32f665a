//! `make bench`: starts the stack from release builds on loopback and prints one table of
//! figures, then per write phase where its time went (gateway, Temporal server, worker), then
//! the reason of every failed request. Every phase is bounded in count or time (`BENCH_*`
//! variables). Figures, not assertions: `docs/performance.md` records them and says what limits
//! them. `BENCH_SMOKE=1` runs every phase with tiny counts and exits non-zero on any failure
//! (`make test` runs it so). `delivery-bench noop-worker` is the ceiling's worker process.

mod breakdown;
mod ceiling;
mod compat;
mod gateways;
mod measure;
mod scrape;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delivery_api::auth::Role;
use delivery_tests::{
    GatewayProcess, Stack, StackOptions, WorkerProcess, database_url, free_port, new_payment_id,
    payment_event,
};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::breakdown::Probe;
use crate::gateways::{Gateways, send, send_creation};
use crate::measure::{Outcome, Row, Samples, env_number, rss_mib};

const CUSTOMER: &str = "bench-customer";
/// Requests in flight in the write phases (ours and the ceiling's alike).
const WRITERS: usize = 16;

/// The run's counts, from `BENCH_*` (tiny ones under `BENCH_SMOKE=1`).
struct Settings {
    smoke: bool,
    create: usize,
    commands: usize,
    compat: usize,
    read_seconds: usize,
    paced_rate: usize,
    ws_clients: usize,
    open_workflows: usize,
    workers: usize,
    gateways: usize,
}

impl Settings {
    fn from_env() -> Self {
        let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
        let pick = |name: &str, full: usize, tiny: usize| {
            env_number(name, if smoke { tiny } else { full })
        };
        let create = pick("BENCH_CREATE", 500, 8);
        Self {
            smoke,
            create,
            commands: pick("BENCH_COMMANDS", 300, 8).min(create),
            compat: pick("BENCH_COMPAT", 300, 6),
            read_seconds: pick("BENCH_READ_SECONDS", 5, 1),
            paced_rate: pick("BENCH_PACED_RATE", 5000, 200),
            ws_clients: pick("BENCH_WS_CLIENTS", 1000, 4),
            open_workflows: pick("BENCH_OPEN_WORKFLOWS", 10_000, 4),
            workers: env_number("BENCH_WORKERS", 1).max(1),
            gateways: env_number("BENCH_GATEWAYS", 1).max(1),
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("noop-worker") {
        return ceiling::run_worker().await;
    }
    let settings = Settings::from_env();
    let rows = run(&settings).await?;
    if settings.smoke {
        let failed: usize = rows.iter().map(Row::failed).sum();
        if failed > 0 {
            eprintln!("BENCH_SMOKE: {failed} operations failed (reasons above)");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// Records the breakdown of each phase it wraps.
struct Phases {
    probe: Probe,
    reports: Vec<String>,
}

impl Phases {
    async fn measure<T>(&mut self, phase: &str, work: impl Future<Output = T>) -> T {
        let before = self.probe.scrape().await;
        let result = work.await;
        let after = self.probe.scrape().await;
        self.reports.push(breakdown::report(phase, &before, &after));
        result
    }
}

async fn run(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let Settings {
        create: create_count,
        commands: command_count,
        ..
    } = *settings;
    eprintln!(
        "starting the stack ({} worker(s), {} gateway(s))…",
        settings.workers, settings.gateways
    );
    let gateway_env = [
        ("RATE_LIMIT_PER_SECOND", "1000000"),
        ("RATE_LIMIT_BURST", "1000000"),
        ("RUST_LOG", "warn"),
    ];
    let mut options = StackOptions::quiet()
        .worker("RUST_LOG", "warn")
        .sim("RUST_LOG", "warn");
    for (key, value) in gateway_env {
        options = options.gateway(key, value);
    }
    let stack = Stack::start_with(options).await;
    let mut extra_workers = Vec::new();
    for _ in 1..settings.workers {
        extra_workers.push(
            WorkerProcess::start(
                stack.temporal,
                &stack.task_queue,
                &stack.sim.url,
                &[("RUST_LOG", "warn")],
            )
            .await,
        );
    }
    let mut extra_gateways = Vec::new();
    for _ in 1..settings.gateways {
        extra_gateways.push(
            GatewayProcess::start(stack.temporal, &stack.task_queue, free_port(), &gateway_env)
                .await,
        );
    }
    let api = stack.api();
    let all_gateways: Vec<&GatewayProcess> =
        std::iter::once(api).chain(extra_gateways.iter()).collect();
    let all_workers: Vec<&WorkerProcess> = std::iter::once(&stack.worker)
        .chain(extra_workers.iter())
        .collect();
    let gateways = Gateways::new(
        all_gateways
            .iter()
            .map(|g| (g.url.clone(), g.port))
            .collect(),
    );
    let noop = ceiling::NoopWorker::start(&stack.temporal.url()).await?;
    let mut worker_metrics: Vec<String> =
        all_workers.iter().map(|w| w.metrics_url.clone()).collect();
    worker_metrics.push(noop.metrics_url.clone());
    let mut phases = Phases {
        probe: Probe::new(
            gateways.metrics_urls(),
            worker_metrics,
            stack.temporal.metrics_url.clone(),
        ),
        reports: Vec::new(),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()?;
    let payer = api.token("payments", &[Role::PaymentService]);
    // The partner the worker books pickups with (`PARTNER_ID`, `sim`): its events are accepted
    // once it has accepted the order's pickup.
    let partner = api.token("sim", &[Role::Partner]);
    let customer = api.token(CUSTOMER, &[Role::Customer]);
    let operator = api.token("bench-operator", &[Role::Operator]);
    let oms = api.token("bench-oms", &[Role::OrderManagement]);
    let mut rows = Vec::new();

    // 0. The ceiling: the same server with workflows and updates that do nothing.
    eprintln!("measuring the no-op ceiling…");
    let raw = stack.temporal.raw_client().await;
    let noop_start = phases
        .measure(
            "no-op workflow start",
            ceiling::starts(&raw, &noop.queue, create_count, WRITERS),
        )
        .await;
    let noop_complete = phases
        .measure(
            "no-op workflow start → completed",
            ceiling::completions(&raw, &noop.queue, command_count, WRITERS),
        )
        .await;
    let noop_update = phases
        .measure(
            "no-op update",
            ceiling::updates(&raw, &noop.queue, command_count, WRITERS),
        )
        .await;

    // 1. Creation through payment events.
    eprintln!("creating {create_count} delivery orders…");
    let (ids, row) = phases
        .measure(
            "creation via payment events",
            create_orders(&http, &gateways, &payer, create_count, WRITERS),
        )
        .await;
    rows.push(row.against(&noop_start));

    // 2. Command round trip (PICKED_UP through the apply_event update), to orders whose pickup
    // the partner has accepted (waited for first, untimed).
    let picked: Vec<String> = ids[..command_count.min(ids.len())].to_vec();
    eprintln!(
        "waiting for the partner to accept {} pickups…",
        picked.len()
    );
    stream::iter(picked.iter().map(|id| api.pickup_confirmed(id)))
        .buffer_unordered(WRITERS)
        .collect::<Vec<_>>()
        .await;
    eprintln!("sending {command_count} commands…");
    let samples = phases
        .measure(
            "event command round trip",
            run_concurrently(&picked, WRITERS, |id| {
                let (http, url, token) =
                    (http.clone(), gateways.next().to_owned(), partner.clone());
                async move {
                    let started = Instant::now();
                    send(
                        "POST /api/v1/delivery-orders/{id}/events PICKED_UP",
                        http.post(format!("{url}/api/v1/delivery-orders/{id}/events"))
                            .bearer_auth(token)
                            .json(&json!({"type": "PICKED_UP", "data": {"partner_order_number": format!("PN-{}", &id[..8]),
                                          "driver": {"name": "Bench Driver", "phone": "+44 7700 900123"}, "eta": "2030-01-01T10:00:00Z"}})),
                    )
                    .await?;
                    Outcome::Ok(started.elapsed())
                }
            }),
        )
        .await;
    rows.push(
        Row::latency(
            &format!("event command round trip (POST …/events → 200, {WRITERS} in flight)"),
            &samples,
        )
        .against(&noop_update),
    );

    // 3. Event to read model: from sending DELIVERED to the row holding it in PostgreSQL.
    eprintln!("measuring read-model lag…");
    let pool = sqlx::PgPool::connect(database_url().await).await?;
    let samples = phases
        .measure(
            "event → read model lag",
            run_concurrently(&picked, 8, |id| {
                let (http, url, token, pool) = (
                    http.clone(),
                    gateways.next().to_owned(),
                    partner.clone(),
                    pool.clone(),
                );
                async move { read_model_lag(&http, &url, &token, &pool, &id).await }
            }),
        )
        .await;
    rows.push(Row::latency(
        "event → read model lag (send → row in PostgreSQL)",
        &samples,
    ));

    // 4. The compatible API: creation, one event each, status reads.
    let read_for = Duration::from_secs(settings.read_seconds as u64);
    eprintln!("the compatible API: {} deliveries…", settings.compat);
    let (compat_ids, row) = phases
        .measure(
            "compat POST /deliveries/create",
            compat::create(&http, &gateways, &oms, settings.compat, WRITERS),
        )
        .await;
    rows.push(row.against(&noop_start));
    let row = phases
        .measure(
            "compat POST /event",
            compat::start_each(&http, &gateways, &oms, &compat_ids, WRITERS),
        )
        .await;
    rows.push(row.against(&noop_update));
    rows.push(compat::status(&http, &gateways, &oms, &compat_ids, read_for).await);

    // 5. Reads.
    eprintln!("reading for {} s each…", settings.read_seconds);
    let order_paths: Vec<String> = picked
        .iter()
        .map(|id| format!("/api/v1/delivery-orders/{id}"))
        .collect();
    rows.push(
        read_load(
            &http,
            &gateways,
            &customer,
            &order_paths,
            read_for,
            "GET delivery order (64 in flight)",
        )
        .await,
    );
    rows.push(
        paced_reads(
            &http,
            &gateways,
            &customer,
            &order_paths,
            settings.paced_rate,
            read_for,
        )
        .await,
    );
    let tracking_paths: Vec<String> = picked
        .iter()
        .map(|id| format!("/api/v1/tracking/{id}"))
        .collect();
    rows.push(
        read_load(
            &http,
            &gateways,
            &customer,
            &tracking_paths,
            read_for,
            "GET tracking (64 in flight)",
        )
        .await,
    );
    let state_paths = vec!["/api/state".to_owned()];
    rows.push(
        read_load(
            &http,
            &gateways,
            &operator,
            &state_paths,
            read_for,
            "GET /api/state (64 in flight)",
        )
        .await,
    );

    // 6. WebSocket push to many clients: customer confirmations watched by every socket.
    eprintln!("opening {} WebSockets…", settings.ws_clients);
    rows.push(
        websocket_push(
            &http,
            &gateways,
            // One operator per dashboard: the gateway caps the sockets of any one caller.
            &(0..settings.ws_clients)
                .map(|n| api.token(&format!("bench-dashboard-{n}"), &[Role::Operator]))
                .collect::<Vec<_>>(),
            &customer,
            &picked,
            settings.ws_clients,
        )
        .await?,
    );

    // 7. Open workflows held.
    let open = settings.open_workflows;
    eprintln!("starting {open} more delivery orders and holding them open…");
    let (_, mut row) = create_orders(&http, &gateways, &payer, open, 32).await;
    row.name = format!("creation of {open} more (32 in flight, all held open)");
    rows.push(row);
    rows.push(Row::figure(
        "open delivery workflows held (Temporal visibility)",
        format!("{}", open_workflows_count(&stack).await?),
    ));
    let rss = |pids: Vec<u32>| {
        pids.into_iter()
            .map(rss_mib)
            .collect::<Vec<_>>()
            .join(" + ")
    };
    rows.push(Row::figure(
        "memory (RSS): worker / gateway",
        format!(
            "{} MiB / {} MiB",
            rss(all_workers.iter().map(|w| w.pid()).collect()),
            rss(all_gateways.iter().map(|g| g.pid()).collect())
        ),
    ));

    let mut ceiling_rows = vec![noop_start, noop_complete, noop_update];
    ceiling_rows.append(&mut rows);
    let rows = ceiling_rows;
    println!(
        "\n{} worker(s), {} gateway(s), {WRITERS} writes in flight\n\n{}",
        settings.workers,
        settings.gateways,
        measure::table(&rows)
    );
    println!("\n### Where the time of each write phase went");
    if phases.probe.server.is_none() {
        println!("(the Temporal server's metrics endpoint is unknown: its segments are left out)");
    }
    for report in &phases.reports {
        print!("{report}");
    }
    let failures = measure::failure_report(&rows);
    if failures.is_empty() {
        println!("\nno request failed");
    } else {
        println!("\n### Failed requests\n{failures}");
    }
    Ok(rows)
}

/// Sends DELIVERED and polls the read model until its row holds the answered version.
async fn read_model_lag(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    pool: &sqlx::PgPool,
    id: &str,
) -> Outcome {
    let started = Instant::now();
    let answer = send(
        "POST /api/v1/delivery-orders/{id}/events DELIVERED",
        http.post(format!("{url}/api/v1/delivery-orders/{id}/events"))
            .bearer_auth(token)
            .json(&json!({"type": "DELIVERED"})),
    )
    .await?;
    let body: Value = answer
        .json()
        .await
        .map_err(|e| format!("DELIVERED answer: {e}"))?;
    let version = body["version"]
        .as_i64()
        .ok_or_else(|| format!("DELIVERED answer without a version: {body}"))?;
    let uuid = uuid::Uuid::parse_str(id).map_err(|e| format!("order id {id}: {e}"))?;
    let deadline = started + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT version FROM delivery_orders WHERE id = $1")
                .bind(uuid)
                .fetch_optional(pool)
                .await
                .map_err(|e| format!("reading the read model: {e}"))?;
        if stored.is_some_and(|v| v >= version) {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!(
        "the read model did not reach version {version} within 10 s"
    ))
}

/// Running `DeliveryOrderWorkflow`s on the stack's task queue, as Temporal counts them.
async fn open_workflows_count(stack: &Stack) -> anyhow::Result<i64> {
    use temporalio_common::protos::temporal::api::workflowservice::v1::CountWorkflowExecutionsRequest;
    let request = CountWorkflowExecutionsRequest {
        namespace: "default".into(),
        query: format!(
            "ExecutionStatus = 'Running' AND WorkflowType = 'DeliveryOrderWorkflow' AND TaskQueue = '{}'",
            stack.task_queue
        ),
    };
    let mut service = stack.client.connection().workflow_service();
    let answer = service
        .count_workflow_executions(temporalio_client::tonic::Request::new(request))
        .await?;
    Ok(answer.into_inner().count)
}

/// Runs `work` over `items` with `concurrency` in flight; keeps every outcome.
pub(crate) async fn run_concurrently<F, Fut>(
    items: &[String],
    concurrency: usize,
    work: F,
) -> Samples
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let started = Instant::now();
    let results: Vec<Outcome> = stream::iter(items.iter().cloned().map(work))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Samples::new(results, started.elapsed())
}

async fn create_orders(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    count: usize,
    concurrency: usize,
) -> (Vec<String>, Row) {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let seeds: Vec<String> = (0..count).map(|_| new_payment_id()).collect();
    let samples = run_concurrently(&seeds, concurrency, |payment_id| {
        let (http, url, token, ids) = (
            http.clone(),
            gateways.next().to_owned(),
            token.to_owned(),
            ids.clone(),
        );
        async move {
            let (elapsed, id) = send_creation(
                "POST /api/v1/payment-events",
                http.post(format!("{url}/api/v1/payment-events"))
                    .bearer_auth(token)
                    .json(&payment_event(&payment_id, CUSTOMER)),
                "delivery_order_id",
            )
            .await?;
            ids.lock().unwrap().push(id);
            Outcome::Ok(elapsed)
        }
    })
    .await;
    let ids = ids.lock().unwrap().clone();
    (
        ids,
        Row::throughput(
            &format!("creation via payment events ({concurrency} in flight)"),
            &samples,
        ),
    )
}

/// One GET, judged: 2xx with its whole body read.
async fn get(http: &reqwest::Client, url: &str, path: &str, token: &str) -> Result<(), String> {
    send(
        &format!("GET {path}"),
        http.get(format!("{url}{path}")).bearer_auth(token),
    )
    .await?
    .bytes()
    .await
    .map(|_| ())
    .map_err(|e| format!("GET {path}: body: {e}"))
}

/// Closed-loop GETs over `paths` for `duration`, 64 in flight.
pub(crate) async fn read_load(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    paths: &[String],
    duration: Duration,
    name: &str,
) -> Row {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|worker| {
            let (http, url, token, paths, samples) = (
                http.clone(),
                gateways.next().to_owned(),
                token.to_owned(),
                paths.to_vec(),
                samples.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut n = worker;
                while started.elapsed() < duration && !paths.is_empty() {
                    let path = &paths[n % paths.len()];
                    n += 64;
                    let t = Instant::now();
                    mine.push(get(&http, &url, path, &token).await.map(|()| t.elapsed()));
                }
                samples.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let all = std::mem::take(&mut *samples.lock().unwrap());
    Row::throughput(name, &Samples::new(all, started.elapsed()))
}

/// GETs sent at a fixed `rate` (open loop) for `duration`; each latency counts from the moment
/// its request was due, so a stalled server shows up instead of slowing the load down.
async fn paced_reads(
    http: &reqwest::Client,
    gateways: &Gateways,
    token: &str,
    paths: &[String],
    rate: usize,
    duration: Duration,
) -> Row {
    let per_tick = (rate / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut n = 0usize;
    while started.elapsed() < duration && !paths.is_empty() {
        let due = ticker.tick().await;
        for _ in 0..per_tick {
            let (http, url, token) = (http.clone(), gateways.next().to_owned(), token.to_owned());
            let path = paths[n % paths.len()].clone();
            n += 1;
            requests.push(tokio::spawn(async move {
                get(&http, &url, &path, &token)
                    .await
                    .map(|()| due.elapsed())
            }));
        }
    }
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(
            request
                .await
                .unwrap_or_else(|e| Err(format!("request task: {e}"))),
        );
    }
    Row::throughput(
        &format!("GET delivery order at a fixed {rate} req/s"),
        &Samples::new(results, started.elapsed()),
    )
}

/// `clients` sockets on `/ws/events`, spread over the gateways, each with its own operator's
/// token from `dashboards`; each confirmation's update timed from the moment the command was sent
/// to its arrival at every socket.
async fn websocket_push(
    http: &reqwest::Client,
    gateways: &Gateways,
    dashboards: &[String],
    customer: &str,
    delivered: &[String],
    clients: usize,
) -> anyhow::Result<Row> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let connections: Vec<_> = stream::iter(0..clients)
        .map(|n| {
            let url = format!(
                "ws://127.0.0.1:{}/api/v1/ws/events?access_token={}",
                gateways.port(n),
                dashboards[n]
            );
            async move { tokio_tungstenite::connect_async(url).await }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut sockets = Vec::new();
    let mut failures = Vec::new();
    for connection in connections {
        match connection {
            Ok((socket, _)) => sockets.push(socket),
            Err(error) => failures.push(format!("WebSocket connect: {error}")),
        }
    }
    let connected = sockets.len();
    let targets = delivered.len().min(100);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let (sent, latencies) = (sent.clone(), latencies.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < targets {
                    let next = tokio::time::timeout(Duration::from_secs(20), socket.next()).await;
                    let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) = next
                    else {
                        match next {
                            Err(_) => {
                                return Some(format!(
                                    "WebSocket: {} of {targets} changes did not arrive within 20 s",
                                    targets - seen
                                ));
                            }
                            Ok(None) => return Some("WebSocket closed by the gateway".into()),
                            Ok(Some(Err(error))) => return Some(format!("WebSocket: {error}")),
                            Ok(Some(Ok(_))) => continue,
                        }
                    };
                    let Ok(message) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if message["delivery_order"]["state"] != "DELIVERY_CONFIRMED" {
                        continue;
                    }
                    let id = message["delivery_order"]["delivery_order_id"]
                        .as_str()
                        .unwrap_or_default();
                    if let Some(at) = sent.lock().unwrap().get(id) {
                        latencies.lock().unwrap().push(Ok(at.elapsed()));
                        seen += 1;
                    }
                }
                None
            })
        })
        .collect();
    let started = Instant::now();
    for id in &delivered[..targets] {
        sent.lock().unwrap().insert(id.clone(), Instant::now());
        if let Err(reason) = send(
            "POST /api/v1/delivery-orders/{id}/events CONFIRMED",
            http.post(format!(
                "{}/api/v1/delivery-orders/{id}/events",
                gateways.next()
            ))
            .bearer_auth(customer)
            .json(&json!({"type": "CONFIRMED"})),
        )
        .await
        {
            failures.push(reason);
        }
    }
    for reader in readers {
        if let Ok(Some(reason)) = reader.await {
            failures.push(reason);
        }
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.extend(failures.into_iter().map(Err));
    let mut row = Row::latency(
        &format!("WebSocket push ({connected} clients, {targets} changes each)"),
        &Samples::new(all, started.elapsed()),
    );
    row.note = format!("{} deliveries to sockets", row.count);
    Ok(row)
}
