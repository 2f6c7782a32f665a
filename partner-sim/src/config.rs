//! Simulator configuration: fixed settings read at start-up, and knobs that `PUT /_sim/config`
//! may change while it runs.

use std::sync::Arc;
use std::time::Duration;

use delivery_payload_codec::Keyring;
use serde::{Deserialize, Serialize};

/// Where callbacks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackMode {
    /// Signals to `delivery-order-{id}` on Temporal (adapter used until the gateway exists).
    Temporal { address: String, namespace: String },
    /// HMAC-signed POSTs to a URL.
    Webhook { url: String, secret: String },
    /// Keep callbacks to itself (API-only tests).
    None,
}

/// Behaviour that can change at runtime. Every field is optional in `PUT /_sim/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    /// Milliseconds from an accepted pickup to the PICKED_UP callback.
    pub pickup_delay_ms: u64,
    /// Milliseconds from PICKED_UP to the final DELIVERED / DELIVERY_FAILED callback.
    pub delivery_delay_ms: u64,
    /// Milliseconds between location pings while on the way (0: no pings).
    pub ping_interval_ms: u64,
    /// Share of deliveries that end in DELIVERY_FAILED (0.0–1.0).
    pub failure_rate: f64,
    /// Share of partner API requests answered 503 (0.0–1.0).
    pub error_rate: f64,
    /// Milliseconds added to every partner API answer.
    pub latency_ms: u64,
    /// Drive accepted pickups through pickup, pings and delivery by itself.
    pub auto_progress: bool,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub bind: String,
    /// 0 picks a free port.
    pub port: u16,
    pub callbacks: CallbackMode,
    pub knobs: Knobs,
    /// In `temporal` mode, `PAYLOAD_ENCRYPTION_KEYS` / `PAYLOAD_ENCRYPTION_ACTIVE_KEY` (required
    /// unless `DEV_MODE=1`, as for the worker): the signals carry the driver's name and phone, so
    /// they are encrypted like every other payload. `None` in the other modes.
    pub payload_keys: Option<Arc<Keyring>>,
    /// How long one callback is retried before it is given up (`PARTNER_CALLBACK_RETRY_SECS`,
    /// default 900): longer than the longest batch hold (600 s), during which the service
    /// answers the order's callbacks 503 with `Retry-After`, as a real partner retries for long.
    pub callback_retry_for: Duration,
}

impl SimConfig {
    /// Reads `PARTNER_*` variables (see README) through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |key: &str, default: &str| {
            lookup(key)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let num = |key: &str, default: &str| -> anyhow::Result<u64> {
            get(key, default)
                .parse()
                .map_err(|_| anyhow::anyhow!("{key} must be a whole number"))
        };
        let rate = |key: &str, default: &str| -> anyhow::Result<f64> {
            let value: f64 = get(key, default)
                .parse()
                .map_err(|_| anyhow::anyhow!("{key} must be a number"))?;
            anyhow::ensure!(
                (0.0..=1.0).contains(&value),
                "{key} must be between 0 and 1"
            );
            Ok(value)
        };
        let callbacks = match get("PARTNER_CALLBACK_MODE", "temporal").as_str() {
            "temporal" => CallbackMode::Temporal {
                address: get("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
                namespace: get("TEMPORAL_NAMESPACE", "default"),
            },
            "webhook" => CallbackMode::Webhook {
                url: lookup("PARTNER_WEBHOOK_URL").ok_or_else(|| {
                    anyhow::anyhow!("PARTNER_WEBHOOK_URL is required in webhook mode")
                })?,
                // The published development secret only under DEV_MODE=1, like the gateway.
                secret: match lookup("PARTNER_WEBHOOK_SECRET") {
                    Some(secret) => secret,
                    None if matches!(lookup("DEV_MODE").as_deref(), Some("1" | "true")) => {
                        "dev-partner-secret".to_owned()
                    }
                    None => anyhow::bail!(
                        "PARTNER_WEBHOOK_SECRET is required in webhook mode (DEV_MODE=1 uses the development one)"
                    ),
                },
            },
            "none" => CallbackMode::None,
            other => anyhow::bail!(
                "PARTNER_CALLBACK_MODE must be temporal, webhook or none, got {other:?}"
            ),
        };
        let payload_keys = match callbacks {
            CallbackMode::Temporal { .. } => {
                let dev_mode = matches!(lookup("DEV_MODE").as_deref(), Some("1" | "true"));
                Some(Arc::new(
                    delivery_payload_codec::config::keyring_from_lookup(&lookup, dev_mode)?,
                ))
            }
            _ => None,
        };
        let callback_retry_for = Duration::from_secs(num("PARTNER_CALLBACK_RETRY_SECS", "900")?);
        Ok(Self {
            payload_keys,
            callback_retry_for,
            bind: get("PARTNER_SIM_BIND", "127.0.0.1"),
            port: u16::try_from(num("PARTNER_SIM_PORT", "8090")?)
                .map_err(|_| anyhow::anyhow!("PARTNER_SIM_PORT must be a port"))?,
            callbacks,
            knobs: Knobs {
                pickup_delay_ms: num("PARTNER_PICKUP_DELAY_MS", "2000")?,
                delivery_delay_ms: num("PARTNER_DELIVERY_DELAY_MS", "5000")?,
                ping_interval_ms: num("PARTNER_PING_INTERVAL_MS", "1000")?,
                failure_rate: rate("PARTNER_FAILURE_RATE", "0.01")?,
                error_rate: rate("PARTNER_ERROR_RATE", "0")?,
                latency_ms: num("PARTNER_LATENCY_MS", "0")?,
                auto_progress: get("PARTNER_AUTO_PROGRESS", "true") != "false",
            },
        })
    }

    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}
