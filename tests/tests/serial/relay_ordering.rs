//! One ordered publisher, whatever the number of workers: the outbox relay publishes only while
//! it holds the lease, another takes over when the holder dies (kill -9 included), and with two
//! workers and two gateways under a burst every order's changes reach the status cache, the
//! live-update channels and the `delivery-events` stream once each, in order. Published outbox
//! rows are pruned after the retention period; Redis dedup keys expire.
//!
//! The relay lease is one per database, and every test of this binary shares the database, so
//! the tests here run one at a time (the `serial` binary's lock).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delivery_api::auth::Role;
use delivery_read_model::relay::prune_published;
use delivery_read_model::{OutboxRelay, RedisKeys, RelaySettings};
use delivery_tests::*;

use crate::ONE_AT_A_TIME;
use futures::StreamExt;
use prometheus::IntGauge;
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;

async fn redis_manager() -> redis::aio::ConnectionManager {
    redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap()
}

async fn relay(pool: &PgPool) -> OutboxRelay {
    OutboxRelay::new(
        pool.clone(),
        redis::Client::open(redis_url()).unwrap(),
        RedisKeys {
            prefix: redis_prefix().await,
        },
    )
}

/// Adds a pending outbox row for `order` and returns its id.
async fn pending_row(pool: &PgPool, order: uuid::Uuid, dedup_key: &str, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO read_model_outbox (dedup_key, delivery_order_id, version, kind, payload)
         VALUES ($1, $2, 0, 'domain_event', $3) RETURNING id",
    )
    .bind(dedup_key)
    .bind(order)
    .bind(sqlx::types::Json(
        json!({"type": event_type, "delivery_order_id": order.to_string()}),
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The stream entries of one order: (type, payload), in stream order.
async fn stream_of(prefix: &str, id: &str) -> Vec<(String, Value)> {
    let mut redis = redis_manager().await;
    let reply: redis::streams::StreamRangeReply = redis
        .xrange_all(format!("{prefix}delivery-events"))
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .filter_map(|entry| {
            let payload: String = entry.get("payload")?;
            let value: Value = serde_json::from_str(&payload).ok()?;
            (value["delivery_order_id"] == id).then(|| {
                let kind = value["type"].as_str().unwrap_or_default().to_owned();
                (kind, value)
            })
        })
        .collect()
}

#[tokio::test]
async fn one_relay_publishes_at_a_time_and_another_takes_over_when_it_stops() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let pool = read_model().await;
    let gauges = [
        IntGauge::new("relay_a_leader", "a").unwrap(),
        IntGauge::new("relay_b_leader", "b").unwrap(),
    ];
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for gauge in &gauges {
        let (stop, stopped) = watch::channel(false);
        let relay = relay(&pool).await.with_leader_gauge(gauge.clone());
        tasks.push(Some(tokio::spawn(relay.run(stopped))));
        stops.push(stop);
    }
    let gauges_ref = &gauges;
    let leader = eventually("one relay to take the lease", || async move {
        gauges_ref.iter().position(|g| g.get() == 1)
    })
    .await;
    let other = 1 - leader;
    assert_eq!(gauges[other].get(), 0, "never two leaders");

    // A row published now goes out through the leader.
    let order = uuid::Uuid::new_v4();
    pending_row(&pool, order, &format!("lease-test:{order}:1"), "First").await;
    let prefix = redis_prefix().await;
    let (prefix_ref, id) = (&prefix, order.to_string());
    let id_ref = &id;
    eventually("the leader to publish", || async move {
        (stream_of(prefix_ref, id_ref).await.len() == 1).then_some(())
    })
    .await;

    // The leader stops; its session ends and the other takes the lease over.
    stops[leader].send(true).unwrap();
    tasks[leader].take().unwrap().await.unwrap();
    eventually("the other relay to take over", || async move {
        (gauges_ref[other].get() == 1).then_some(())
    })
    .await;
    pending_row(&pool, order, &format!("lease-test:{order}:2"), "Second").await;
    eventually("the new leader to publish", || async move {
        (stream_of(prefix_ref, id_ref).await.len() == 2).then_some(())
    })
    .await;
    let types: Vec<String> = stream_of(&prefix, &id)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(types, ["First", "Second"]);
    stops[other].send(true).unwrap();
    tasks[other].take().unwrap().await.unwrap();
}

#[tokio::test]
async fn the_relay_never_publishes_past_a_row_it_cannot_take_yet() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let pool = read_model().await;
    let prefix = redis_prefix().await;
    let order = uuid::Uuid::new_v4();
    let id = order.to_string();
    let first = pending_row(&pool, order, &format!("skip-test:{order}:1"), "First").await;
    pending_row(&pool, order, &format!("skip-test:{order}:2"), "Second").await;

    // Another session holds the first change (as a relay publishing it would).
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM read_model_outbox WHERE id = $1 FOR UPDATE")
        .bind(first)
        .execute(&mut *holder)
        .await
        .unwrap();

    let relay = relay(&pool).await;
    let draining = tokio::spawn(async move {
        let mut redis = redis_manager().await;
        relay.drain(&mut redis).await.map(|_| ())
    });
    let pool_ref = &pool;
    eventually("the relay to wait for the held row", || async move {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%FROM read_model_outbox WHERE published_at IS NULL%'",
        )
        .fetch_one(pool_ref)
        .await
        .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    assert!(
        stream_of(&prefix, &id).await.is_empty(),
        "nothing of the order may go out before its first change"
    );

    holder.commit().await.unwrap();
    draining.await.unwrap().unwrap();
    let types: Vec<String> = stream_of(&prefix, &id)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(types, ["First", "Second"], "in order, once each");
}

#[tokio::test]
async fn published_rows_are_pruned_after_the_retention_and_dedup_keys_expire() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let pool = read_model().await;
    let order = uuid::Uuid::new_v4();
    let old_published = pending_row(&pool, order, &format!("retention:{order}:old"), "Old").await;
    let fresh_published =
        pending_row(&pool, order, &format!("retention:{order}:fresh"), "Fresh").await;
    let old_pending =
        pending_row(&pool, order, &format!("retention:{order}:pending"), "Late").await;
    sqlx::query(
        "UPDATE read_model_outbox SET created_at = now() - interval '2 days',
             published_at = now() - interval '2 days' WHERE id = $1",
    )
    .bind(old_published)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE read_model_outbox SET published_at = now() WHERE id = $1")
        .bind(fresh_published)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE read_model_outbox SET created_at = now() - interval '2 days' WHERE id = $1",
    )
    .bind(old_pending)
    .execute(&pool)
    .await
    .unwrap();

    let pruned = prune_published(&pool, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert!(pruned >= 1, "{pruned}");
    let left: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM read_model_outbox WHERE delivery_order_id = $1 ORDER BY id",
    )
    .bind(order)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [fresh_published, old_pending],
        "only published rows older than the retention go; a pending row is never dropped"
    );

    // The pending row goes out with a dedup key that expires.
    let ttl = Duration::from_secs(120);
    let relay = relay(&pool).await.with_settings(RelaySettings {
        retention: ttl,
        dedup_ttl: ttl,
    });
    relay.drain(&mut redis_manager().await).await.unwrap();
    let keys = RedisKeys {
        prefix: redis_prefix().await,
    };
    let remaining: i64 = redis_manager()
        .await
        .ttl(keys.dedup(&format!("retention:{order}:pending")))
        .await
        .unwrap();
    assert!(
        remaining > 0 && remaining <= 120,
        "dedup key TTL {remaining}"
    );
}

