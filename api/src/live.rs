//! Live updates for WebSocket clients. One Redis subscription per gateway process (the relay
//! publishes every change of the read model on `{prefix}delivery-updates`) fans out to every
//! socket through a broadcast channel: a slow socket only ever falls behind itself (it is told
//! how much it missed and gets a fresh snapshot), never holds up the others.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use poem_openapi::types::ToJSON;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::read::OrderRecord;

/// How many changes a socket may fall behind before it is told to resync.
const BACKLOG: usize = 1024;

/// One change as published (the read-model status document, or `{"type":"tracking",...}`),
/// with the text sockets are sent, rendered once here rather than once per socket.
#[derive(Debug)]
pub struct Change {
    pub delivery_order_id: String,
    pub customer_id: Option<String>,
    pub version: u64,
    /// A new version of the order (not a tracking update).
    pub is_status: bool,
    /// The WebSocket message: `{"type":"update","delivery_order":…}` in the shape GET answers,
    /// or the tracking document as published.
    pub message: String,
}

/// What sockets receive from the hub.
#[derive(Debug, Clone)]
pub enum Live {
    Change(Arc<Change>),
    /// The Redis subscription was lost and is back: changes may have been missed meanwhile.
    Resubscribed,
}

#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Live>,
}

impl LiveHub {
    /// Starts the subscription task; it reconnects by itself when Redis goes away.
    pub fn start(redis: redis::Client, channel: String) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        tokio::spawn(subscribe_forever(redis, channel, sender.clone()));
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.sender.subscribe()
    }

    /// Sockets listening now (for metrics and tests).
    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }
}

async fn subscribe_forever(redis: redis::Client, channel: String, sender: broadcast::Sender<Live>) {
    let mut pause = Duration::from_millis(200);
    // Set once a subscription has stood: a later one may have missed changes in between.
    let mut subscribed_before = false;
    loop {
        match redis.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    if subscribed_before {
                        tracing::info!(%channel, "live updates resubscribed");
                        let _ = sender.send(Live::Resubscribed);
                    }
                    subscribed_before = true;
                    pause = Duration::from_millis(200);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        if let Some(change) = parse(&payload) {
                            // No receivers is fine: nobody is watching.
                            let _ = sender.send(Live::Change(Arc::new(change)));
                        }
                    }
                    tracing::warn!(%channel, "live updates subscription ended; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "subscribing to live updates failed"),
            },
            Err(error) => tracing::debug!(%error, "Redis unreachable for live updates"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

fn parse(payload: &str) -> Option<Change> {
    let document: Value = serde_json::from_str(payload).ok()?;
    let is_status = document.get("type").is_none();
    let resource = is_status
        .then(|| serde_json::from_value::<OrderRecord>(document.clone()).ok())
        .flatten()
        .map(|record| json!({"type": "update", "delivery_order": record.to_resource().to_json()}));
    let message = resource.map_or_else(|| payload.to_owned(), |m| m.to_string());
    Some(Change {
        delivery_order_id: document.get("delivery_order_id")?.as_str()?.to_owned(),
        customer_id: document
            .get("customer_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        version: document.get("version").and_then(Value::as_u64).unwrap_or(0),
        is_status,
        message,
    })
}
