//! Statuses of the compatible API's deliveries: from the Redis cache, else rebuilt by replaying
//! the events the projection stored ([`crate::ReadModelWriter::project_compat`]).

use std::time::Duration;

use delivery_workflows::compat::{CompatDelivery, CompatEvent};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::reader::ReadModel;
use crate::relay::SET_IF_NEWER;

const CACHE_TIMEOUT: Duration = Duration::from_millis(250);

impl ReadModel {
    /// A delivery's status: the cached one, else the replay of its stored events (then cached).
    /// `None` for a delivery the read model does not know.
    pub async fn compat_delivery(&self, id: Uuid) -> anyhow::Result<Option<CompatDelivery>> {
        let mut redis = self.redis.clone();
        let command = redis::cmd("GET")
            .arg(self.keys.compat_status(&id.to_string()))
            .to_owned();
        let get = command.query_async::<Option<String>>(&mut redis);
        if let Ok(Ok(Some(text))) = tokio::time::timeout(CACHE_TIMEOUT, get).await
            && let Ok(delivery) = serde_json::from_str::<CompatDelivery>(&text)
        {
            return Ok(Some(delivery));
        }
        let Some(delivery) = self.replay_compat(id).await? else {
            return Ok(None);
        };
        self.cache_compat(&delivery).await;
        Ok(Some(delivery))
    }

    /// Replays the stored events.
    async fn replay_compat(&self, id: Uuid) -> anyhow::Result<Option<CompatDelivery>> {
        let created: Option<sqlx::types::Json<Value>> =
            sqlx::query_scalar("SELECT created FROM compat_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(created) = created else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT seq, event_id, type, data::text AS data, occurred_at::text AS occurred_at
             FROM compat_delivery_events WHERE delivery_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(CompatEvent {
                seq: row.get::<i64, _>("seq") as u64,
                event_id: row.get("event_id"),
                event_type: serde_json::from_value(Value::String(row.get("type")))?,
                data: serde_json::from_str(row.get("data"))?,
                occurred_at: row.get("occurred_at"),
            });
        }
        Ok(Some(CompatDelivery::replay(
            &id.to_string(),
            &created.0,
            &events,
        )?))
    }

    /// Best effort: the relay writes the same status from the outbox anyway; this makes a
    /// client's next read see its own write at once. A newer cached version is kept.
    pub async fn cache_compat(&self, delivery: &CompatDelivery) {
        let script = redis::Script::new(&format!(
            "{SET_IF_NEWER}\nset_if_newer(KEYS[1], ARGV[1], ARGV[2])\nreturn 1"
        ));
        let mut invocation = script.key(self.keys.compat_status(&delivery.id));
        invocation
            .arg(serde_json::to_string(delivery).unwrap_or_default())
            .arg(delivery.version);
        let mut redis = self.redis.clone();
        let written =
            tokio::time::timeout(CACHE_TIMEOUT, invocation.invoke_async::<i64>(&mut redis)).await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::debug!(id = %delivery.id, "status cache not written; the relay will");
        }
    }
}
