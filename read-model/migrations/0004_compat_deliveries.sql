-- Deliveries of the compatible API (the original Redis event-sourcing delivery app). Each is a
-- durable workflow; these tables are its event store on the read side: the status is served from
-- Redis and rebuilt from these events when the cache is empty.
CREATE TABLE compat_deliveries (
    id          uuid PRIMARY KEY,
    -- The CREATE_DELIVERY data ({budget, notes}): the first event of every replay.
    created     jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE compat_delivery_events (
    delivery_id  uuid NOT NULL REFERENCES compat_deliveries (id),
    seq          bigint NOT NULL,
    event_id     text NOT NULL,
    type         text NOT NULL,
    data         jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, seq),
    UNIQUE (delivery_id, event_id)
);

ALTER TABLE read_model_outbox DROP CONSTRAINT read_model_outbox_kind_check;
ALTER TABLE read_model_outbox
    ADD CONSTRAINT read_model_outbox_kind_check
    CHECK (kind IN ('status', 'domain_event', 'tracking', 'compat_status'));
