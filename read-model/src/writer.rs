//! The read-model projection: one PostgreSQL transaction per projection, idempotent on
//! `(delivery_order_id, seq)` and guarded by `version`, so retries and replays change nothing and
//! an older snapshot never overwrites a newer one. Nothing in an event's content can make it
//! fail for ever: odd content is applied as the workflow says and recorded as an anomaly, and a
//! failure retrying cannot fix is surfaced (metric, `/api/state`, one log line).

use std::collections::BTreeSet;

use delivery_workflows::EventType;
use delivery_workflows::activities::{
    BatchRolledBack, CompatProjection, Projection, ProjectionOutcome,
};
use sqlx::PgPool;
use sqlx::types::Json;

use crate::audit;
pub use crate::audit::Anomaly;
use crate::metrics::ProjectionMetrics;
use crate::outbox::{self, LiveMessage, OutboxKind, OutboxRow};

/// The outbox rows of one projection: one domain event per applied event (plus `DeliveryCreated`
/// for the first version), then the order's status at this version. The status goes last, so once
/// the cache or a live update shows version N, the stream already holds every event up to N.
/// `reused_ids` are the seqs whose event id an earlier event of the order already carries: their
/// domain event gets a key of its own, so it is published rather than taken for the earlier one.
fn outbox_rows(
    p: &Projection,
    reused_ids: &BTreeSet<u64>,
) -> Result<Vec<(String, OutboxKind, serde_json::Value)>, serde_json::Error> {
    let o = &p.order;
    let mut rows = Vec::with_capacity(p.events.len() + 2);
    let domain = |name: &str, event: Option<&delivery_workflows::AppliedEvent>| {
        serde_json::json!({
            "type": name,
            "delivery_order_id": o.delivery_order_id,
            "ordering_id": o.ordering_id,
            "customer_id": o.customer_id,
            "event_id": event.map(|e| e.event_id.clone()),
            "seq": event.map_or(0, |e| e.seq),
            // The creation entered CREATED, whatever state the order reached by the time its
            // first projection ran (a late first projection, or a rebuild from Temporal).
            "to_state": event.map_or(delivery_workflows::State::Created, |e| e.to_state),
            "data": event.map(|e| e.data.clone()),
            "correlation_id": event.and_then(|e| e.correlation_id.clone()),
            "occurred_at": event.map_or(o.created_at.clone(), |e| e.occurred_at.clone()),
            "refund_needed": event.is_some_and(|e| e.event_type == EventType::OperatorCancel),
        })
    };
    if includes_creation(p) {
        rows.push((
            format!("created:{}", o.delivery_order_id),
            OutboxKind::DomainEvent,
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
        // Event ids are unique per delivery order only, and not even that when a caller chose
        // an id the workflow also gave one of its own events.
        let key = if reused_ids.contains(&event.seq) {
            format!(
                "event:{}:{}#{}",
                o.delivery_order_id, event.event_id, event.seq
            )
        } else {
            format!("event:{}:{}", o.delivery_order_id, event.event_id)
        };
        rows.push((key, OutboxKind::DomainEvent, domain(name, Some(event))));
    }
    // The whole row as the read model holds it (tracking data apart), so a read served from the
    // cache answers exactly what PostgreSQL would.
    rows.push((
        format!("status:{}:{}", o.delivery_order_id, o.version),
        OutboxKind::Status,
        serde_json::to_value(LiveMessage::Status(Box::new(o.clone())))?,
    ));
    Ok(rows)
}

/// Whether this projection is the order's first: it records the creation.
fn includes_creation(p: &Projection) -> bool {
    p.order.version == 0 || p.events.first().is_some_and(|e| e.seq == 1)
}

/// Writes the read model: the projections of delivery orders and of compatible-API deliveries,
/// and the domain events that only go to the stream.
#[derive(Clone)]
pub struct ReadModelWriter {
    pool: PgPool,
    metrics: Option<ProjectionMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("{field} is not a UUID: {value:?}")]
    BadId { field: &'static str, value: String },
    #[error("writing the read model failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the projection cannot be serialised: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl ProjectionError {
    /// True when retrying cannot help: the projection's data or the schema is wrong, not the
    /// connection. Such a failure is recorded and surfaced; transient ones are only retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            ProjectionError::BadId { .. } | ProjectionError::Serialize(_) => true,
            ProjectionError::Database(error) => permanent_database_error(error),
        }
    }
}

fn permanent_database_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            // SQLSTATE classes: 08 connection, 40 rollback (serialization, deadlock),
            // 53 resources, 57 operator intervention (shutdown), 58 system: transient.
            // Anything else (22 data, 23 integrity, 42 schema, ...) fails the same way again.
            let code = db.code().unwrap_or_default();
            !["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => true,
        _ => false,
    }
}

fn uuid(field: &'static str, value: &str) -> Result<uuid::Uuid, ProjectionError> {
    uuid::Uuid::parse_str(value).map_err(|_| ProjectionError::BadId {
        field,
        value: value.to_owned(),
    })
}

