-- Read model of delivery orders (the query side). Written only by the projection activity,
-- in order of each workflow's event sequence; every statement is idempotent so a retried
-- projection changes nothing. Never edit this file once applied: add a new migration.

-- A customer's paid order. One ordering ships as one or more delivery orders (a failed delivery
-- is replaced by a new delivery order, never moved back).
CREATE TABLE orderings (
    ordering_id  text PRIMARY KEY,
    customer_id  text NOT NULL,
    payment_id   text UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE delivery_orders (
    id                    uuid PRIMARY KEY,
    ordering_id           text NOT NULL REFERENCES orderings (ordering_id),
    customer_id           text NOT NULL,
    payment_id            text,
    state                 text NOT NULL,
    -- The workflow's event counter: a row is only ever replaced by a higher version.
    version               bigint NOT NULL,
    partner_order_number  text,
    failure_reason        text,
    failure_detail        text,
    -- Links between an order and its reshipment. Not foreign keys: the two rows are written by two
    -- workflows whose projections may land in either order.
    replaces_id           uuid,
    replaced_by_id        uuid,
    shipping_address      jsonb NOT NULL,
    items                 jsonb NOT NULL,
    notes                 text,
    budget                bigint,
    driver                jsonb,
    location              jsonb,
    eta                   timestamptz,
    graph_version         integer NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

CREATE INDEX delivery_orders_ordering_idx ON delivery_orders (ordering_id, created_at);
CREATE INDEX delivery_orders_customer_idx ON delivery_orders (customer_id, created_at);
CREATE INDEX delivery_orders_state_idx ON delivery_orders (state, updated_at);

-- The audit log: every applied event of every delivery order, in order.
CREATE TABLE delivery_order_events (
    delivery_order_id  uuid NOT NULL REFERENCES delivery_orders (id),
    seq                bigint NOT NULL,
    event_id           text NOT NULL UNIQUE,
    type               text NOT NULL,
    from_state         text NOT NULL,
    to_state           text NOT NULL,
    data               jsonb NOT NULL,
    actor_kind         text NOT NULL,
    actor_id           text,
    correlation_id     text,
    occurred_at        timestamptz NOT NULL,
    PRIMARY KEY (delivery_order_id, seq)
);