/// Every message on `{prefix}delivery-updates`, collected in the background.
struct ChannelLog {
    messages: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChannelLog {
    async fn subscribe(prefix: &str) -> Self {
        let mut pubsub = redis::Client::open(redis_url())
            .unwrap()
            .get_async_pubsub()
            .await
            .unwrap();
        pubsub
            .subscribe(format!("{prefix}delivery-updates"))
            .await
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(message) = stream.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                if let Ok(value) = serde_json::from_str::<Value>(&payload) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Self { messages, task }
    }

    /// The status versions published for `id`, in arrival order (tracking pings left out).
    fn status_versions(&self, id: &str) -> Vec<u64> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["delivery_order_id"] == id && m["type"] != "tracking")
            .filter_map(|m| m["version"].as_u64())
            .collect()
    }
}

impl Drop for ChannelLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The versions each order's projections wrote a status for, in outbox order.
async fn projected_status_versions(pool: &PgPool, id: &str) -> Vec<u64> {
    sqlx::query_scalar::<_, i64>(
        "SELECT version FROM read_model_outbox
         WHERE delivery_order_id = $1::uuid AND kind = 'status' ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|v| v as u64)
    .collect()
}

async fn cached_version(prefix: &str, id: &str) -> Option<u64> {
    let raw: Option<String> = redis_manager()
        .await
        .get(format!("{prefix}delivery:{id}"))
        .await
        .unwrap();
    raw.and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|v| v["version"].as_u64())
}

