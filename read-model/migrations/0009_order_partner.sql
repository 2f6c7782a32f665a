-- The partner that took each order's pickup (`ProjectedOrder::partner_id`): a partner reads only
-- the orders it carries. Written with every version from now on. Orders projected before take it
-- from their audit trail here (since orders bind their partner, only its events apply, so the
-- first partner actor of an order is its partner); the rest at their next projection.
ALTER TABLE delivery_orders ADD COLUMN partner_id text;

UPDATE delivery_orders d SET partner_id = first_partner.actor_id
FROM (
    SELECT DISTINCT ON (delivery_order_id) delivery_order_id, actor_id
    FROM delivery_order_events
    WHERE actor_kind = 'partner' AND actor_id IS NOT NULL
    ORDER BY delivery_order_id, seq
) AS first_partner
WHERE d.id = first_partner.delivery_order_id;
