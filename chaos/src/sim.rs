//! The partner simulator's controls (`/_sim/*`): scripted outcomes, partner-side faults, and the
//! record of every pickup it accepted.

use std::time::Duration;

use serde_json::Value;

pub(crate) struct SimControl {
    pub(crate) url: String,
    http: reqwest::Client,
}

impl SimControl {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    /// Sends a control request, tried for up to 10 s (the simulator may be restarting).
    async fn put(&self, path: &str, body: &Value) -> bool {
        for _ in 0..20 {
            let sent = self
                .http
                .put(format!("{}{path}", self.url))
                .json(body)
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }

    /// Scripts how the pickup of `delivery_order_id` goes; whether the simulator took it.
    pub(crate) async fn scenario(&self, delivery_order_id: &str, scenario: Value) -> bool {
        self.put(&format!("/_sim/scenarios/{delivery_order_id}"), &scenario)
            .await
    }

    /// Changes the simulator's knobs (`error_rate`, `latency_ms`, ...).
    pub(crate) async fn configure(&self, patch: Value) -> bool {
        self.put("/_sim/config", &patch).await
    }

    /// Every pickup the running simulator accepted.
    pub(crate) async fn pickups(&self) -> anyhow::Result<Vec<Value>> {
        let body: Value = self
            .http
            .get(format!("{}/_sim/pickups", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(body["pickups"].as_array().cloned().unwrap_or_default())
    }
}
