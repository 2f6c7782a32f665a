//! Starting the replacement delivery order of a reshipped one, through the typed client (so
//! every call to Temporal is bounded by the client's RPC deadline). The workflow calls this as
//! an activity retried until it lands, so a start the server refuses (the id held by another
//! workflow for a while, Temporal unavailable or too slow) is tried again.

use std::sync::Arc;

use delivery_workflows::activities::StartReplacement;
use delivery_workflows::{DeliveryOrderClient, DeliveryOrderInput, ReplacementStart};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct ReplacementActivities {
    orders: DeliveryOrderClient,
}

impl ReplacementActivities {
    /// `orders` should carry an RPC deadline below the activity's start-to-close timeout, so a
    /// call to a busy or unreachable server gives up (and the attempt retries) rather than
    /// outliving its attempt.
    pub fn new(orders: DeliveryOrderClient) -> Self {
        Self { orders }
    }
}

#[activities]
impl ReplacementActivities {
    #[activity(definition = StartReplacement)]
    pub async fn start_replacement(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: DeliveryOrderInput,
    ) -> Result<(), ActivityError> {
        let id = delivery_workflows::workflow_id(&input.delivery_order_id);
        match self.orders.start_replacement(input).await {
            Ok(ReplacementStart::Started | ReplacementStart::AlreadyStarted) => Ok(()),
            Ok(ReplacementStart::HeldBy(holder)) => Err(anyhow::anyhow!(
                "workflow id {id} is held by a {holder:?} workflow; retrying until it is free"
            )
            .into()),
            Err(error) => Err(anyhow::anyhow!("starting the replacement {id}: {error}").into()),
        }
    }
}