async fn leader_flag(worker: &WorkerProcess) -> Option<bool> {
    let text = reqwest::get(&worker.metrics_url)
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("delivery_worker_outbox_relay_leader "))
        .map(|l| l.ends_with(" 1"))
}

/// Two workers and two gateways on one task queue, database and Redis prefix.
struct TwoOfEach {
    stack: Stack,
    second_worker: WorkerProcess,
    second_gateway: GatewayProcess,
}

impl TwoOfEach {
    async fn start() -> Self {
        let stack = Stack::start_with(StackOptions::default().with_gateway()).await;
        let second_worker =
            WorkerProcess::start(stack.temporal, &stack.task_queue, &stack.sim.url, &[]).await;
        let second_gateway =
            GatewayProcess::start(stack.temporal, &stack.task_queue, free_port(), &[]).await;
        Self {
            stack,
            second_worker,
            second_gateway,
        }
    }

    fn gateway(&self, n: usize) -> &GatewayProcess {
        if n.is_multiple_of(2) {
            self.stack.api()
        } else {
            &self.second_gateway
        }
    }

    /// `count` paid orders, created through both gateways at once.
    async fn pay(&self, count: usize) -> Vec<(String, String)> {
        futures::future::join_all((0..count).map(|n| async move {
            let customer = format!("cust-burst-{n}");
            let (id, _) = self.gateway(n).pay(&customer).await;
            (id, customer)
        }))
        .await
    }

    async fn wait_state(&self, orders: &[(String, String)], state: &str) {
        let operator = self.stack.api().token("olga", &[Role::Operator]);
        for (id, _) in orders {
            let (api, operator, id) = (self.stack.api(), &operator, id);
            eventually(&format!("{id} {state} in the read model"), || async move {
                let read = api
                    .get(&format!("/api/v1/delivery-orders/{id}"), operator)
                    .await;
                (read.json["state"] == state).then_some(())
            })
            .await;
        }
    }

    /// Customers confirm receipt, through both gateways at once. A 503 (the workflow engine
    /// did not answer in time, e.g. while a killed worker's tasks move to another) is retried
    /// with the same event id, as the problem says.
    async fn confirm(&self, orders: &[(String, String)]) {
        futures::future::join_all(orders.iter().enumerate().map(|(n, (id, customer))| {
            let api = self.gateway(n);
            let token = api.token(customer, &[Role::Customer]);
            async move {
                let (api, token) = (api, &token);
                eventually(&format!("{id} confirmed"), || async move {
                    let answer = api
                        .post(
                            &format!("/api/v1/delivery-orders/{id}/events"),
                            token,
                            &json!({"type": "CONFIRMED", "data": {}, "event_id": format!("confirm-{id}")}),
                        )
                        .await;
                    if answer.status == 503 {
                        return None;
                    }
                    assert_eq!(answer.status, 200, "{}", answer.text);
                    Some(())
                })
                .await;
            }
        }))
        .await;
    }

