//! The read-model projection: one PostgreSQL transaction per projection, idempotent on
//! `(delivery_order_id, seq)` and guarded by `version`, so retries and replays change nothing and
//! an older snapshot never overwrites a newer one.

use std::sync::Arc;

use delivery_workflows::EventType;
use delivery_workflows::activities::{ProjectEvents, Projection, ProjectionOutcome};
use sqlx::PgPool;
use sqlx::types::Json;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

use crate::metrics::ProjectionMetrics;
use crate::outbox::{self, OutboxRow};

/// PostgreSQL notification channel that wakes the outbox relay.
pub const OUTBOX_CHANNEL: &str = "read_model_outbox";

/// The outbox rows of one projection: one domain event per applied event (plus `DeliveryCreated`
/// for the first version), then the order's status at this version. The status goes last, so once
/// the cache or a live update shows version N, the stream already holds every event up to N.
fn outbox_rows(p: &Projection) -> Vec<(String, &'static str, serde_json::Value)> {
    // The whole row as the read model holds it (tracking data apart), so a read served from the
    // cache answers exactly what PostgreSQL would.
    let status = serde_json::json!({
        "delivery_order_id": p.delivery_order_id,
        "ordering_id": p.ordering_id,
        "customer_id": p.customer_id,
        "payment_id": p.payment_id,
        "state": p.state,
        "version": p.version,
        "partner_order_number": p.partner_order_number,
        "failure_reason": p.failure_reason,
        "failure_detail": p.failure_detail,
        "replaces_id": p.replaces_id,
        "replaced_by_id": p.replaced_by_id,
        "shipping_address": p.shipping_address,
        "items": p.items,
        "notes": p.notes,
        "budget": p.budget,
        "driver": p.driver,
        "eta": p.eta,
        "graph_version": p.graph_version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    });
    let mut rows = Vec::with_capacity(p.events.len() + 2);
    let domain = |name: &str, event: Option<&delivery_workflows::AppliedEvent>| {
        serde_json::json!({
            "type": name,
            "delivery_order_id": p.delivery_order_id,
            "ordering_id": p.ordering_id,
            "customer_id": p.customer_id,
            "event_id": event.map(|e| e.event_id.clone()),
            "seq": event.map_or(0, |e| e.seq),
            "to_state": event.map_or(p.state, |e| e.to_state),
            "data": event.map(|e| e.data.clone()),
            "correlation_id": event.and_then(|e| e.correlation_id.clone()),
            "occurred_at": event.map_or(p.created_at.clone(), |e| e.occurred_at.clone()),
            "refund_needed": event.is_some_and(|e| e.event_type == EventType::OperatorCancel),
        })
    };
    if p.version == 0 || p.events.first().is_some_and(|e| e.seq == 1) {
        rows.push((
            format!("created:{}", p.delivery_order_id),
            "domain_event",
            domain("DeliveryCreated", None),
        ));
    }
    for event in &p.events {
        let name = match event.event_type {
            EventType::PickedUp => "DeliveryPickedUp",
            EventType::Delivered => "DeliveryDelivered",
            EventType::DeliveryFailed => "DeliveryFailed",
            EventType::EscalateToOperator => "DeliveryNeedsOperator",
            EventType::Confirmed | EventType::OperatorConfirmDelivered => "DeliveryConfirmed",
            EventType::Disputed => "DeliveryDisputed",
            EventType::Cancel | EventType::OperatorCancel => "DeliveryCancelled",
            EventType::OperatorReship => "DeliveryReshipped",
        };
        rows.push((
            // Event ids are unique per delivery order only.
            format!("event:{}:{}", p.delivery_order_id, event.event_id),
            "domain_event",
            domain(name, Some(event)),
        ));
    }
    rows.push((
        format!("status:{}:{}", p.delivery_order_id, p.version),
        "status",
        status,
    ));
    rows
}

