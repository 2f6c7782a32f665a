//! Redis side of the read model: status cache, live-update channels and the delivery-events
//! stream, each exactly once and in order, catching up after a Redis outage.
//!
//! The outage test needs its own worker to be the only one publishing the database's outbox
//! while its Redis is cut; any other running worker would publish the order's changes. So the
//! tests here run one at a time (the `serial` binary's lock), never beside other suites.

use delivery_tests::*;

use crate::ONE_AT_A_TIME;
use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn status(prefix: &str, id: &str) -> Option<Value> {
    let raw: Option<String> = redis()
        .await
        .get(format!("{prefix}delivery:{id}"))
        .await
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

/// The stream's domain events of one order, in stream order.
async fn stream_types(prefix: &str, id: &str) -> Vec<String> {
    let reply: redis::streams::StreamRangeReply = redis()
        .await
        .xrange_all(format!("{prefix}delivery-events"))
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .filter_map(|entry| {
            let payload: String = entry.get("payload")?;
            let value: Value = serde_json::from_str(&payload).ok()?;
            (value["delivery_order_id"] == id)
                .then(|| value["type"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

async fn wait_status_version(prefix: &str, id: &str, version: u64) -> Value {
    eventually(
        &format!("the Redis status at version {version}"),
        || async move { status(prefix, id).await.filter(|s| s["version"] == version) },
    )
    .await
}

const HAPPY: [&str; 4] = [
    "DeliveryCreated",
    "DeliveryPickedUp",
    "DeliveryDelivered",
    "DeliveryConfirmed",
];

#[tokio::test]
async fn a_delivery_reaches_the_cache_the_channels_and_the_stream_exactly_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start().await;
    let prefix = stack.worker.redis_prefix.clone();
    let mut pubsub = redis::Client::open(redis_url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub
        .subscribe(format!("{prefix}delivery-updates"))
        .await
        .unwrap();

    let (id, order) = stack.new_order().await;
    delivered(&order).await;
    confirm(&order, "r-1").await;
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();

    let cached = wait_status_version(&prefix, &id, 3).await;
    assert_eq!(cached["state"], "DELIVERY_CONFIRMED");
    let mut versions = Vec::new();
    let mut messages = pubsub.on_message();
    while versions.last() != Some(&3) {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("a live update")
            .unwrap();
        let update: Value =
            serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        if update["delivery_order_id"] == id.as_str() {
            versions.push(update["version"].as_u64().unwrap());
        }
    }
    // Two events applied while one projection is in flight share the next one, so a version may
    // be skipped (clients see the gap by `version` and resync); none repeats or goes back.
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {versions:?}"
    );
    assert_eq!(versions.last(), Some(&3));
    assert_eq!(stream_types(&prefix, &id).await, HAPPY);
}

#[tokio::test]
async fn rows_sent_again_publish_nothing_twice() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start().await;
    let prefix = stack.worker.redis_prefix.clone();
    let pool = read_model().await;
    let (id, order) = stack.new_order().await;
    delivered(&order).await;
    wait_status_version(&prefix, &id, 2).await;
    let before = stream_types(&prefix, &id).await;

    // As if the relay had crashed after Redis took the rows but before marking them.
    sqlx::query(
        "UPDATE read_model_outbox SET published_at = NULL WHERE delivery_order_id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('read_model_outbox', '')")
        .execute(&pool)
        .await
        .unwrap();
    let (pool_ref, id_ref) = (&pool, &id);
    eventually("the rows to be relayed again", || async move {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM read_model_outbox WHERE delivery_order_id = $1::uuid AND published_at IS NULL",
        )
        .bind(id_ref)
        .fetch_one(pool_ref)
        .await
        .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    assert_eq!(
        stream_types(&prefix, &id).await,
        before,
        "no duplicate on the stream"
    );
}

#[tokio::test]
async fn while_redis_is_down_postgres_gets_everything_and_redis_catches_up_after() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (proxy, proxied) = TcpProxy::in_front_of(&redis_url(), 6379).await;
    proxy.cut();
    let stack = Stack::start_with(StackOptions::quiet().worker("REDIS_URL", &proxied)).await;
    let prefix = stack.worker.redis_prefix.clone();
    let pool = read_model().await;

    let (id, order) = stack.new_order().await;
    signal(&order, "picked_up", json!({"partner_order_number": "PN-R"})).await;
    signal(&order, "delivered", json!({})).await;
    delivered(&order).await;
    confirm(&order, "rd-1").await;
    order
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();

    let version: i64 =
        sqlx::query_scalar("SELECT version FROM delivery_orders WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 3, "PostgreSQL has everything while Redis is down");
    assert_eq!(status(&prefix, &id).await, None, "nothing reached Redis");

    proxy.restore();
    let cached = wait_status_version(&prefix, &id, 3).await;
    assert_eq!(cached["state"], "DELIVERY_CONFIRMED");
    assert_eq!(
        stream_types(&prefix, &id).await,
        HAPPY,
        "caught up in order, exactly once"
    );
}
