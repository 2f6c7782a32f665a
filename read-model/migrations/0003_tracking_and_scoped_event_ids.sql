-- 1. Event ids are unique per delivery order, as the workflow deduplicates them. Two senders may
--    use the same id for events of different orders; a global constraint would make the second
--    projection fail for ever.
ALTER TABLE delivery_order_events DROP CONSTRAINT delivery_order_events_event_id_key;
ALTER TABLE delivery_order_events
    ADD CONSTRAINT delivery_order_events_order_event_id_key UNIQUE (delivery_order_id, event_id);

-- 2. Tracking data from the partner (location pings) is written by the gateway, never through
--    the workflow. `location_at` keeps an older ping from overwriting a newer one.
ALTER TABLE delivery_orders ADD COLUMN location_at timestamptz;

-- 3. Tracking changes reach Redis through the same outbox as everything else.
ALTER TABLE read_model_outbox DROP CONSTRAINT read_model_outbox_kind_check;
ALTER TABLE read_model_outbox
    ADD CONSTRAINT read_model_outbox_kind_check CHECK (kind IN ('status', 'domain_event', 'tracking'));
