//! The projection activity of compatible-API deliveries; the read model writes them
//! ([`ReadModelWriter::project_compat`]).

use std::sync::Arc;

use delivery_read_model::ReadModelWriter;
use delivery_workflows::activities::{CompatProjection, ProjectCompat, ProjectionOutcome};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

pub struct CompatActivities {
    read_model: ReadModelWriter,
}

impl CompatActivities {
    pub fn new(read_model: ReadModelWriter) -> Self {
        Self { read_model }
    }
}

#[activities]
impl CompatActivities {
    #[activity(definition = ProjectCompat)]
    pub async fn project_compat(
        self: Arc<Self>,
        ctx: ActivityContext,
        projection: CompatProjection,
    ) -> Result<ProjectionOutcome, ActivityError> {
        let span = tracing::info_span!(
            "compat projection",
            delivery_id = %projection.delivery_id,
            version = projection.state.version,
            attempt = ctx.info().attempt,
        );
        async move {
            self.read_model
                .project_compat(&projection)
                .await
                // Logged once with its cause chain by the worker's activity failure log.
                .map_err(ActivityError::from)
        }
        .instrument(span)
        .await
    }
}
