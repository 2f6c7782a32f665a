//! Projection of compatible-API deliveries: their events into PostgreSQL (the event store the
//! gateway replays) and their state to the Redis status cache through the outbox, in one
//! idempotent transaction.

use std::sync::Arc;

use delivery_workflows::activities::{CompatProjection, ProjectCompat, ProjectionOutcome};
use sqlx::PgPool;
use sqlx::types::Json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

use crate::outbox::{self, OutboxRow};

pub struct CompatActivities {
    pool: PgPool,
}

impl CompatActivities {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn project(&self, p: &CompatProjection) -> anyhow::Result<ProjectionOutcome> {
        let id = uuid::Uuid::parse_str(&p.delivery_id)?;
        let version = p.state.version as i64;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO compat_deliveries (id, created, created_at, version)
             VALUES ($1, $2, $3::timestamptz, $4)
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()
             WHERE compat_deliveries.version < EXCLUDED.version",
        )
        .bind(id)
        .bind(Json(&p.created))
        .bind(&p.created_at)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        for e in &p.events {
            sqlx::query(
                "INSERT INTO compat_delivery_events (delivery_id, seq, event_id, type, data, occurred_at)
                 VALUES ($1, $2, $3, $4, $5, $6::timestamptz) ON CONFLICT (delivery_id, seq) DO NOTHING",
            )
            .bind(id)
            .bind(e.seq as i64)
            .bind(&e.event_id)
            .bind(serde_json::to_value(e.event_type)?.as_str().unwrap_or_default().to_owned())
            .bind(Json(&e.data))
            .bind(&e.occurred_at)
            .execute(&mut *tx)
            .await?;
        }
        let status = OutboxRow {
            dedup_key: format!("compat:{id}:{version}"),
            delivery_order_id: id,
            version,
            kind: "compat_status",
            payload: serde_json::to_value(&p.state)?,
        };
        outbox::enqueue(&mut tx, [status]).await?;
        tx.commit().await?;
        Ok(ProjectionOutcome {
            version: p.state.version,
        })
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
            self.project(&projection).await.map_err(|error| {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "compat projection failed; will retry"
                );
                ActivityError::from(error)
            })
        }
        .instrument(span)
        .await
    }
}
