//! Drives an accepted pickup through its life and tells the service about each step, through the
//! configured sink: Temporal signals or signed webhooks.

use std::sync::Arc;
use std::time::Duration;

use delivery_payload_codec::Keyring;
use rand::Rng;
use serde_json::{Value, json};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, UntypedSignal, UntypedWorkflow,
    WorkflowSignalOptions,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use tokio::sync::{Mutex, watch};
use tracing::Instrument;

use crate::config::CallbackMode;
use crate::state::{Outcome, PickupStatus, Scenario, SimState};

const RANDOM_FAILURES: [&str; 4] = [
    "RECIPIENT_UNAVAILABLE",
    "WRONG_ADDRESS",
    "PACKAGE_DAMAGED",
    "REFUSED_BY_RECIPIENT",
];
/// The longest wait between two tries of one callback.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// One callback as the contract describes it.
#[derive(Debug, Clone)]
pub struct Callback {
    pub event_id: String,
    pub kind: &'static str,
    pub delivery_order_id: String,
    pub pickup_id: String,
    pub partner_order_number: Option<String>,
    pub data: Value,
}

impl Callback {
    fn body(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "type": self.kind,
            "delivery_order_id": self.delivery_order_id,
            "pickup_id": self.pickup_id,
            "partner_order_number": self.partner_order_number,
            "occurred_at": now(),
            "data": self.data,
        })
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Sink {
    mode: CallbackMode,
    /// The payload codec's keys (temporal mode).
    keys: Option<Arc<Keyring>>,
    http: reqwest::Client,
    temporal: Mutex<Option<Client>>,
    attempts: u32,
}

