//! Live updates: what the relay publishes on the `{prefix}delivery-updates` channels, as one
//! tagged type, and the subscription that follows them. Every message says what it is in
//! `type`; nothing is told apart by a field it lacks.

use std::time::Duration;

use delivery_workflows::activities::ProjectedOrder;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reader::ReadModel;

/// A message on the live-update channels (and the document the relay caches for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// A new version of a delivery order: its status document.
    Status(Box<ProjectedOrder>),
    /// A location ping: tracking data, not a new version.
    Tracking(TrackingUpdate),
}

/// The latest location of a delivery order, at the version it was reported in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingUpdate {
    pub delivery_order_id: String,
    pub customer_id: String,
    /// The partner that sent the ping (the order's partner). Absent from updates published
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    pub version: u64,
    pub location: Value,
    /// RFC 3339.
    pub location_at: String,
}

impl LiveMessage {
    pub fn delivery_order_id(&self) -> &str {
        match self {
            LiveMessage::Status(order) => &order.delivery_order_id,
            LiveMessage::Tracking(update) => &update.delivery_order_id,
        }
    }

    pub fn customer_id(&self) -> &str {
        match self {
            LiveMessage::Status(order) => &order.customer_id,
            LiveMessage::Tracking(update) => &update.customer_id,
        }
    }

    /// The partner that carries the order, when known.
    pub fn partner_id(&self) -> Option<&str> {
        match self {
            LiveMessage::Status(order) => order.partner_id.as_deref(),
            LiveMessage::Tracking(update) => update.partner_id.as_deref(),
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            LiveMessage::Status(order) => order.version,
            LiveMessage::Tracking(update) => update.version,
        }
    }
}

/// What following the live updates yields.
#[derive(Debug)]
pub enum LiveFeed {
    Message(LiveMessage),
    /// The first subscription stands: messages flow from now on.
    Subscribed,
    /// The subscription ended (Redis went away): nothing is announced until [`Self::Resubscribed`].
    Lost,
    /// The subscription was lost and is back: messages may have been missed meanwhile.
    Resubscribed,
}

impl ReadModel {
    /// Follows every live update for as long as the process runs, reconnecting by itself when
    /// Redis goes away, and hands each to `deliver`, with the subscription's state as it changes
    /// (subscribed, lost, back). A message that does not parse is logged and skipped.
    pub fn follow_live_updates(&self, mut deliver: impl FnMut(LiveFeed) + Send + 'static) {
        let redis = self.redis_client.clone();
        let channel = self.keys.updates();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(200);
            // Set once a subscription has stood: a later one may have missed messages between.
            let mut subscribed_before = false;
            loop {
                match redis.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            if subscribed_before {
                                tracing::info!(%channel, "live updates resubscribed");
                                deliver(LiveFeed::Resubscribed);
                            } else {
                                deliver(LiveFeed::Subscribed);
                            }
                            subscribed_before = true;
                            pause = Duration::from_millis(200);
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                let Ok(payload) = message.get_payload::<String>() else {
                                    continue;
                                };
                                match serde_json::from_str(&payload) {
                                    Ok(live) => deliver(LiveFeed::Message(live)),
                                    Err(error) => {
                                        tracing::warn!(%error, "unreadable live update skipped")
                                    }
                                }
                            }
                            tracing::warn!(%channel, "live updates subscription ended; reconnecting");
                            deliver(LiveFeed::Lost);
                        }
                        Err(error) => tracing::warn!(%error, "subscribing to live updates failed"),
                    },
                    Err(error) => tracing::debug!(%error, "Redis unreachable for live updates"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }
}
