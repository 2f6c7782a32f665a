//! Disaster recovery: the read model (PostgreSQL rows and, through the outbox, Redis) is rebuilt
//! from Temporal alone by `delivery-worker rebuild-read-model`, run as a real process. Orders are
//! driven through different paths (one of them continues as new), the read model they produced
//! is snapshotted, and the command rebuilds it into an empty database and an empty Redis prefix;
//! every order row, ordering, audit row, cached status and stream entry must come out as it was.
//! A second run over a partly damaged copy must repair it and publish nothing twice, and a run
//! over the intact read model must change nothing. Closed orders come back with no worker
//! polling at all (read from their workflow results), as after a blue-green release once the old
//! build's workers are scaled to 0.
//!
//! The rebuild goes to a fresh database rather than dropping the test database, which the other
//! suites of this binary share; an empty database is what a lost one is replaced by.

use std::collections::BTreeMap;
use std::time::Duration;

use delivery_tests::*;
use delivery_workflows::delivery_order::HISTORY_LIMIT;
use delivery_workflows::machine::DeliveryOrder;
use delivery_workflows::{ActorKind, DELIVERY_ORDER_V1, DeliveryOrderView, EventType, State};
use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The read model of some orders, as comparable values.
#[derive(Debug, PartialEq)]
struct Snapshot {
    orders: Vec<Value>,
    orderings: Vec<Value>,
    events: Vec<Value>,
    /// Each order's stream entries, in stream order (entry ids are times of publishing, so only
    /// the order among an order's entries is compared, not the ids).
    stream: BTreeMap<String, Vec<Value>>,
    cache: BTreeMap<String, Option<Value>>,
}

async fn snapshot(pool: &PgPool, prefix: &str, ids: &[uuid::Uuid]) -> Snapshot {
    // `location`, `location_at` and `destination` are tracking data the gateway writes from
    // partner pings (as is the route, in a table of its own); they
    // never enter workflow history, so a rebuild cannot have them (restore.md says so). No other
    // column is left out: every time in these tables is the workflow's clock, not the time of
    // writing, so the rebuild must reproduce it exactly.
    let orders: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(d) - 'location' - 'location_at' - 'destination' FROM delivery_orders d
         WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap();
    let orderings: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(o) FROM orderings o WHERE ordering_id IN
             (SELECT ordering_id FROM delivery_orders WHERE id = ANY($1))
         ORDER BY ordering_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap();
    let events: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(e) FROM delivery_order_events e WHERE delivery_order_id = ANY($1)
         ORDER BY delivery_order_id, seq",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut redis = redis_connection().await;
    let reply: redis::streams::StreamRangeReply = redis
        .xrange_all(format!("{prefix}delivery-events"))
        .await
        .unwrap();
    let mut stream: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in &reply.ids {
        let payload: String = entry.get("payload").expect("a payload field");
        let kind: String = entry.get("type").expect("a type field");
        let payload: Value = serde_json::from_str(&payload).unwrap();
        let order = payload["delivery_order_id"].as_str().unwrap_or_default();
        if ids.iter().any(|id| id.to_string() == order) {
            stream
                .entry(order.to_owned())
                .or_default()
                .push(json!({"type": kind, "payload": payload}));
        }
    }
    let mut cache = BTreeMap::new();
    for id in ids {
        let raw: Option<String> = redis.get(format!("{prefix}delivery:{id}")).await.unwrap();
        cache.insert(
            id.to_string(),
            raw.map(|r| serde_json::from_str(&r).unwrap()),
        );
    }
    Snapshot {
        orders,
        orderings,
        events,
        stream,
        cache,
    }
}

