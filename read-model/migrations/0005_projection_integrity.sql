-- 1. An audit entry is the workflow's event at `seq` (its version): (delivery_order_id, seq) is
--    its identity. The workflow is the source of truth, so an event it applied is recorded even
--    when its id was already used by another event of the order (a caller-chosen id that equals
--    one the workflow gives its own events). A unique event id here made such a projection fail
--    and retry for ever, leaving the read model behind; the collision is now recorded in
--    `read_model_anomalies` instead.
ALTER TABLE delivery_order_events DROP CONSTRAINT delivery_order_events_order_event_id_key;
CREATE INDEX delivery_order_events_event_id_idx ON delivery_order_events (delivery_order_id, event_id);

-- 2. The audit trail starts with the creation (seq 0): it has no state before it.
ALTER TABLE delivery_order_events ALTER COLUMN from_state DROP NOT NULL;

-- 3. What the projection applied although it did not look right: an event id used twice, or a
--    seq already recorded with other content (the workflow's content replaced it).
CREATE TABLE read_model_anomalies (
    delivery_order_id  uuid NOT NULL,
    seq                bigint NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('event_id_collision', 'seq_content_mismatch')),
    event_id           text NOT NULL,
    detail             jsonb NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_order_id, seq, kind)
);

-- 4. Projections that fail with an error retrying cannot fix (bad data, a constraint). They keep
--    being retried with backoff (a fix or a repaired row heals them) but are visible here, in the
--    gateway's `/api/state` health and in the worker's metrics. Removed once the order projects.
--    The id is text: a projection can fail precisely because its id is not a UUID.
CREATE TABLE read_model_projection_failures (
    delivery_order_id  text PRIMARY KEY,
    version            bigint NOT NULL,
    error              text NOT NULL,
    attempts           bigint NOT NULL DEFAULT 1,
    first_failed_at    timestamptz NOT NULL DEFAULT now(),
    last_failed_at     timestamptz NOT NULL DEFAULT now()
);

-- 5. Retention: published outbox rows are pruned by age.
CREATE INDEX read_model_outbox_published_idx ON read_model_outbox (published_at)
    WHERE published_at IS NOT NULL;
