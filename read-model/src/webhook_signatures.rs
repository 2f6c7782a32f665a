//! Partner webhook signatures the gateway accepted (`partner_webhook_signatures`), so a captured
//! callback cannot be replayed while its timestamp is still fresh. Kept in PostgreSQL, shared by
//! every gateway, because the gateway needs PostgreSQL to serve anyway and a replay must stay
//! refused while Redis is down. A signature is claimed before its callback is handled and given
//! back when the callback failed on our side, so the partner's retry (possibly the same bytes in
//! the same second) is taken.

use std::time::Duration;

use crate::{ReadError, ReadModel};

impl ReadModel {
    /// Claims `mac` for `partner`: true the first time, false for a replay. Forgets signatures
    /// signed more than `fresh_for` ago on the way (they are refused as stale anyway).
    pub async fn claim_webhook_signature(
        &self,
        partner: &str,
        mac: &[u8],
        signed_at_unix: u64,
        fresh_for: Duration,
    ) -> Result<bool, ReadError> {
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
        .bind(mac)
        .bind(signed_at_unix as f64)
        // A minute beyond: the database's clock may differ a little from the gateway's.
        .bind(fresh_for.as_secs_f64() + 60.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    /// Gives a claimed signature back after its callback failed on our side.
    pub async fn release_webhook_signature(
        &self,
        partner: &str,
        mac: &[u8],
    ) -> Result<(), ReadError> {
        sqlx::query("DELETE FROM partner_webhook_signatures WHERE partner_id = $1 AND mac = $2")
            .bind(partner)
            .bind(mac)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