/// Two compatible-API deliveries, as its clients make them: one taken through to `completed`,
/// one left open after a budget increase; their ids once the read model holds every event.
async fn compat_deliveries(stack: &Stack) -> Vec<uuid::Uuid> {
    use delivery_workflows::TemporalTarget;
    use delivery_workflows::compat::{CompatClient, CompatCommand, CompatEventType};
    let compat = CompatClient::new(TemporalTarget::new(
        stack.client.clone(),
        stack.task_queue.clone(),
    ));
    let script: [&[(CompatEventType, Value)]; 2] = [
        &[
            (CompatEventType::StartDelivery, json!({})),
            (
                CompatEventType::PickupProducts,
                json!({"purchase_price": 10, "quantity": 3}),
            ),
            (
                CompatEventType::DeliverProducts,
                json!({"sell_price": 15, "quantity": 3}),
            ),
        ],
        &[(CompatEventType::IncreaseBudget, json!({"budget": 20}))],
    ];
    let mut ids = Vec::new();
    for events in script {
        let id = uuid::Uuid::now_v7();
        compat
            .start(&id.to_string(), json!({"budget": 100, "notes": "dr"}))
            .await
            .expect("started");
        for (n, (event_type, data)) in events.iter().enumerate() {
            let command = CompatCommand {
                event_id: format!("dr-{id}-{n}"),
                event_type: *event_type,
                data: data.clone(),
            };
            compat
                .apply(&id.to_string(), command)
                .await
                .expect("applied");
        }
        let pool = read_model().await;
        let expected = events.len() as i64;
        eventually(&format!("compat delivery {id} projected"), || async {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM compat_delivery_events WHERE delivery_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            (held == expected).then_some(())
        })
        .await;
        ids.push(id);
    }
    ids
}