    /// Every order's changes reached the cache, the channels and the stream once each, in order.
    async fn assert_published_once_in_order(
        &self,
        orders: &[(String, String)],
        channel: &ChannelLog,
    ) {
        let pool = read_model().await;
        let prefix = &self.stack.worker.redis_prefix;
        let mut report = BTreeMap::new();
        for (id, _) in orders {
            let expected = projected_status_versions(&pool, id).await;
            let last = *expected.last().expect("projected");
            assert_eq!(last, 3, "{id}: picked up, delivered, confirmed");
            eventually(&format!("{id} at version 3 in the cache"), || async move {
                (cached_version(prefix, id).await == Some(3)).then_some(())
            })
            .await;
            let stream = eventually(
                &format!("{id}'s confirmation on the stream"),
                || async move {
                    let entries = stream_of(prefix, id).await;
                    entries
                        .iter()
                        .any(|e| e.0 == "DeliveryConfirmed")
                        .then_some(entries)
                },
            )
            .await;
            let seqs: Vec<u64> = stream.iter().filter_map(|e| e.1["seq"].as_u64()).collect();
            assert_eq!(seqs, [0, 1, 2, 3], "{id}: the stream, once each, in order");
            let types: Vec<&str> = stream.iter().map(|e| e.0.as_str()).collect();
            assert_eq!(
                types,
                [
                    "DeliveryCreated",
                    "DeliveryPickedUp",
                    "DeliveryDelivered",
                    "DeliveryConfirmed"
                ],
                "{id}"
            );
            let channel_ref = channel;
            eventually(
                &format!("{id}'s last status on the channel"),
                || async move {
                    channel_ref
                        .status_versions(id)
                        .contains(&last)
                        .then_some(())
                },
            )
            .await;
            assert_eq!(
                channel.status_versions(id),
                expected,
                "{id}: every projected version on the channel once, in order"
            );
            report.insert(id.clone(), expected);
        }
        assert_eq!(report.len(), orders.len());
    }
}

const BURST: usize = 24;

#[tokio::test]
async fn two_workers_and_two_gateways_publish_every_orders_changes_once_in_order() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let two = TwoOfEach::start().await;
    let channel = ChannelLog::subscribe(&two.stack.worker.redis_prefix).await;
    let (first, second) = (&two.stack.worker, &two.second_worker);
    eventually("exactly one worker to publish", || async move {
        match (leader_flag(first).await?, leader_flag(second).await?) {
            (true, false) | (false, true) => Some(()),
            _ => None,
        }
    })
    .await;

    let orders = two.pay(BURST).await;
    two.wait_state(&orders, "DELIVERED").await;
    two.confirm(&orders).await;
    two.wait_state(&orders, "DELIVERY_CONFIRMED").await;
    two.assert_published_once_in_order(&orders, &channel).await;
}

#[tokio::test]
async fn the_relay_holder_killed_hard_is_replaced_and_nothing_is_lost_or_reordered() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut two = TwoOfEach::start().await;
    let channel = ChannelLog::subscribe(&two.stack.worker.redis_prefix).await;
    let (first, second) = (&two.stack.worker, &two.second_worker);
    let first_leads = eventually("one worker to hold the relay lease", || async move {
        match (leader_flag(first).await?, leader_flag(second).await?) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;

    let orders = two.pay(BURST).await;
    two.wait_state(&orders, "DELIVERED").await;
    let (early, late) = orders.split_at(BURST / 2);
    two.confirm(early).await;
    // The holder dies while those confirmations are being projected and published.
    let survivor = if first_leads {
        two.stack.worker.kill_hard();
        &two.second_worker
    } else {
        two.second_worker.kill_hard();
        &two.stack.worker
    };
    two.confirm(late).await;
    eventually(
        "the surviving worker to take the lease over",
        || async move { leader_flag(survivor).await.filter(|leads| *leads) },
    )
    .await;
    two.wait_state(&orders, "DELIVERY_CONFIRMED").await;
    two.assert_published_once_in_order(&orders, &channel).await;
}
