-- Changes of the read model still to be published to Redis: the status cache, the live-update
-- channels and the `delivery-events` stream for order management. Rows are written in the
-- projection's own transaction, so Redis receives exactly what PostgreSQL committed, in commit
-- order, and catches up by itself after a Redis outage. `dedup_key` makes a retried projection
-- add nothing; the relay's Redis script makes a re-sent row publish nothing twice.
CREATE TABLE read_model_outbox (
    id                 bigserial PRIMARY KEY,
    dedup_key          text NOT NULL UNIQUE,
    delivery_order_id  uuid NOT NULL,
    version            bigint NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('status', 'domain_event')),
    payload            jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    published_at       timestamptz
);

CREATE INDEX read_model_outbox_pending_idx ON read_model_outbox (id) WHERE published_at IS NULL;
