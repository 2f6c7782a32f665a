-- 1. Each order's next deadline, as its workflow arms it: the pickup deadline while CREATED, the
--    delivery deadline while PICKED_UP, the auto-confirm while DELIVERED; none in the other
--    states. Projected with every version (`ProjectedOrder::next_deadline`). Orders projected
--    before this column existed get theirs with their next projection.
ALTER TABLE delivery_orders ADD COLUMN next_deadline_kind text;
ALTER TABLE delivery_orders ADD COLUMN next_deadline_at timestamptz;
-- Orders at risk: a range scan over the deadlines that are set.
CREATE INDEX delivery_orders_next_deadline_idx ON delivery_orders (next_deadline_at, id)
    WHERE next_deadline_at IS NOT NULL;

-- 2. Search: an index behind each filter of `GET /delivery-orders`, each ending in the list's
--    order (created_at DESC, id DESC) so a filtered page is one index range read backwards.
CREATE INDEX delivery_orders_payment_idx ON delivery_orders (payment_id, created_at, id);
CREATE INDEX delivery_orders_partner_order_number_idx
    ON delivery_orders (partner_order_number, created_at, id);
CREATE INDEX delivery_orders_created_idx ON delivery_orders (created_at, id);
CREATE INDEX delivery_orders_state_created_idx ON delivery_orders (state, created_at, id);
CREATE INDEX delivery_orders_customer_created_idx ON delivery_orders (customer_id, created_at, id);
CREATE INDEX delivery_orders_ordering_created_idx ON delivery_orders (ordering_id, created_at, id);
-- Superseded by the two above (the same columns, and the id that breaks ties in page order).
DROP INDEX delivery_orders_customer_idx;
DROP INDEX delivery_orders_ordering_idx;

-- 3. The operations charts read the audit trail of the last 24 hours.
CREATE INDEX delivery_order_events_occurred_idx ON delivery_order_events (occurred_at);

-- 4. The partner's location pings of each order, for its route. Tracking data (never workflow
--    history), written by the gateway with the order's latest location; bounded per order and
--    deleted when the order ends.
CREATE TABLE delivery_order_locations (
    delivery_order_id  uuid NOT NULL REFERENCES delivery_orders (id),
    at                 timestamptz NOT NULL,
    lat                double precision NOT NULL,
    lon                double precision NOT NULL,
    accuracy_m         double precision,
    PRIMARY KEY (delivery_order_id, at)
);

-- 5. Where the parcel goes, as the partner geocoded it (sent with its pings).
ALTER TABLE delivery_orders ADD COLUMN destination jsonb;
