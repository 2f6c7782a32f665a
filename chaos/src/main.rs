//! `make chaos`: the stack with two workers and two gateways under steady mixed load while every
//! part of it is killed, cut or flooded on a schedule; then every delivery order is checked end
//! to end and one table is printed. Exit status 1 when anything was lost, duplicated, out of
//! order, differing or stuck, or a client got an answer it should never get; 2 when the run
//! itself could not be carried out. See `docs/reliability.md`.

mod balancer;
mod checker;
mod client;
mod config;
mod database;
mod fault_kind;
mod faults;
mod ledger;
mod load;
mod report;
mod sim;
mod stack;
mod states;
mod watchers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delivery_api::auth::Role;
use delivery_read_model::RedisKeys;
use futures::StreamExt;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Mutex;

use crate::checker::{Facts, Sources};
use crate::client::Api;
use crate::config::ChaosConfig;
use crate::database::Database;
use crate::faults::Injector;
use crate::ledger::Ledger;
use crate::load::Driver;
use crate::sim::SimControl;
use crate::stack::Stack;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let database = match Database::create().await {
        Ok(database) => database,
        Err(e) => {
            eprintln!("chaos: could not create the run's database: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Interrupted, the run ends here: dropping it stops every process it started, by PID.
    let outcome = tokio::select! {
        outcome = run(&database.url) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    database.drop_now().await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("chaos: the run could not be carried out: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The first of SIGINT and SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn run(database_url: &str) -> anyhow::Result<bool> {
    let began = Instant::now();
    let config = ChaosConfig::from_env()?;
    let log_dir = std::env::var_os("CHAOS_LOG_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("delivery-chaos-{}", std::process::id()))
        });
    eprintln!("starting the stack (logs in {})…", log_dir.display());
    let stack = Stack::start(&log_dir, database_url).await?;
    let usage_at_start = stack.usage();
    let ledger = Arc::new(Ledger::new());
    let api = Arc::new(Api::new(stack.gateway_urls.clone(), ledger.clone()));
    let sim = Arc::new(SimControl::new(&stack.sim_url));
    let driver = Arc::new(Driver::new(api.clone(), sim.clone()));
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&stack.database_url)
        .await?;
    let redis_url = stack.redis_url.clone();
    let keys = RedisKeys::new(stack.redis_prefix.clone());
    let stack = Arc::new(Mutex::new(stack));

    for _ in 0..2 {
        tokio::spawn(watchers::watch_everything(api.clone()));
    }
    eprintln!(
        "load at {} journeys/s for {:?}, faults on a schedule…",
        config.journeys_per_second, config.load_for
    );
    let load = tokio::spawn(driver.clone().run(config.journeys_per_second));
    let injector = Arc::new(Injector {
        config: config.clone(),
        stack: stack.clone(),
        driver: driver.clone(),
        sim: sim.clone(),
        ledger: ledger.clone(),
    });
    let injected = injector.run().await;
    driver
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let journeys = load.await?;
    injected?;

    eprintln!(
        "[{:>6.1}s] draining the journeys in flight…",
        ledger.now().as_secs_f64()
    );
    let aborts: Vec<_> = journeys.iter().map(|j| j.abort_handle()).collect();
    if tokio::time::timeout(config.drain_for, futures::future::join_all(journeys))
        .await
        .is_err()
    {
        aborts.iter().for_each(|a| a.abort());
    }

    let temporal = stack.lock().await.temporal_client().await?;
    eprintln!(
        "[{:>6.1}s] finishing what clients left open…",
        ledger.now().as_secs_f64()
    );
    let swept = sweep(&driver, &temporal, &pool, &ledger, config.settle_for).await?;
    eprintln!(
        "           cancelled {} created orders the partner held, confirmed {} delivered ones; {} never got a pickup booked (left for the checker)",
        swept.cancelled.len(),
        swept.confirmed.len(),
        swept.unbooked
    );

    let redis_client = redis::Client::open(redis_url)?;
    let mut redis = redis_client.get_multiplexed_async_connection().await?;
    let settle_until = Instant::now() + config.settle_for;
    eprintln!(
        "[{:>6.1}s] waiting for the read model, Redis and the stream to settle…",
        ledger.now().as_secs_f64()
    );
    let facts = loop {
        let snapshot = ledger.snapshot();
        let ids = checker::universe(&pool, &snapshot).await?;
        let mut sources = Sources {
            temporal: &temporal,
            pool: &pool,
            redis: &mut redis,
            keys: &keys,
            sim: &sim,
        };
        let facts = Facts::gather(&mut sources, &ids, &snapshot).await?;
        let behind = facts.behind();
        if behind == 0 || Instant::now() >= settle_until {
            break facts;
        }
        eprintln!("           {behind} orders still catching up");
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    // The watchers have had the settle time to catch up: they record where they are and end.
    watchers::stop_all();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snapshot = ledger.snapshot();
    let verdict = facts.check(&snapshot);
    let report = report::render(&config, &snapshot, &verdict, began.elapsed());
    println!("\n{}", report.text);
    let mut stack = stack.lock().await;
    println!("{}", report::usage_table(&usage_at_start, &stack.usage()));
    stack.stop_all().await;
    Ok(report.passed)
}

/// Orders a client may still have to act on: not terminal and not in the operator queue by the
/// read model, or not in it at all (the workflow decides; the read model may lag).
async fn open_orders(
    pool: &sqlx::PgPool,
    ledger: &crate::ledger::Snapshot,
) -> anyhow::Result<Vec<String>> {
    use sqlx::Row;
    let settled: std::collections::BTreeSet<String> = sqlx::query(
        "SELECT id FROM delivery_orders WHERE state IN ('DELIVERY_CONFIRMED', 'CANCELLED', 'RESHIPPED', 'PENDING_BY_OPERATOR')",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.get::<uuid::Uuid, _>("id").to_string())
    .collect();
    Ok(checker::universe(pool, ledger)
        .await?
        .into_iter()
        .filter(|id| !settled.contains(id))
        .collect())
}

/// What the sweep did, for the report.
#[derive(Debug, Default)]
struct Swept {
    /// CREATED orders whose pickup the partner holds but never acted on, cancelled.
    cancelled: std::collections::BTreeSet<String>,
    /// DELIVERED orders confirmed by their customer.
    confirmed: std::collections::BTreeSet<String>,
    /// CREATED orders whose pickup was still not booked when the sweep gave up: left as they
    /// are, for the checker to report as stuck.
    unbooked: usize,
}

/// Finishes what clients left open, as the service's users would: a CREATED order whose pickup
/// the partner holds (silent, or forgotten when its process was killed) is cancelled by an
/// operator, a DELIVERED one confirmed by its customer. A CREATED order with no pickup booked
/// is not the partner's doing: the workflow owes the booking, so the sweep waits for it (up to
/// `patience`) and never cancels it away; if it stays unbooked, the checker reports it stuck.
async fn sweep(
    driver: &Driver,
    temporal: &temporalio_client::Client,
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    patience: Duration,
) -> anyhow::Result<Swept> {
    enum Act {
        Cancelled,
        Confirmed,
        Unbooked,
        Nothing,
    }
    let give_up = Instant::now() + patience;
    let mut swept = Swept::default();
    loop {
        let ids = open_orders(pool, &ledger.snapshot()).await?;
        let acts: Vec<(Act, String)> = futures::stream::iter(ids)
            .map(|id| async move {
                let Ok(view) = checker::query_state(temporal, &id).await else {
                    return (Act::Nothing, id);
                };
                let act = match view.order.state.as_str() {
                    "CREATED" if view.order.partner.pickup_id.is_none() => Act::Unbooked,
                    "CREATED" => {
                        let _ = driver.cancel(&id).await;
                        Act::Cancelled
                    }
                    "DELIVERED" => {
                        let token = driver.api.token(&view.order.customer_id, Role::Customer);
                        let _ = driver.send(&id, &token, "CONFIRMED", json!({})).await;
                        Act::Confirmed
                    }
                    _ => Act::Nothing,
                };
                (act, id)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let (mut acted, mut unbooked) = (0, 0);
        for (act, id) in acts {
            match act {
                Act::Cancelled => {
                    swept.cancelled.insert(id);
                    acted += 1;
                }
                Act::Confirmed => {
                    swept.confirmed.insert(id);
                    acted += 1;
                }
                Act::Unbooked => unbooked += 1,
                Act::Nothing => {}
            }
        }
        swept.unbooked = unbooked;
        if (acted == 0 && unbooked == 0) || Instant::now() >= give_up {
            break;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    Ok(swept)
}
