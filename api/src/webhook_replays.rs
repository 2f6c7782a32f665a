//! Replay protection for partner webhooks: a verified signature is claimed in PostgreSQL (shared
//! by all gateways) before its callback is handled, and kept until its timestamp leaves the
//! tolerance, after which the signature is refused as stale anyway. A callback that failed on our
//! side (5xx) releases its claim: the partner retries it, possibly within the same second and so
//! with the same signature, and a replay of it would only do what the partner asked. PostgreSQL
//! rather than Redis because the gateway needs it to serve anyway and a replay must stay refused
//! while Redis is down.

use std::time::Duration;

use delivery_webhook_signature::Verified;
use sqlx::PgPool;

#[derive(Clone)]
pub struct WebhookReplays {
    pool: PgPool,
    tolerance: Duration,
}

impl WebhookReplays {
    pub fn new(pool: PgPool, tolerance: Duration) -> Self {
        Self { pool, tolerance }
    }

    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Claims this signature for `partner`: true the first time, false for a replay. Forgets the
    /// signatures whose timestamps are past the tolerance on the way.
    pub async fn claim(&self, partner: &str, signature: &Verified) -> sqlx::Result<bool> {
        let inserted: Option<bool> = sqlx::query_scalar(
            "WITH forgotten AS (
                 DELETE FROM partner_webhook_signatures
                 WHERE signed_at < now() - make_interval(secs => $4)
             )
             INSERT INTO partner_webhook_signatures (partner_id, mac, signed_at)
             VALUES ($1, $2, to_timestamp($3))
             ON CONFLICT DO NOTHING
             RETURNING true",
        )
        .bind(partner)
        .bind(&signature.mac)
        .bind(signature.signed_at as f64)
        // A minute beyond the tolerance: the database's clock may differ a little from ours.
        .bind(self.tolerance.as_secs_f64() + 60.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    /// Gives a claimed signature back after its callback failed on our side.
    pub async fn release(&self, partner: &str, signature: &Verified) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM partner_webhook_signatures WHERE partner_id = $1 AND mac = $2")
            .bind(partner)
            .bind(&signature.mac)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
