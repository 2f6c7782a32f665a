//! Drives an accepted pickup through its life and tells the service about each step, through the
//! configured sink: Temporal signals or signed webhooks.

use std::sync::Arc;
use std::time::Duration;

use delivery_payload_codec::Keyring;
use rand::Rng;
use serde_json::{Value, json};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, RpcOptions, UntypedSignal,
    UntypedWorkflow, WorkflowSignalOptions,
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
/// How long one call to Temporal (connecting, or a signal) may take.
const TEMPORAL_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A try that may land later: a network error, a 5xx, or a 429. `retry_after` is the service's
/// own estimate (`Retry-After`: a batch holding the order, a rate limit), which beats guessing.
#[derive(Debug)]
struct Transient {
    error: anyhow::Error,
    retry_after: Option<Duration>,
}

impl<E: Into<anyhow::Error>> From<E> for Transient {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            retry_after: None,
        }
    }
}

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
    retry_for: Duration,
}

impl Sink {
    /// A sink that keeps retrying a callback for `retry_for` before it gives it up.
    pub fn new(mode: CallbackMode, keys: Option<Arc<Keyring>>, retry_for: Duration) -> Self {
        Self {
            retry_for,
            mode,
            keys,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            temporal: Mutex::new(None),
        }
    }

    /// Delivers one callback, retrying transient failures for the sink's time budget: after the
    /// service's `Retry-After` when it gives one, else with a backoff doubling from 100 ms up to
    /// 10 s. Returns whether it landed.
    pub async fn deliver(&self, callback: &Callback) -> bool {
        let give_up_at = tokio::time::Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(100);
        for attempt in 1.. {
            let Err(failed) = self.try_deliver(callback).await else {
                if matches!(self.mode, CallbackMode::None) {
                    return true;
                }
                tracing::info!(
                    kind = callback.kind,
                    delivery_order_id = %callback.delivery_order_id,
                    attempt,
                    "callback delivered"
                );
                return true;
            };
            let wait = failed.retry_after.unwrap_or(backoff).min(MAX_WAIT);
            if tokio::time::Instant::now() + wait > give_up_at {
                tracing::error!(error = %failed.error, attempt, kind = callback.kind, "callback given up");
                return false;
            }
            tracing::warn!(error = %failed.error, attempt, wait_ms = wait.as_millis() as u64, "callback failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_WAIT);
        }
        unreachable!("the loop returns")
    }

    async fn try_deliver(&self, callback: &Callback) -> Result<(), Transient> {
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
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    return Err(Transient {
                        error: anyhow::anyhow!("webhook answered {status}"),
                        retry_after,
                    });
                }
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
                        // A server that stops answering fails this attempt (the connection is
                        // dropped and the callback retried) instead of holding it for good.
                        WorkflowSignalOptions::builder()
                            .rpc_options(
                                RpcOptions::builder().timeout(TEMPORAL_CALL_TIMEOUT).build(),
                            )
                            .build(),
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
        // Bounded like a signal: a server that accepts and never answers fails this attempt
        // (the callback is retried) rather than holding every callback behind this lock.
        let connection = tokio::time::timeout(
            TEMPORAL_CALL_TIMEOUT,
            Connection::connect(
                ConnectionOptions::new(url::Url::parse(&url)?)
                    .identity("partner-sim".to_owned())
                    .build(),
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to Temporal at {url} timed out"))??;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use poem::http::StatusCode;
    use poem::listener::{Acceptor, Listener, TcpListener};
    use poem::web::Data;
    use poem::{EndpointExt, Response, Route, Server, handler, post};

    use super::*;

    type Script = Arc<StdMutex<(Vec<(u16, Option<&'static str>)>, usize)>>;

    /// A webhook that answers each try with the next of `script` (then 200); the script's
    /// counter is how many tries came.
    async fn webhook(script: Vec<(u16, Option<&'static str>)>) -> (String, Script) {
        #[handler]
        fn hook(Data(script): Data<&Script>) -> Response {
            let mut script = script.lock().unwrap();
            let tries = script.1;
            script.1 += 1;
            let (status, retry_after) = script.0.get(tries).copied().unwrap_or((200, None));
            let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
            if let Some(seconds) = retry_after {
                response = response.header("Retry-After", seconds);
            }
            response.finish()
        }
        let script: Script = Arc::new(StdMutex::new((script, 0)));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let app = Route::new().at("/hook", post(hook)).data(script.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        (format!("http://127.0.0.1:{port}/hook"), script)
    }

    fn sink(url: String, retry_for: Duration) -> Sink {
        Sink::new(
            CallbackMode::Webhook {
                url,
                secret: "s".into(),
            },
            None,
            retry_for,
        )
    }

    fn callback() -> Callback {
        Callback {
            event_id: "e-1".into(),
            kind: "PICKED_UP",
            delivery_order_id: "o-1".into(),
            pickup_id: "p-1".into(),
            partner_order_number: None,
            data: json!({}),
        }
    }

    #[tokio::test]
    async fn a_held_or_limited_order_is_retried_after_the_services_retry_after() {
        let (url, tries) = webhook(vec![(503, Some("1")), (429, Some("1")), (502, None)]).await;
        let landed = sink(url, Duration::from_secs(30))
            .deliver(&callback())
            .await;
        assert!(landed);
        assert_eq!(
            tries.lock().unwrap().1,
            4,
            "503, 429 and 502 retried, then taken"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_a_lasting_outage_is_given_up_at_the_budget() {
        let (url, tries) = webhook(vec![(404, None)]).await;
        assert!(
            sink(url, Duration::from_secs(30))
                .deliver(&callback())
                .await
        );
        assert_eq!(
            tries.lock().unwrap().1,
            1,
            "a 4xx is an answer, not a fault"
        );

        let (url, tries) = webhook(vec![(503, Some("1")); 100]).await;
        let landed = sink(url, Duration::from_millis(2500))
            .deliver(&callback())
            .await;
        assert!(!landed);
        let tried = tries.lock().unwrap().1;
        assert!(
            (2..=3).contains(&tried),
            "one try a second for 2.5 s: {tried}"
        );
    }
}