/// The sqlx migrations of the read model, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub struct ReadModelActivities {
    pool: PgPool,
    metrics: Option<ProjectionMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("{field} is not a UUID: {value:?}")]
    BadId { field: &'static str, value: String },
    #[error("writing the read model failed: {0}")]
    Database(#[from] sqlx::Error),
}

fn uuid(field: &'static str, value: &str) -> Result<uuid::Uuid, ProjectionError> {
    uuid::Uuid::parse_str(value).map_err(|_| ProjectionError::BadId {
        field,
        value: value.to_owned(),
    })
}

impl ReadModelActivities {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            metrics: None,
        }
    }

    /// Records projection lag and failures in `metrics`.
    pub fn with_metrics(mut self, metrics: ProjectionMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Applies one projection in a single transaction.
    pub async fn project(&self, p: &Projection) -> Result<ProjectionOutcome, ProjectionError> {
        let id = uuid("delivery_order_id", &p.delivery_order_id)?;
        let replaces = p
            .replaces_id
            .as_deref()
            .map(|v| uuid("replaces_id", v))
            .transpose()?;
        let replaced_by = p
            .replaced_by_id
            .as_deref()
            .map(|v| uuid("replaced_by_id", v))
            .transpose()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO orderings (ordering_id, customer_id, payment_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz)
             ON CONFLICT (ordering_id) DO UPDATE SET updated_at = GREATEST(orderings.updated_at, EXCLUDED.updated_at)",
        )
        .bind(&p.ordering_id)
        .bind(&p.customer_id)
        .bind(&p.payment_id)
        .bind(&p.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO delivery_orders (id, ordering_id, customer_id, payment_id, state, version,
                 partner_order_number, failure_reason, failure_detail, replaces_id, replaced_by_id,
                 shipping_address, items, notes, budget, driver, eta, graph_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::timestamptz, $18,
                     $19::timestamptz, $20::timestamptz)
             ON CONFLICT (id) DO UPDATE SET
                 state = EXCLUDED.state, version = EXCLUDED.version,
                 partner_order_number = EXCLUDED.partner_order_number,
                 failure_reason = EXCLUDED.failure_reason, failure_detail = EXCLUDED.failure_detail,
                 replaced_by_id = EXCLUDED.replaced_by_id, driver = EXCLUDED.driver, eta = EXCLUDED.eta,
                 updated_at = EXCLUDED.updated_at
             WHERE delivery_orders.version < EXCLUDED.version",
        )
        .bind(id)
        .bind(&p.ordering_id)
        .bind(&p.customer_id)
        .bind(&p.payment_id)
        .bind(p.state.as_str())
        .bind(p.version as i64)
        .bind(&p.partner_order_number)
        .bind(p.failure_reason.map(|r| r.as_str()))
        .bind(&p.failure_detail)
        .bind(replaces)
        .bind(replaced_by)
        .bind(Json(&p.shipping_address))
        .bind(Json(&p.items))
        .bind(&p.notes)
        .bind(p.budget.map(|b| b as i64))
        .bind(p.driver.as_ref().map(Json))
        .bind(&p.eta)
        .bind(p.graph_version as i32)
        .bind(&p.created_at)
        .bind(&p.updated_at)
        .execute(&mut *tx)
        .await?;
        for e in &p.events {
            sqlx::query(
                "INSERT INTO delivery_order_events (delivery_order_id, seq, event_id, type, from_state, to_state,
                     data, actor_kind, actor_id, correlation_id, occurred_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::timestamptz)
                 ON CONFLICT (delivery_order_id, seq) DO NOTHING",
            )
            .bind(id)
            .bind(e.seq as i64)
            .bind(&e.event_id)
            .bind(e.event_type.as_str())
            .bind(e.from_state.as_str())
            .bind(e.to_state.as_str())
            .bind(Json(&e.data))
            .bind(e.actor.kind.as_str())
            .bind(&e.actor.id)
            .bind(&e.correlation_id)
            .bind(&e.occurred_at)
            .execute(&mut *tx)
            .await?;
        }
        let rows: Vec<OutboxRow> = outbox_rows(p)
            .into_iter()
            .map(|(dedup_key, kind, payload)| OutboxRow {
                dedup_key,
                delivery_order_id: id,
                version: p.version as i64,
                kind,
                payload,
            })
            .collect();
        outbox::enqueue(&mut tx, rows).await?;
        tx.commit().await?;
        if let Some(metrics) = &self.metrics {
            let now = chrono::Utc::now();
            for event in &p.events {
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&event.occurred_at) {
                    let lag = (now - at.with_timezone(&chrono::Utc)).num_microseconds();
                    metrics.lag.observe(lag.unwrap_or(0).max(0) as f64 / 1e6);
                }
                let reason = event.data.get("reason").and_then(|r| r.as_str());
                metrics
                    .transitions
                    .with_label_values(&[
                        event.event_type.as_str(),
                        event.to_state.as_str(),
                        reason
                            .filter(|_| event.event_type == EventType::DeliveryFailed)
                            .unwrap_or(""),
                    ])
                    .inc();
            }
        }
        Ok(ProjectionOutcome { version: p.version })
    }
}

#[activities]
impl ReadModelActivities {
    /// Projects a delivery order's new state and events. Database errors are retried by the
    /// activity's retry policy until PostgreSQL is back; nothing is lost meanwhile because the
    /// workflow keeps the events and resends everything after the last confirmed version.
    #[activity(definition = ProjectEvents)]
    pub async fn project_events(
        self: Arc<Self>,
        ctx: ActivityContext,
        projection: Projection,
    ) -> Result<ProjectionOutcome, ActivityError> {
        let span = tracing::info_span!(
            "read model projection",
            delivery_order_id = %projection.delivery_order_id,
            version = projection.version,
            events = projection.events.len(),
            attempt = ctx.info().attempt,
        );
        async move {
            match self.project(&projection).await {
                Ok(outcome) => Ok(outcome),
                Err(error) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.failures.inc();
                    }
                    tracing::warn!(%error, "projection failed; will retry");
                    Err(error.into())
                }
            }
        }
        .instrument(span)
        .await
    }
}