/// The compatible API's read model of `ids`: each delivery's row, its events, and its cached
/// status (once the outbox published it).
async fn compat_snapshot(pool: &PgPool, prefix: &str, ids: &[uuid::Uuid]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let row: Value = sqlx::query_scalar(
            "SELECT to_jsonb(d) - 'updated_at' FROM compat_deliveries d WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
        let events: Vec<Value> = sqlx::query_scalar(
            "SELECT to_jsonb(e) FROM compat_delivery_events e WHERE delivery_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        let version = row["version"].clone();
        let key = format!("{prefix}compat-delivery:{id}");
        let status = eventually(&format!("{key} cached"), || async {
            let mut redis = redis_connection().await;
            let raw: Option<String> = redis.get(&key).await.unwrap();
            raw.and_then(|r| serde_json::from_str::<Value>(&r).ok())
                .filter(|s| s["version"] == version)
        })
        .await;
        out.push(json!({"row": row, "events": events, "status": status}));
    }
    out
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits until the read model and the Redis cache of `prefix` hold the order at `view`'s
/// version (the cache is written last, so the stream then holds every event up to it).
async fn projected(pool: &PgPool, prefix: &str, view: &DeliveryOrderView) {
    let (id, version) = (view.order.delivery_order_id.as_str(), view.order.version);
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    eventually(
        &format!("{id} at version {version} in the read model"),
        || async move {
            let held: Option<i64> =
                sqlx::query_scalar("SELECT version FROM delivery_orders WHERE id = $1")
                    .bind(uuid)
                    .fetch_optional(pool)
                    .await
                    .unwrap();
            let mut redis = redis_connection().await;
            let cached: Option<String> = redis.get(format!("{prefix}delivery:{id}")).await.unwrap();
            let cached = cached.and_then(|c| serde_json::from_str::<Value>(&c).ok());
            (held == Some(version as i64) && cached.is_some_and(|c| c["version"] == version))
                .then_some(())
        },
    )
    .await
}

/// Runs `delivery-worker rebuild-read-model` against `database_url` and `prefix`, for at most
/// `limit`; its output.
async fn rebuild(stack: &Stack, database_url: &str, prefix: &str, limit: Duration) -> String {
    rebuild_with(stack, database_url, prefix, limit, &[]).await
}

/// [`rebuild`] with more settings of the command's environment.
async fn rebuild_with(
    stack: &Stack,
    database_url: &str,
    prefix: &str,
    limit: Duration,
    env: &[(&str, &str)],
) -> String {
    rebuild_command(stack, database_url, prefix, limit, env, &[]).await
}

/// `delivery-worker rebuild-read-model <args>`, with `env` besides the stack's settings.
async fn rebuild_command(
    stack: &Stack,
    database_url: &str,
    prefix: &str,
    limit: Duration,
    env: &[(&str, &str)],
    args: &[&str],
) -> String {
    let run = tokio::process::Command::new(delivery_tests::processes::worker_binary())
        .arg("rebuild-read-model")
        .args(args)
        .envs(delivery_tests::payload_key_env())
        .env("TEMPORAL_ADDRESS", stack.temporal.url())
        .env("TASK_QUEUE", &stack.task_queue)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("REDIS_KEY_PREFIX", prefix)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("the rebuild did not finish within {limit:?}"))
        .expect("running delivery-worker rebuild-read-model");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the rebuild failed: {text}");
    text
}

/// An empty database and an empty Redis prefix, as a lost read model is replaced by: the
/// database's URL and the prefix.
async fn lost_read_model(prefix: &str) -> (String, String) {
    let url = fresh_database().await;
    (
        url,
        format!("{prefix}dr-{}:", uuid::Uuid::new_v4().simple()),
    )
}

async fn connect(database_url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await
        .unwrap()
}

/// Drops what [`lost_read_model`] made.
async fn forget(pool: PgPool, database_url: &str, prefix: &str) {
    pool.close().await;
    drop_database(database_url).await;
    let mut redis = redis_connection().await;
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    for chunk in keys.chunks(1000) {
        let _: () = redis.del(chunk).await.unwrap();
    }
}

/// An operator cancels the order before its pickup.
async fn cancel_before_pickup(order: &OrderHandle, event_id: &str) {
    apply_event(
        order,
        envelope(
            event_id,
            EventType::Cancel,
            json!({"reason": "the customer changed their mind"}),
            ActorKind::Operator,
        ),
    )
    .await
    .expect("cancelling before pickup");
}

/// Fills the order's history with signals that do not parse (each one history event, nothing
/// applied) until its workflow continues as new.
async fn continue_as_new(order: &OrderHandle) {
    futures::stream::iter(0..HISTORY_LIMIT + 100)
        .for_each_concurrent(64, |_| signal(order, "picked_up", json!("not an object")))
        .await;
    wait_for(order, "the order to continue as new", |v| v.runs > 0).await;
}

#[tokio::test]
async fn the_read_model_is_rebuilt_from_temporal_alone() {
    let stack = Stack::start().await;
    let pool = read_model().await;
    let prefix = redis_prefix().await;

    // Delivered by the partner, then confirmed by the customer.
    let (confirmed_id, confirmed) = stack.new_order().await;
    delivered(&confirmed).await;
    confirm(&confirmed, "dr-confirm").await;
    // Failed, sent to an operator, reshipped: the replacement is a new linked order.
    let (reshipped_id, reshipped) = stack.failing_order("PACKAGE_DAMAGED").await;
    pending_by_operator(&reshipped).await;
    signal(
        &reshipped,
        "operator_action",
        json!({"action": "RESHIP", "note": "send another copy"}),
    )
    .await;
    let replacement_id = DeliveryOrder::new(
        &DELIVERY_ORDER_V1,
        order_input(&reshipped_id, far_deadlines()),
        String::new(),
    )
    .reship_id();
    let replacement = handle(&stack.client, &replacement_id);
    // Cancelled before pickup, and one left open: the partner keeps silent about both.
    let (cancelled_id, cancelled) = stack.silent_order().await;
    let (open_id, open) = stack.silent_order().await;
    cancel_before_pickup(&cancelled, "dr-cancel").await;

    // The replacement, delivered, continues as new, so its latest run must hand the rebuild
    // the events applied in the first.
    wait_for(&replacement, "the replacement DELIVERED", |v| {
        v.order.state == State::Delivered
    })
    .await;
    continue_as_new(&replacement).await;

    // Every order at rest, and the read model (rows, cache, stream) caught up with each.
    let finals = [
        wait_for(&confirmed, "DELIVERY_CONFIRMED", |v| {
            v.order.state == State::DeliveryConfirmed
        })
        .await,
        wait_for(&reshipped, "RESHIPPED with its replacement", |v| {
            v.order.state == State::Reshipped && v.order.replaced_by_id.is_some()
        })
        .await,
        wait_for(&replacement, "the replacement DELIVERED", |v| {
            v.order.state == State::Delivered
        })
        .await,
        wait_for(&cancelled, "CANCELLED", |v| {
            v.order.state == State::Cancelled
        })
        .await,
        wait_for(&open, "open and waiting for the partner", |v| {
            v.order.state == State::Created && !v.pickup_pending
        })
        .await,
    ];
    for view in &finals {
        projected(&pool, &prefix, view).await;
    }
    let ids: Vec<uuid::Uuid> = [
        &confirmed_id,
        &reshipped_id,
        &replacement_id,
        &cancelled_id,
        &open_id,
    ]
    .iter()
    .map(|id| uuid::Uuid::parse_str(id).unwrap())
    .collect();
    let before = snapshot(&pool, &prefix, &ids).await;
    assert_eq!(before.orders.len(), 5, "{before:#?}");
    assert_eq!(before.stream.len(), 5, "every order has stream entries");
    // The compatible API's deliveries: one completed, one open.
    let compat = compat_deliveries(&stack).await;
    let compat_before = compat_snapshot(&pool, &prefix, &compat).await;
    assert_eq!(compat_before.len(), 2, "{compat_before:#?}");

    // The read model is lost: an empty database and an empty Redis prefix take its place.
    let (lost_url, lost_prefix) = lost_read_model(&prefix).await;
    let output = rebuild(&stack, &lost_url, &lost_prefix, Duration::from_secs(180)).await;
    assert!(
        output.contains("rebuild-read-model: 5 orders,")
            && output.contains(" 2 compatible-API deliveries,")
            && output.contains(" 0 failed"),
        "{output}"
    );
    let rebuilt_pool = connect(&lost_url).await;
    let after = snapshot(&rebuilt_pool, &lost_prefix, &ids).await;
    assert_eq!(after, before, "the rebuilt read model differs");
    assert_eq!(
        compat_snapshot(&rebuilt_pool, &lost_prefix, &compat).await,
        compat_before,
        "the rebuilt compatible-API deliveries differ"
    );

    // Partly damaged (audit rows of one order gone) and rebuilt again: repaired, and nothing is
    // written to the outbox or published twice.
    let outbox = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM read_model_outbox")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let rows_before = outbox(rebuilt_pool.clone()).await;
    sqlx::query("DELETE FROM delivery_order_events WHERE delivery_order_id = $1 AND seq >= 2")
        .bind(ids[0])
        .execute(&rebuilt_pool)
        .await
        .unwrap();
    let output = rebuild(&stack, &lost_url, &lost_prefix, Duration::from_secs(180)).await;
    assert!(output.contains(" 0 failed"), "{output}");
    assert_eq!(outbox(rebuilt_pool.clone()).await, rows_before);
    let again = snapshot(&rebuilt_pool, &lost_prefix, &ids).await;
    assert_eq!(again, before, "a second rebuild changed the read model");

    // Over the intact read model, where a worker's relay holds the relay lease (so the command
    // waits for that relay rather than publish itself): nothing changes either.
    let output = rebuild(
        &stack,
        database_url().await,
        &prefix,
        Duration::from_secs(180),
    )
    .await;
    assert!(output.contains(" 0 failed"), "{output}");
    assert_eq!(
        snapshot(&pool, &prefix, &ids).await,
        before,
        "a rebuild over the intact read model changed it"
    );

    forget(rebuilt_pool, &lost_url, &lost_prefix).await;
}

/// Closed orders are rebuilt with no worker polling the task queue: a completed workflow's
/// result carries the order and every applied event (of every run), and reading it is a history
/// read that needs no worker. This is the case after a blue-green release, when the old build's
/// workers are scaled to 0 while orders pinned to it are closed. A workflow whose start input was
/// refused is counted as having no order, also without a worker.
#[tokio::test]
async fn closed_orders_are_rebuilt_with_no_worker_polling() {
    let mut stack = Stack::start().await;
    let pool = read_model().await;
    let prefix = redis_prefix().await;

    // Delivered, continued as new (a flood of signals that do not parse), then confirmed: the
    // last run's result must carry the events applied in the first.
    let (long_id, long) = stack.new_order().await;
    delivered(&long).await;
    continue_as_new(&long).await;
    confirm(&long, "dr-closed-confirm").await;
    // Cancelled before pickup.
    let (cancelled_id, cancelled) = stack.silent_order().await;
    wait_for(&cancelled, "the pickup accepted", |v| !v.pickup_pending).await;
    cancel_before_pickup(&cancelled, "dr-closed-cancel").await;
    // Refused at the start: no order, so no row.
    let mut input = order_input(&new_order_id(), far_deadlines());
    input.items.clear();
    let refused = start_order(&stack.client, &stack.task_queue, input).await;

    // Every workflow closed, and the read model caught up with each order.
    for (order, state) in [
        (&long, State::DeliveryConfirmed),
        (&cancelled, State::Cancelled),
    ] {
        let view = tokio::time::timeout(
            Duration::from_secs(300),
            order.get_result(temporalio_client::WorkflowGetResultOptions::default()),
        )
        .await
        .expect("the order closes")
        .expect("the order completes");
        assert_eq!(view.order.state, state);
        projected(&pool, &prefix, &view).await;
    }
    refused
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await
        .expect_err("an order without items fails");
    let ids: Vec<uuid::Uuid> = [&long_id, &cancelled_id]
        .iter()
        .map(|id| uuid::Uuid::parse_str(id).unwrap())
        .collect();
    let before = snapshot(&pool, &prefix, &ids).await;
    assert_eq!(before.orders.len(), 2, "{before:#?}");

    // The build these orders ran on is gone: no worker polls the task queue. A query would go
    // unanswered, so a short timeout makes the command fail fast if it asked one.
    stack.worker.terminate().await;
    let (lost_url, lost_prefix) = lost_read_model(&prefix).await;
    let output = rebuild_with(
        &stack,
        &lost_url,
        &lost_prefix,
        Duration::from_secs(180),
        &[("REBUILD_QUERY_TIMEOUT_MS", "2000")],
    )
    .await;
    assert!(
        output.contains("rebuild-read-model: 2 orders,")
            && output.contains(" 1 without an order,")
            && output.contains(" 0 failed")
            && output.contains(&format!("oldest order {long_id} created ")),
        "{output}"
    );
    let rebuilt_pool = connect(&lost_url).await;
    let after = snapshot(&rebuilt_pool, &lost_prefix, &ids).await;
    assert_eq!(after, before, "the rebuilt read model differs");

    forget(rebuilt_pool, &lost_url, &lost_prefix).await;
}

/// The disaster-recovery drill behind `make dr-drill` (never in CI: it is `#[ignore]`d and takes
/// minutes): `DR_ORDERS` orders (default 10,000) created and cancelled through Temporal, the
/// cheapest whole path (a pickup requested and withdrawn, three audit entries), then rebuilt
/// into an empty database and Redis prefix by the real command. Prints how long each took; the
/// figure goes into docs/runbooks/restore.md.
#[tokio::test]
#[ignore = "the disaster-recovery drill: make dr-drill"]
async fn drill_rebuild_timing() {
    let orders: usize = std::env::var("DR_ORDERS")
        .ok()
        .map(|n| n.parse().expect("DR_ORDERS is a number"))
        .unwrap_or(10_000);
    let stack = Stack::quiet().await;
    let pool = read_model().await;
    let started = std::time::Instant::now();
    let created = futures::stream::iter(0..orders)
        .map(|n| {
            let stack = &stack;
            async move {
                let id = new_order_id();
                let order = start_order(
                    &stack.client,
                    &stack.task_queue,
                    order_input(&id, far_deadlines()),
                )
                .await;
                apply_event(
                    &order,
                    envelope(
                        &format!("drill-cancel-{n}"),
                        EventType::Cancel,
                        json!({"reason": "disaster-recovery drill"}),
                        ActorKind::Operator,
                    ),
                )
                .await
                .expect("cancelling a drill order");
                uuid::Uuid::parse_str(&id).unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    // Every order projected to its end (CANCELLED) before the read model is "lost".
    let deadline = std::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM delivery_orders WHERE id = ANY($1) AND state = 'CANCELLED'",
        )
        .bind(&created)
        .fetch_one(&pool)
        .await
        .unwrap();
        if done as usize == orders {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {orders} projected"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let create_secs = started.elapsed().as_secs_f64();
    let expected_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_order_events WHERE delivery_order_id = ANY($1)",
    )
    .bind(&created)
    .fetch_one(&pool)
    .await
    .unwrap();

    let lost_url = fresh_database().await;
    let prefix = format!(
        "{}drill-{}:",
        redis_prefix().await,
        uuid::Uuid::new_v4().simple()
    );
    let started = std::time::Instant::now();
    let output = rebuild(&stack, &lost_url, &prefix, Duration::from_secs(3600)).await;
    let rebuild_secs = started.elapsed().as_secs_f64();
    let rebuilt = PgPoolOptions::new()
        .max_connections(1)
        .connect(&lost_url)
        .await
        .unwrap();
    let rebuilt_events: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_order_events")
        .fetch_one(&rebuilt)
        .await
        .unwrap();
    let stream_len: i64 = redis_connection()
        .await
        .xlen(format!("{prefix}delivery-events"))
        .await
        .unwrap();
    rebuilt.close().await;
    drop_database(&lost_url).await;
    let summary = output
        .lines()
        .find(|l| l.starts_with("rebuild-read-model:"))
        .unwrap_or_default();
    println!(
        "dr-drill: {orders} orders created and cancelled in {create_secs:.1} s; rebuilt (process start to exit, Redis published) in {rebuild_secs:.1} s ({:.0} orders/s); audit rows {rebuilt_events} of {expected_events}; {stream_len} stream entries\n{summary}",
        orders as f64 / rebuild_secs
    );
    assert_eq!(rebuilt_events, expected_events);
    let mut redis = redis_connection().await;
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    for chunk in keys.chunks(1000) {
        let _: () = redis.del(chunk).await.unwrap();
    }
}

/// `rebuild-read-model --since T` (the restore runbook's step after a point-in-time recovery)
/// writes the orders still open or closed at or after T, and leaves out those closed before.
#[tokio::test]
async fn a_rebuild_since_a_time_writes_only_what_was_open_or_closed_after_it() {
    let stack = Stack::start().await;
    let prefix = redis_prefix().await;
    async fn closed(order: &OrderHandle) {
        tokio::time::timeout(
            Duration::from_secs(120),
            order.get_result(temporalio_client::WorkflowGetResultOptions::default()),
        )
        .await
        .expect("the order closes")
        .expect("the order completes");
    }
    let (early_id, early) = stack.silent_order().await;
    wait_for(&early, "the pickup accepted", |v| !v.pickup_pending).await;
    cancel_before_pickup(&early, "since-early").await;
    closed(&early).await;
    // Visibility keeps close times to the second or finer; the cut falls between the two.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (open_id, open) = stack.silent_order().await;
    let (late_id, late) = stack.silent_order().await;
    for order in [&open, &late] {
        wait_for(order, "the pickup accepted", |v| !v.pickup_pending).await;
    }
    cancel_before_pickup(&late, "since-late").await;
    closed(&late).await;

    let (lost_url, lost_prefix) = lost_read_model(&prefix).await;
    let output = rebuild_command(
        &stack,
        &lost_url,
        &lost_prefix,
        Duration::from_secs(180),
        &[],
        &["--since", &cut],
    )
    .await;
    assert!(
        output.contains("rebuild-read-model: 2 orders,") && output.contains(" 0 failed"),
        "{output}"
    );
    let pool = connect(&lost_url).await;
    let rebuilt: Vec<(String, String)> =
        sqlx::query_as("SELECT id::text, state FROM delivery_orders ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut expected = vec![
        (open_id.clone(), "CREATED".to_owned()),
        (late_id.clone(), "CANCELLED".to_owned()),
    ];
    expected.sort();
    assert_eq!(rebuilt, expected, "not {early_id}, closed before {cut}");
    forget(pool, &lost_url, &lost_prefix).await;
}
