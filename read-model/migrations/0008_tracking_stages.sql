-- When each order entered each state it has left CREATED for (`ProjectedOrder::stages`): a JSON
-- array of {state, reached_at}, written with every version, so tracking reads the order alone
-- (from the cache) instead of its audit trail. Orders projected before this column existed keep
-- NULL until their next projection; tracking reads their trail meanwhile.
ALTER TABLE delivery_orders ADD COLUMN stages jsonb;
