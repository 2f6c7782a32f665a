//! Writing one applied event into the audit log, idempotently, with the workflow as the source
//! of truth: what the workflow applied at a seq is what the log holds at that seq. What does not
//! look right is reported as an [`Anomaly`] (public as `writer::Anomaly`, what
//! [`ReadModelWriter::project`](crate::ReadModelWriter::project) returns).

use delivery_workflows::AppliedEvent;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Row};

/// An event whose id an earlier event of the same order already carries.
pub(crate) const EVENT_ID_COLLISION: &str = "event_id_collision";
/// A sequence number recorded before with different content than the workflow now reports.
pub(crate) const SEQ_CONTENT_MISMATCH: &str = "seq_content_mismatch";
/// Every anomaly kind (the metric exports each from 0).
pub(crate) const ANOMALY_KINDS: [&str; 2] = [EVENT_ID_COLLISION, SEQ_CONTENT_MISMATCH];

/// Something the projection applied although it did not look right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub seq: u64,
    pub event_id: String,
    /// `event_id_collision` or `seq_content_mismatch`.
    pub kind: &'static str,
    pub detail: serde_json::Value,
}

/// What recording one event found.
pub(crate) struct Recorded {
    /// The event was recorded now for the first time (not a replay of one recorded before).
    pub(crate) inserted: bool,
    /// The seq held other content; the workflow's replaced it.
    pub(crate) replaced: Option<Anomaly>,
    /// An event at a lower seq of the order already carries this event's id.
    pub(crate) collision: Option<Anomaly>,
}

/// Records `e` at its seq: inserted the first time, nothing on a replay with the same content,
/// replaced (and reported) when the seq holds something else, unless this projection is older
/// than what the read model holds (`stale`): a late attempt never rewrites newer history.
pub(crate) async fn record(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    e: &AppliedEvent,
    stale: bool,
) -> Result<Recorded, sqlx::Error> {
    let inserted = bind_entry(
        sqlx::query(
        "INSERT INTO delivery_order_events (delivery_order_id, seq, event_id, type, from_state, to_state,
             data, actor_kind, actor_id, correlation_id, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::timestamptz)
         ON CONFLICT (delivery_order_id, seq) DO NOTHING",
        ),
        id,
        e,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let replaced = if inserted || stale {
        None
    } else {
        replace_if_different(tx, id, e).await?
    };
    // Only the later user of an id is the anomaly: the first one recorded it rightly, and
    // replaying it must not report anything.
    let earlier: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM delivery_order_events
         WHERE delivery_order_id = $1 AND event_id = $2 AND seq < $3 ORDER BY seq",
    )
    .bind(id)
    .bind(&e.event_id)
    .bind(e.seq as i64)
    .fetch_all(&mut *tx)
    .await?;
    let collision = (!earlier.is_empty()).then(|| Anomaly {
        seq: e.seq,
        event_id: e.event_id.clone(),
        kind: EVENT_ID_COLLISION,
        detail: serde_json::json!({
            "type": e.event_type,
            "earlier_seqs": earlier,
        }),
    });
    Ok(Recorded {
        inserted,
        replaced,
        collision,
    })
}

/// A replay finds its own content at the seq. Anything else there (a reset run, a hand edit)
/// is replaced by what the workflow applied, and reported.
async fn replace_if_different(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    e: &AppliedEvent,
) -> Result<Option<Anomaly>, sqlx::Error> {
    let held = sqlx::query(
        "SELECT event_id, type, to_state FROM delivery_order_events
         WHERE delivery_order_id = $1 AND seq = $2",
    )
    .bind(id)
    .bind(e.seq as i64)
    .fetch_one(&mut *tx)
    .await?;
    let (event_id, event_type, to_state): (String, String, String) =
        (held.get(0), held.get(1), held.get(2));
    if event_id == e.event_id
        && event_type == e.event_type.as_str()
        && to_state == e.to_state.as_str()
    {
        return Ok(None);
    }
    bind_entry(
        sqlx::query(
        "UPDATE delivery_order_events SET event_id = $3, type = $4, from_state = $5, to_state = $6,
             data = $7, actor_kind = $8, actor_id = $9, correlation_id = $10, occurred_at = $11::timestamptz
         WHERE delivery_order_id = $1 AND seq = $2",
        ),
        id,
        e,
    )
    .execute(&mut *tx)
    .await?;
    Ok(Some(Anomaly {
        seq: e.seq,
        event_id: e.event_id.clone(),
        kind: SEQ_CONTENT_MISMATCH,
        detail: serde_json::json!({
            "recorded": {"event_id": event_id, "type": event_type, "to_state": to_state},
            "applied": {"event_id": e.event_id, "type": e.event_type, "to_state": e.to_state},
        }),
    }))
}

/// Binds the entry of `e` as `$1` (order) to `$11` (occurred_at), in the column order both the
/// insert and the replacement use.
fn bind_entry<'q>(
    query: Query<'q, Postgres, PgArguments>,
    id: uuid::Uuid,
    e: &'q AppliedEvent,
) -> Query<'q, Postgres, PgArguments> {
    query
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
}

/// Keeps `anomaly`; true the first time (a replayed projection finds it recorded already).
pub(crate) async fn record_anomaly(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    anomaly: &Anomaly,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO read_model_anomalies (delivery_order_id, seq, kind, event_id, detail)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(anomaly.seq as i64)
    .bind(anomaly.kind)
    .bind(&anomaly.event_id)
    .bind(Json(&anomaly.detail))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(added == 1)
}
