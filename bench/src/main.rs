//! `make bench`: starts the stack from release builds on loopback and prints one table of
//! figures. Every phase is bounded in count or time (`BENCH_*` variables). Figures, not
//! assertions: `docs/performance.md` records them and says what limits them.

mod measure;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delivery_api::auth::Role;
use delivery_tests::{
    GatewayProcess, Stack, StackOptions, database_url, new_payment_id, payment_event,
};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::measure::{Row, Samples, env_number, rss_mib};

const CUSTOMER: &str = "bench-customer";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let create_count = env_number("BENCH_CREATE", 500);
    let command_count = env_number("BENCH_COMMANDS", 300).min(create_count);
    let read_seconds = env_number("BENCH_READ_SECONDS", 5);
    let ws_clients = env_number("BENCH_WS_CLIENTS", 1000);
    let open_workflows = env_number("BENCH_OPEN_WORKFLOWS", 10_000);

    eprintln!("starting the stack (release builds)…");
    let stack = Stack::start_with(
        StackOptions::quiet()
            .gateway("RATE_LIMIT_PER_SECOND", "1000000")
            .gateway("RATE_LIMIT_BURST", "1000000")
            .gateway("RUST_LOG", "warn")
            .worker("RUST_LOG", "warn")
            .sim("RUST_LOG", "warn"),
    )
    .await;
    let api = stack.api();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let payer = api.token("payments", &[Role::PaymentService]);
    let partner = api.token("bench-partner", &[Role::Partner]);
    let customer = api.token(CUSTOMER, &[Role::Customer]);
    let operator = api.token("bench-operator", &[Role::Operator]);
    let mut rows = Vec::new();

    // 1. Creation through payment events.
    eprintln!("creating {create_count} delivery orders…");
    let (ids, row) = create_orders(&http, api, &payer, create_count, 16).await;
    rows.push(row);

    // 2. Command round trip (PICKED_UP through the apply_event update).
    eprintln!("sending {command_count} commands…");
    let picked: Vec<String> = ids[..command_count].to_vec();
    let samples = run_concurrently(&picked, 16, |id| {
        let (http, api, token) = (http.clone(), api.url.clone(), partner.clone());
        async move {
            let started = Instant::now();
            let answer = http
                .post(format!("{api}/api/v1/delivery-orders/{id}/events"))
                .bearer_auth(token)
                .json(&json!({"type": "PICKED_UP", "data": {"partner_order_number": format!("PN-{}", &id[..8]),
                              "driver": {"name": "Bench Driver", "phone": "+44 7700 900123"}, "eta": "2030-01-01T10:00:00Z"}}))
                .send()
                .await
                .ok()?;
            answer.status().is_success().then(|| started.elapsed())
        }
    })
    .await;
    rows.push(Row::latency(
        "event command round trip (POST …/events → 200)",
        &samples,
    ));

    // 3. Event to read model: from sending DELIVERED to the row holding it in PostgreSQL.
    eprintln!("measuring read-model lag…");
    let pool = sqlx::PgPool::connect(database_url().await).await?;
    let samples = run_concurrently(&picked, 8, |id| {
        let (http, api, token, pool) =
            (http.clone(), api.url.clone(), partner.clone(), pool.clone());
        async move {
            let started = Instant::now();
            let answer = http
                .post(format!("{api}/api/v1/delivery-orders/{id}/events"))
                .bearer_auth(token)
                .json(&json!({"type": "DELIVERED"}))
                .send()
                .await
                .ok()?;
            let version = answer.json::<Value>().await.ok()?["version"].as_i64()?;
            let uuid = uuid::Uuid::parse_str(&id).ok()?;
            let deadline = started + Duration::from_secs(10);
            while Instant::now() < deadline {
                let stored: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM delivery_orders WHERE id = $1")
                        .bind(uuid)
                        .fetch_optional(&pool)
                        .await
                        .ok()?;
                if stored.is_some_and(|v| v >= version) {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }
    })
    .await;
    rows.push(Row::latency(
        "event → read model lag (send → row in PostgreSQL)",
        &samples,
    ));

    // 4. Reads.
    eprintln!("reading for {read_seconds} s each…");
    let read_for = Duration::from_secs(read_seconds as u64);
    let order_paths: Vec<String> = picked
        .iter()
        .map(|id| format!("/api/v1/delivery-orders/{id}"))
        .collect();
    rows.push(
        read_load(
            &http,
            api,
            &customer,
            &order_paths,
            read_for,
            "GET delivery order (64 in flight)",
        )
        .await,
    );
    let paced_rate = env_number("BENCH_PACED_RATE", 5000);
    rows.push(paced_reads(&http, api, &customer, &order_paths, paced_rate, read_for).await);
    let tracking_paths: Vec<String> = picked
        .iter()
        .map(|id| format!("/api/v1/tracking/{id}"))
        .collect();
    rows.push(
        read_load(
            &http,
            api,
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
            api,
            &operator,
            &state_paths,
            read_for,
            "GET /api/state (64 in flight)",
        )
        .await,
    );

    // 5. WebSocket push to many clients: customer confirmations watched by every socket.
    eprintln!("opening {ws_clients} WebSockets…");
    rows.push(websocket_push(&http, api, &operator, &customer, &picked, ws_clients).await?);

    // 6. Open workflows held.
    eprintln!("starting {open_workflows} more delivery orders and holding them open…");
    let (_, mut row) = create_orders(&http, api, &payer, open_workflows, 32).await;
    row.name = format!("creation of {open_workflows} more (all held open)");
    rows.push(row);
    rows.push(Row::figure(
        "open delivery workflows held (Temporal visibility)",
        format!("{}", open_workflows_count(&stack).await?),
    ));
    rows.push(Row::figure(
        "memory (RSS): worker / gateway",
        format!(
            "{} MiB / {} MiB",
            rss_mib(stack.worker.pid()),
            rss_mib(api.pid())
        ),
    ));

    println!("\n{}", measure::table(&rows));
    Ok(())
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

/// Runs `work` over `items` with `concurrency` in flight; keeps the successful samples.
async fn run_concurrently<F, Fut>(items: &[String], concurrency: usize, work: F) -> Samples
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let started = Instant::now();
    let results: Vec<Option<Duration>> = stream::iter(items.iter().cloned().map(work))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Samples::new(results, started.elapsed())
}

async fn create_orders(
    http: &reqwest::Client,
    api: &GatewayProcess,
    token: &str,
    count: usize,
    concurrency: usize,
) -> (Vec<String>, Row) {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let seeds: Vec<String> = (0..count).map(|_| new_payment_id()).collect();
    let samples = run_concurrently(&seeds, concurrency, |payment_id| {
        let (http, url, token, ids) =
            (http.clone(), api.url.clone(), token.to_owned(), ids.clone());
        async move {
            let started = Instant::now();
            let answer = http
                .post(format!("{url}/api/v1/payment-events"))
                .bearer_auth(token)
                .json(&payment_event(&payment_id, CUSTOMER))
                .send()
                .await
                .ok()?;
            let elapsed = started.elapsed();
            let body: Value = answer.json().await.ok()?;
            ids.lock()
                .unwrap()
                .push(body["delivery_order_id"].as_str()?.to_owned());
            Some(elapsed)
        }
    })
    .await;
    let ids = ids.lock().unwrap().clone();
    (
        ids,
        Row::throughput("creation via payment events", &samples),
    )
}

/// Closed-loop GETs over `paths` for `duration`, 64 in flight.
async fn read_load(
    http: &reqwest::Client,
    api: &GatewayProcess,
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
                api.url.clone(),
                token.to_owned(),
                paths.to_vec(),
                samples.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut n = worker;
                while started.elapsed() < duration {
                    let path = &paths[n % paths.len()];
                    n += 64;
                    let t = Instant::now();
                    let ok = match http
                        .get(format!("{url}{path}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    mine.push(ok.then(|| t.elapsed()));
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
    api: &GatewayProcess,
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
    while started.elapsed() < duration {
        let due = ticker.tick().await;
        for _ in 0..per_tick {
            let (http, url, token) = (http.clone(), api.url.clone(), token.to_owned());
            let path = paths[n % paths.len()].clone();
            n += 1;
            requests.push(tokio::spawn(async move {
                let ok = match http
                    .get(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                ok.then(|| due.elapsed())
            }));
        }
    }
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(request.await.ok().flatten());
    }
    Row::throughput(
        &format!("GET delivery order at a fixed {rate} req/s"),
        &Samples::new(results, started.elapsed()),
    )
}

/// `clients` sockets on `/ws/events`; each confirmation's update timed from the moment the
/// command was sent to its arrival at every socket.
async fn websocket_push(
    http: &reqwest::Client,
    api: &GatewayProcess,
    operator: &str,
    customer: &str,
    delivered: &[String],
    clients: usize,
) -> anyhow::Result<Row> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/ws/events?access_token={operator}",
        api.port
    );
    let sockets: Vec<_> = stream::iter(0..clients)
        .map(|_| tokio_tungstenite::connect_async(url.clone()))
        .buffer_unordered(50)
        .filter_map(|r| async move { r.ok().map(|(socket, _)| socket) })
        .collect()
        .await;
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
                        if matches!(next, Err(_) | Ok(None) | Ok(Some(Err(_)))) {
                            break;
                        }
                        continue;
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
                        latencies.lock().unwrap().push(Some(at.elapsed()));
                        seen += 1;
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    for id in &delivered[..targets] {
        sent.lock().unwrap().insert(id.clone(), Instant::now());
        let _ = http
            .post(format!("{}/api/v1/delivery-orders/{id}/events", api.url))
            .bearer_auth(customer)
            .json(&json!({"type": "CONFIRMED"}))
            .send()
            .await;
    }
    for reader in readers {
        let _ = reader.await;
    }
    let all = std::mem::take(&mut *latencies.lock().unwrap());
    let mut row = Row::latency(
        &format!("WebSocket push ({connected} clients, {targets} changes each)"),
        &Samples::new(all, started.elapsed()),
    );
    row.note = format!("{} deliveries to sockets", row.count);
    Ok(row)
}
