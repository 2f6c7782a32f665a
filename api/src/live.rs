//! Live updates for WebSocket clients. One Redis subscription per gateway process (the relay
//! publishes every change of the read model) fans out to every socket through a broadcast
//! channel: a slow socket only ever falls behind itself (it is told how much it missed and gets
//! a fresh snapshot), never holds up the others.

use std::sync::Arc;

use delivery_read_model::live::LiveFeed;
use delivery_read_model::{LiveMessage, ReadModel, StoredOrder, TrackingUpdate};
use poem_openapi::registry::Registry;
use poem_openapi::types::{Any, ToJSON, Type};
use poem_openapi::{Object, Union};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::auth::Parties;
use crate::model::DeliveryOrder;
use crate::read::{Audience, delivery_order};

// Not an HTTP operation, so not in the OpenAPI document's paths: `delivery-api typescript` adds
// its schemas to `web/src/types.ts` (see `socket_message_schemas`).
/// What the WebSocket endpoints send; `type` says which.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum SocketMessage {
    #[oai(mapping = "snapshot")]
    Snapshot(SnapshotMessage),
    #[oai(mapping = "update")]
    Update(UpdateMessage),
    #[oai(mapping = "tracking")]
    Tracking(TrackingMessage),
    #[oai(mapping = "resync")]
    Resync(ResyncMessage),
}

/// The order as `GET` shows it, when the socket opens or after a resync.
#[derive(Debug, Object)]
pub struct SnapshotMessage {
    pub delivery_order: DeliveryOrder,
}

/// A new version of the order, as `GET` shows it.
#[derive(Debug, Object)]
pub struct UpdateMessage {
    pub delivery_order: DeliveryOrder,
}

/// A location ping of the partner carrying the order.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TrackingMessage {
    pub delivery_order_id: String,
    pub customer_id: String,
    pub partner_id: Option<String>,
    /// The order's version when the ping arrived.
    pub version: u64,
    /// `lat`, `lon`, and `accuracy_m` or `destination` when the partner sent them.
    pub location: Any<Value>,
    /// RFC 3339.
    pub location_at: String,
}

/// Changes may have been missed: reread what is shown.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ResyncMessage {
    pub reason: Option<String>,
    /// How many changes this socket missed, when known.
    pub missed: Option<u64>,
}

impl SocketMessage {
    pub fn snapshot(order: &StoredOrder) -> Self {
        Self::Snapshot(SnapshotMessage {
            delivery_order: delivery_order(order, Audience::Others),
        })
    }

    pub fn resync(reason: Option<&str>, missed: Option<u64>) -> Self {
        Self::Resync(ResyncMessage {
            reason: reason.map(str::to_owned),
            missed,
        })
    }

    pub fn text(&self) -> String {
        self.to_json_string()
    }
}

impl From<TrackingUpdate> for TrackingMessage {
    fn from(update: TrackingUpdate) -> Self {
        Self {
            delivery_order_id: update.delivery_order_id,
            customer_id: update.customer_id,
            partner_id: update.partner_id,
            version: update.version,
            location: Any(update.location),
            location_at: update.location_at,
        }
    }
}

/// The schemas of [`SocketMessage`], by name, as the OpenAPI document would hold them.
pub fn socket_message_schemas() -> Value {
    let mut registry = Registry::new();
    <SocketMessage as Type>::register(&mut registry);
    serde_json::to_value(&registry.schemas).unwrap_or_default()
}

/// One change as published, with the text sockets are sent, rendered once here rather than once
/// per socket.
#[derive(Debug)]
pub struct Change {
    pub delivery_order_id: String,
    pub customer_id: String,
    /// The partner that carries the order, when known.
    pub partner_id: Option<String>,
    pub version: u64,
    /// A new version of the order (not a tracking update).
    pub is_status: bool,
    pub message: String,
}

impl Change {
    fn of(live: LiveMessage) -> Self {
        let (delivery_order_id, customer_id, partner_id, version) = (
            live.delivery_order_id().to_owned(),
            live.customer_id().to_owned(),
            live.partner_id().map(str::to_owned),
            live.version(),
        );
        let (is_status, message) = match live {
            LiveMessage::Status(order) => {
                let stored = StoredOrder {
                    order: *order,
                    location: None,
                    location_at: None,
                };
                let update = SocketMessage::Update(UpdateMessage {
                    delivery_order: delivery_order(&stored, Audience::Others),
                });
                (true, update.text())
            }
            LiveMessage::Tracking(update) => (false, SocketMessage::Tracking(update.into()).text()),
        };
        Self {
            delivery_order_id,
            customer_id,
            partner_id,
            version,
            is_status,
            message,
        }
    }
}

impl Change {
    /// Whom the changed order concerns.
    pub fn parties(&self) -> Parties<'_> {
        Parties {
            customer_id: &self.customer_id,
            partner_id: self.partner_id.as_deref(),
        }
    }
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
    /// Whether the Redis subscription stands now: while it does not, nothing is announced, and
    /// whoever waits for an announcement looks for itself.
    connected: watch::Sender<bool>,
}

impl LiveHub {
    /// Follows the read model's live updates from now on; a listener may fall `backlog`
    /// changes behind (`WS_BACKLOG`) before it is told how many it missed.
    pub fn start(read_model: &ReadModel, backlog: usize) -> Self {
        let (sender, _) = broadcast::channel(backlog.max(1));
        let (connected, _) = watch::channel(false);
        let (hub, up) = (sender.clone(), connected.clone());
        read_model.follow_live_updates(move |feed| {
            let live = match feed {
                LiveFeed::Message(message) => Live::Change(Arc::new(Change::of(message))),
                LiveFeed::Subscribed => {
                    up.send_replace(true);
                    return;
                }
                LiveFeed::Lost => {
                    up.send_replace(false);
                    return;
                }
                LiveFeed::Resubscribed => {
                    up.send_replace(true);
                    Live::Resubscribed
                }
            };
            // No receivers is fine: nobody is watching.
            let _ = hub.send(live);
        });
        Self { sender, connected }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.sender.subscribe()
    }

    /// Whether the live updates flow now, and its changes from now on.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Whether the live updates flow now (the Redis subscription stands).
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }
}
