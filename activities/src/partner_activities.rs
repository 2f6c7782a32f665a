//! The partner activities the workflow calls (contracts in `delivery_workflows::activities`).

use std::sync::Arc;
use std::time::Duration;

use delivery_workflows::activities::{
    CancelPickup, CancelPickupOutcome, CancelPickupRequest, PickupOutcome, PickupRequest,
    RequestPickup,
};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

use crate::partner::{PartnerClient, PartnerError};

pub struct PartnerActivities {
    partner: PartnerClient,
}

impl PartnerActivities {
    pub fn new(partner: PartnerClient) -> Self {
        Self { partner }
    }
}

#[activities]
impl PartnerActivities {
    /// Asks the partner to collect the parcel. Safe to retry: the partner deduplicates on the
    /// delivery order id, so a retried attempt never books a second pickup.
    #[activity(definition = RequestPickup)]
    pub async fn request_pickup(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: PickupRequest,
    ) -> Result<PickupOutcome, ActivityError> {
        let span = tracing::info_span!(
            "partner pickup request",
            delivery_order_id = %request.delivery_order_id,
            attempt = ctx.info().attempt,
        );
        logged(span, beating(&ctx, self.partner.request_pickup(&request))).await
    }

    /// Withdraws an accepted pickup. Unknown or already finished pickups are answers, not errors.
    #[activity(definition = CancelPickup)]
    pub async fn cancel_pickup(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: CancelPickupRequest,
    ) -> Result<CancelPickupOutcome, ActivityError> {
        let span = tracing::info_span!(
            "partner pickup cancel",
            delivery_order_id = %request.delivery_order_id,
            pickup_id = %request.pickup_id,
            attempt = ctx.info().attempt,
        );
        logged(span, beating(&ctx, self.partner.cancel_pickup(&request))).await
    }
}

/// How often a partner call tells Temporal its worker is alive (the SDK sends at most one
/// heartbeat per 0.8 of the workflow's heartbeat timeout).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Runs a partner call while heartbeating, so a worker killed mid-call is noticed within the
/// workflow's heartbeat timeout and the call is asked again elsewhere under the same key.
async fn beating<T>(ctx: &ActivityContext, call: impl Future<Output = T>) -> T {
    let heartbeats = async {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            every.tick().await;
            if let Err(error) = ctx.record_heartbeat(()).await {
                tracing::warn!(%error, "recording a heartbeat");
            }
        }
    };
    tokio::select! {
        outcome = call => outcome,
        never = heartbeats => never,
    }
}

/// Runs a partner call inside its span and logs the answer once; a failed call becomes a
/// retryable activity error, logged once with its cause chain by the worker's activity failure
/// log.
async fn logged<T: std::fmt::Debug>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, PartnerError>>,
) -> Result<T, ActivityError> {
    async move {
        let outcome = call.await;
        if let Ok(outcome) = &outcome {
            tracing::info!(?outcome, "partner answered");
        }
        Ok(outcome?)
    }
    .instrument(span)
    .await
}
