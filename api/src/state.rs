//! What every request handler shares.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use delivery_read_model::ReadModel;
use delivery_workflows::DeliveryOrderClient;
use delivery_workflows::batch::EventBatchClient;
use delivery_workflows::compat::CompatClient;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::TokenKeys;
use crate::caller_slots::CallerSlots;
use crate::config::ApiConfig;
use crate::live::LiveHub;
use crate::metrics::ApiMetrics;

/// The typed clients of the workflows the gateway drives.
pub struct TemporalClients {
    pub orders: DeliveryOrderClient,
    pub compat: CompatClient,
    pub batches: EventBatchClient,
}

pub struct AppState {
    pub config: ApiConfig,
    /// Also attached to the app on their own (see `app::app`): the bearer check reads them
    /// there.
    pub tokens: Arc<TokenKeys>,
    pub orders: DeliveryOrderClient,
    pub compat: CompatClient,
    pub batches: EventBatchClient,
    pub read_model: ReadModel,
    pub metrics: ApiMetrics,
    pub limiter: DefaultKeyedRateLimiter<String>,
    pub live: LiveHub,
    /// Places for live WebSockets (`WS_MAX_PER_CALLER`, `WS_MAX_TOTAL`).
    pub sockets: Arc<CallerSlots>,
    /// Places for reads waiting for a `min_version` (`MIN_VERSION_WAITS_PER_CALLER`,
    /// `MIN_VERSION_WAITS_TOTAL`).
    pub version_waits: Arc<CallerSlots>,
}

impl AppState {
    pub fn new(
        config: ApiConfig,
        temporal: TemporalClients,
        read_model: ReadModel,
        metrics: ApiMetrics,
        live: LiveHub,
    ) -> Arc<Self> {
        let quota =
            Quota::per_second(NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN));
        Arc::new(Self {
            tokens: Arc::new(TokenKeys::with_policy(
                config.jwt_secret.expose().as_bytes(),
                config.token_policy.clone(),
            )),
            orders: temporal.orders,
            compat: temporal.compat,
            batches: temporal.batches,
            read_model,
            metrics,
            limiter: RateLimiter::keyed(quota),
            live,
            sockets: CallerSlots::new(
                "live sockets",
                config.sockets.per_caller,
                config.sockets.total,
            ),
            version_waits: CallerSlots::new(
                "reads waiting for a min_version",
                config.min_version_waits_per_caller,
                config.min_version_waits_total,
            ),
            config,
        })
    }

    /// Forgets rate-limit buckets of callers gone quiet, so the map does not grow for ever.
    pub async fn prune_rate_limits(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}