impl Sink {
    pub fn new(mode: CallbackMode, keys: Option<Arc<Keyring>>, attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            mode,
            keys,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            temporal: Mutex::new(None),
        }
    }

    /// Delivers one callback, retrying transient failures with backoff. Returns whether it landed.
    pub async fn deliver(&self, callback: &Callback) -> bool {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=self.attempts {
            match self.try_deliver(callback).await {
                Ok(()) => return true,
                Err(error) if attempt < self.attempts => {
                    tracing::warn!(%error, attempt, "callback failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_WAIT);
                }
                Err(error) => tracing::error!(%error, "callback given up"),
            }
        }
        false
    }

    async fn try_deliver(&self, callback: &Callback) -> anyhow::Result<()> {
        match &self.mode {
            CallbackMode::None => Ok(()),
            CallbackMode::Webhook { url, secret } => {
                let body = serde_json::to_vec(&callback.body())?;
                // Signed per attempt: a retry carries a fresh timestamp, never a replayed one.
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                let signature = delivery_webhook_signature::sign(secret.as_bytes(), now, &body);
                let response = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(delivery_webhook_signature::HEADER, signature)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                anyhow::ensure!(!status.is_server_error(), "webhook answered {status}");
                if !status.is_success() {
                    // A 4xx will not improve with retries: log it and move on.
                    tracing::warn!(%status, kind = callback.kind, "webhook refused the callback");
                }
                Ok(())
            }
            CallbackMode::Temporal { address, namespace } => {
                let Some((signal, payload)) = temporal_signal(callback) else {
                    return Ok(()); // location pings are tracking data, never workflow history
                };
                let client = self.temporal_client(address, namespace).await?;
                let handle = client.get_workflow_handle::<UntypedWorkflow>(format!(
                    "delivery-order-{}",
                    callback.delivery_order_id
                ));
                let raw = RawValue::new(vec![Payload {
                    metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                    data: serde_json::to_vec(&payload)?,
                    ..Default::default()
                }]);
                let result = handle
                    .signal(
                        UntypedSignal::<UntypedWorkflow>::new(signal),
                        raw,
                        WorkflowSignalOptions::default(),
                    )
                    .await;
                if result.is_err() {
                    // Drop the connection so the next attempt reconnects.
                    *self.temporal.lock().await = None;
                }
                result?;
                Ok(())
            }
        }
    }

    async fn temporal_client(&self, address: &str, namespace: &str) -> anyhow::Result<Client> {
        let mut slot = self.temporal.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let connection = Connection::connect(
            ConnectionOptions::new(url::Url::parse(&url)?)
                .identity("partner-sim".to_owned())
                .build(),
        )
        .await?;
        let keys = self
            .keys
            .clone()
            .ok_or_else(|| anyhow::anyhow!("temporal callbacks need the payload keys"))?;
        let options = ClientOptions::new(namespace.to_owned())
            .data_converter(delivery_payload_codec::data_converter(keys))
            .build();
        let client = Client::new(connection, options)?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// The signal name and JSON payload for a callback, per docs/partner-contract.md.
fn temporal_signal(callback: &Callback) -> Option<(&'static str, Value)> {
    let mut payload = callback.data.as_object().cloned().unwrap_or_default();
    payload.insert("event_id".into(), callback.event_id.clone().into());
    let signal = match callback.kind {
        "PICKED_UP" => "picked_up",
        "DELIVERED" => "delivered",
        "DELIVERY_FAILED" => "failed",
        _ => return None,
    };
    Some((signal, Value::Object(payload)))
}

/// Runs one pickup to its end. Stops early when the pickup is cancelled or the simulator stops.
pub async fn drive(
    state: Arc<SimState>,
    sink: Arc<Sink>,
    pickup_id: String,
    scenario: Option<Scenario>,
    mut stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("drive pickup", %pickup_id);
    async move {
        let (knobs, delivery_order_id) = {
            let inner = state.lock();
            (inner.knobs.clone(), inner.pickups.get(&pickup_id).map(|p| p.delivery_order_id.clone()).unwrap_or_default())
        };
        let outcome = scenario.as_ref().map(|s| s.outcome).unwrap_or_else(|| {
            if rand::rng().random_bool(knobs.failure_rate) { Outcome::Fail } else { Outcome::Deliver }
        });
        if !sleep_or_stop(Duration::from_millis(knobs.pickup_delay_ms), &mut stop).await {
            return;
        }
        let number = format!("PN-{}", &uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase());
        let driver = json!({"name": "Sam Carter", "phone": "+44 7700 900123", "vehicle": "cargo bike"});
        let eta = (chrono::Utc::now() + chrono::Duration::milliseconds(knobs.delivery_delay_ms as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let moved = state.update_pickup(&pickup_id, |p| {
            p.status = PickupStatus::PickedUp;
            p.partner_order_number = Some(number.clone());
            p.driver = Some(driver.clone());
            p.eta = Some(eta.clone());
        });
        if !moved {
            return;
        }
        let base = Callback {
            event_id: format!("{pickup_id}:picked_up"),
            kind: "PICKED_UP",
            delivery_order_id,
            pickup_id: pickup_id.clone(),
            partner_order_number: Some(number.clone()),
            data: json!({"partner_order_number": number, "driver": driver, "eta": eta}),
        };
        send(&state, &sink, &base).await;
        if outcome == Outcome::PickupOnly {
            return;
        }

        let started = tokio::time::Instant::now();
        let total = Duration::from_millis(knobs.delivery_delay_ms);
        let mut ping = 0u32;
        // The drop-off point, as a partner geocodes the address: where the pings lead, one
        // step past the last of them.
        let steps = knobs.delivery_delay_ms.checked_div(knobs.ping_interval_ms).unwrap_or(0);
        let destination = json!({"lat": 51.5074 + (steps + 1) as f64 * 0.001, "lon": -0.1278});
        while knobs.ping_interval_ms > 0 && started.elapsed() + Duration::from_millis(knobs.ping_interval_ms) < total {
            if !sleep_or_stop(Duration::from_millis(knobs.ping_interval_ms), &mut stop).await {
                return;
            }
            ping += 1;
            let location = json!({"lat": 51.5074 + f64::from(ping) * 0.001, "lon": -0.1278});
            if !state.update_pickup(&pickup_id, |p| p.last_location = Some(location.clone())) {
                return;
            }
            let mut data = location;
            data["destination"] = destination.clone();
            let callback = Callback { event_id: format!("{pickup_id}:location:{ping}"), kind: "LOCATION", data, ..base.clone() };
            send(&state, &sink, &callback).await;
        }
        if !sleep_or_stop(total.saturating_sub(started.elapsed()), &mut stop).await {
            return;
        }

        let (kind, status, data) = if outcome == Outcome::Fail {
            let reason = scenario
                .as_ref()
                .and_then(|s| s.failure_reason.clone())
                .unwrap_or_else(|| RANDOM_FAILURES[rand::rng().random_range(0..RANDOM_FAILURES.len())].to_owned());
            let detail = scenario.as_ref().and_then(|s| s.detail.clone()).unwrap_or_else(|| "reported by the driver".into());
            ("DELIVERY_FAILED", PickupStatus::Failed, json!({"reason": reason, "detail": detail}))
        } else {
            ("DELIVERED", PickupStatus::Delivered, json!({"proof": {"signed_by": "recipient", "photo_url": format!("https://partner.example/proof/{pickup_id}.jpg")}}))
        };
        if state.update_pickup(&pickup_id, |p| p.status = status) {
            let id_suffix = if kind == "DELIVERED" { "delivered" } else { "failed" };
            let callback = Callback { event_id: format!("{pickup_id}:{id_suffix}"), kind, data, ..base };
            send(&state, &sink, &callback).await;
        }
    }
    .instrument(span)
    .await
}

async fn send(state: &SimState, sink: &Sink, callback: &Callback) {
    let landed = sink.deliver(callback).await;
    let mut inner = state.lock();
    if landed {
        inner.stats.callbacks_sent += 1;
        if let Some(p) = inner.pickups.get_mut(&callback.pickup_id) {
            p.callbacks_sent += 1;
        }
    } else {
        inner.stats.callbacks_failed += 1;
    }
}

/// Sleeps unless the simulator stops first; returns false on stop.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}
