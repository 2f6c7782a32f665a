//! Live updates: the subscription that follows what the relay publishes on the
//! `{prefix}delivery-updates` channels. The messages are [`LiveMessage`]s, the payload of the
//! outbox's status and tracking rows (defined in [`crate::outbox`], re-exported here).

use std::time::Duration;

use futures::StreamExt;

pub use crate::outbox::{LiveMessage, TrackingUpdate};
use crate::reader::ReadModel;

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