/// The audit entry id of an order's creation. `#` is outside the characters callers may use
/// in event ids, so no event can ever carry it.
pub fn creation_event_id(delivery_order_id: &str) -> String {
    format!("{delivery_order_id}#create")
}

impl ReadModelWriter {
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
    ///
    /// Idempotent: an audit entry is identified by `(delivery_order_id, seq)`, and a projection
    /// applied again changes nothing. The workflow is the source of truth, so an event is
    /// recorded even when its id is already used by another event of the order, and content at
    /// a seq that differs from the workflow's is replaced by it; both are recorded as anomalies
    /// (returned, and kept in `read_model_anomalies`). The row is only ever replaced by a higher
    /// version, so a late or repeated projection never takes the newer state away.
    pub async fn project(&self, projection: &Projection) -> Result<Vec<Anomaly>, ProjectionError> {
        let p = &projection.order;
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
        // An ordering's times span its orders whichever of their projections lands first (a
        // replacement's may land before the order it replaces, e.g. in a rebuild).
        sqlx::query(
            "INSERT INTO orderings (ordering_id, customer_id, payment_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz)
             ON CONFLICT (ordering_id) DO UPDATE SET
                 created_at = LEAST(orderings.created_at, EXCLUDED.created_at),
                 updated_at = GREATEST(orderings.updated_at, EXCLUDED.updated_at)",
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
                 shipping_address, items, notes, budget, driver, eta, graph_version, created_at, updated_at,
                 next_deadline_kind, next_deadline_at, stages, partner_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::timestamptz, $18,
                     $19::timestamptz, $20::timestamptz, $21, $22::timestamptz, $23, $24)
             ON CONFLICT (id) DO UPDATE SET
                 state = EXCLUDED.state, version = EXCLUDED.version,
                 partner_order_number = EXCLUDED.partner_order_number,
                 failure_reason = EXCLUDED.failure_reason, failure_detail = EXCLUDED.failure_detail,
                 replaced_by_id = EXCLUDED.replaced_by_id, driver = EXCLUDED.driver, eta = EXCLUDED.eta,
                 updated_at = EXCLUDED.updated_at,
                 next_deadline_kind = EXCLUDED.next_deadline_kind,
                 next_deadline_at = EXCLUDED.next_deadline_at,
                 stages = EXCLUDED.stages, partner_id = EXCLUDED.partner_id
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
        .bind(p.next_deadline.as_ref().map(|d| d.timer.as_str()))
        .bind(p.next_deadline.as_ref().map(|d| d.due_at.as_str()))
        .bind(p.stages.as_ref().map(Json))
        .bind(&p.partner_id)
        .execute(&mut *tx)
        .await?;
        if delivery_workflows::DELIVERY_ORDER_V1.is_terminal(p.state) {
            // The route is kept while the order travels and is looked at; an ended order's
            // pings go (the row keeps its last location).
            crate::route::prune(&mut tx, id).await?;
        }
        if includes_creation(projection) {
            record_creation(&mut tx, id, projection).await?;
        }
        let held: i64 = sqlx::query_scalar("SELECT version FROM delivery_orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let stale = (p.version as i64) < held;
        let mut anomalies = Vec::new();
        let mut reused_ids = BTreeSet::new();
        // Events recorded by this projection for the first time: a projection that runs again
        // (its retry after a crash, or the ordinary activity behind a local one that landed
        // late) finds them recorded, and counts nothing twice.
        let mut first_recorded = BTreeSet::new();
        for e in &projection.events {
            let found = audit::record(&mut tx, id, e, stale).await?;
            if found.inserted {
                first_recorded.insert(e.seq);
            }
            if let Some(anomaly) = found.replaced {
                anomalies.push(anomaly);
            }
            if let Some(anomaly) = found.collision {
                reused_ids.insert(e.seq);
                anomalies.push(anomaly);
            }
        }
        let mut new_anomalies = Vec::new();
        for anomaly in anomalies {
            if audit::record_anomaly(&mut tx, id, &anomaly).await? {
                new_anomalies.push(anomaly);
            }
        }
        let rows: Vec<OutboxRow> = outbox_rows(projection, &reused_ids)?
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
        // The order projects again: whatever failure was recorded for it is over.
        sqlx::query("DELETE FROM read_model_projection_failures WHERE delivery_order_id = $1")
            .bind(&p.delivery_order_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for anomaly in &new_anomalies {
            tracing::warn!(
                delivery_order_id = %p.delivery_order_id,
                seq = anomaly.seq,
                event_id = %anomaly.event_id,
                kind = anomaly.kind,
                detail = %anomaly.detail,
                "read model anomaly: the workflow's event was applied as it is"
            );
            if let Some(metrics) = &self.metrics {
                metrics.anomalies.with_label_values(&[anomaly.kind]).inc();
            }
        }
        if let Some(metrics) = &self.metrics {
            let now = chrono::Utc::now();
            for event in projection
                .events
                .iter()
                .filter(|e| first_recorded.contains(&e.seq))
            {
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
        Ok(new_anomalies)
    }

    /// Keeps a permanent failure where operators see it (`/api/state`). True the first time it
    /// is recorded for this order, so the caller logs it once rather than on every retry.
    pub async fn record_permanent_failure(
        &self,
        projection: &Projection,
        error: &ProjectionError,
    ) -> Result<bool, sqlx::Error> {
        let p = &projection.order;
        let attempts: i64 = sqlx::query_scalar(
            "INSERT INTO read_model_projection_failures (delivery_order_id, version, error)
             VALUES ($1, $2, $3)
             ON CONFLICT (delivery_order_id) DO UPDATE SET
                 version = EXCLUDED.version, error = EXCLUDED.error,
                 attempts = read_model_projection_failures.attempts + 1, last_failed_at = now()
             RETURNING attempts",
        )
        .bind(&p.delivery_order_id)
        .bind(p.version as i64)
        .bind(error.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(attempts == 1)
    }
}

/// The audit trail's first entry (seq 0): who created the order, from which payment.
async fn record_creation(
    tx: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    projection: &Projection,
) -> Result<(), sqlx::Error> {
    let p = &projection.order;
    let data = serde_json::json!({
        "payment_id": p.payment_id,
        "ordering_id": p.ordering_id,
        "replaces_id": p.replaces_id,
    });
    // Orders started without a creator (e.g. from the Temporal CLI) say so rather than guess.
    let (actor_kind, actor_id) = match &projection.created_by {
        Some(actor) => (actor.kind.as_str(), actor.id.clone()),
        None => ("unknown", None),
    };
    sqlx::query(
        "INSERT INTO delivery_order_events (delivery_order_id, seq, event_id, type, from_state, to_state,
             data, actor_kind, actor_id, correlation_id, occurred_at)
         VALUES ($1, 0, $2, 'CREATE', NULL, $3, $4, $5, $6, $7, $8::timestamptz)
         ON CONFLICT (delivery_order_id, seq) DO NOTHING",
    )
    .bind(id)
    .bind(creation_event_id(&p.delivery_order_id))
    .bind(delivery_workflows::State::Created.as_str())
    .bind(Json(data))
    .bind(actor_kind)
    .bind(actor_id)
    .bind(&projection.creation_correlation_id)
    .bind(&p.created_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl ReadModelWriter {
    /// What the projection activity does: applies the projection; on failure counts it, and surfaces a
    /// permanent one (recorded for `/api/state`, counted, logged once with the order id).
    pub async fn project_or_surface(
        &self,
        p: &Projection,
    ) -> Result<ProjectionOutcome, ProjectionError> {
        match self.project(p).await {
            Ok(_) => Ok(ProjectionOutcome {
                version: p.order.version,
            }),
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.failures.inc();
                }
                // A retryable failure is logged once, with its cause chain and the order, by the
                // worker's activity failure log (`activity failed`).
                if error.is_permanent() {
                    self.surface_permanent_failure(p, &error).await;
                }
                Err(error)
            }
        }
    }

    async fn surface_permanent_failure(&self, p: &Projection, error: &ProjectionError) {
        match self.record_permanent_failure(p, error).await {
            Ok(true) => {
                if let Some(metrics) = &self.metrics {
                    metrics.permanent_failures.inc();
                }
                tracing::error!(
                    delivery_order_id = %p.order.delivery_order_id,
                    version = p.order.version,
                    %error,
                    "read model projection fails permanently; the order's read model stays behind until this is fixed"
                );
            }
            Ok(false) => tracing::debug!(%error, "projection still failing"),
            Err(record_error) => tracing::error!(
                delivery_order_id = %p.order.delivery_order_id,
                version = p.order.version,
                %error,
                %record_error,
                "read model projection fails permanently, and recording that failed too"
            ),
        }
    }
}

impl ReadModelWriter {
    /// Stores a compatible-API delivery's new events (the event store its status is rebuilt
    /// from) and queues its state for the status cache, in one idempotent transaction.
    pub async fn project_compat(&self, p: &CompatProjection) -> anyhow::Result<ProjectionOutcome> {
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
            kind: OutboxKind::CompatStatus,
            payload: serde_json::to_value(&p.state)?,
        };
        outbox::enqueue(&mut tx, [status]).await?;
        tx.commit().await?;
        Ok(ProjectionOutcome {
            version: p.state.version,
        })
    }

    /// Queues `BatchRolledBack` for the `delivery-events` stream, once per batch.
    pub async fn publish_batch_rolled_back(&self, event: &BatchRolledBack) -> anyhow::Result<()> {
        let payload = serde_json::json!({
            "type": "BatchRolledBack",
            "batch_id": event.batch_id,
            "correlation_id": event.correlation_id,
            "reason": event.reason,
            "failed_event_index": event.failed_event_index,
            "delivery_order_id": event.delivery_order_id,
        });
        let mut tx = self.pool.begin().await?;
        let row = OutboxRow {
            dedup_key: format!("batch-rolled-back:{}", event.batch_id),
            delivery_order_id: uuid::Uuid::parse_str(&event.delivery_order_id).unwrap_or_default(),
            version: 0,
            kind: OutboxKind::DomainEvent,
            payload,
        };
        outbox::enqueue(&mut tx, [row]).await?;
        tx.commit().await?;
        Ok(())
    }
}
