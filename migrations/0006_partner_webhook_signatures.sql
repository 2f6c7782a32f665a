-- Partner webhook signatures the gateway accepted, so a captured callback cannot be replayed
-- while its timestamp is still within the tolerance. Rows older than the tolerance are useless
-- (such a signature is refused as stale) and are deleted as new ones arrive.
CREATE TABLE partner_webhook_signatures (
    partner_id TEXT NOT NULL,
    mac BYTEA NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partner_id, mac)
);
CREATE INDEX partner_webhook_signatures_signed_at ON partner_webhook_signatures (signed_at);
