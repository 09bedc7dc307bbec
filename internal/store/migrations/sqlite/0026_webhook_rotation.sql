-- A webhook endpoint's secret can be rotated (package notify): for a day
-- after, deliveries carry a signature with the previous secret beside the
-- new one, as Standard Webhooks allows, so a receiver can switch without
-- refusing what is in flight.
ALTER TABLE notify_endpoints ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE notify_endpoints ADD COLUMN previous_until_us BIGINT NOT NULL DEFAULT 0;
