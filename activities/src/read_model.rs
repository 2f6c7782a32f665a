//! The projection activity: the workflow hands over each new version of its order, and the read
//! model ([`ReadModelWriter`]) writes it, with its audit entries and outbox rows, in one
//! transaction.

use std::sync::Arc;

use delivery_read_model::ReadModelWriter;
use delivery_workflows::activities::{ProjectEvents, Projection, ProjectionOutcome};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

pub struct ReadModelActivities {
    read_model: ReadModelWriter,
}

impl ReadModelActivities {
    pub fn new(read_model: ReadModelWriter) -> Self {
        Self { read_model }
    }
}

#[activities]
impl ReadModelActivities {
    /// Projects a delivery order's new state and events. Failures are retried by the activity's
    /// retry policy (backing off to every 10 s) until they succeed; nothing is lost meanwhile
    /// because the workflow keeps the events and resends everything after the last confirmed
    /// version. A failure retrying cannot fix is recorded, counted and logged once with the
    /// order id, so it is seen rather than retried in silence, and heals once fixed.
    #[activity(definition = ProjectEvents)]
    pub async fn project_events(
        self: Arc<Self>,
        ctx: ActivityContext,
        projection: Projection,
    ) -> Result<ProjectionOutcome, ActivityError> {
        let span = tracing::info_span!(
            "read model projection",
            delivery_order_id = %projection.order.delivery_order_id,
            version = projection.order.version,
            events = projection.events.len(),
            attempt = ctx.info().attempt,
        );
        async move {
            self.read_model
                .project_or_surface(&projection)
                .await
                .map_err(ActivityError::from)
        }
        .instrument(span)
        .await
    }
}
