//! The partner activities the workflow calls (contracts in `delivery_workflows::activities`).

use std::sync::Arc;

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
        logged(span, self.partner.request_pickup(&request)).await
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
        logged(span, self.partner.cancel_pickup(&request)).await
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
