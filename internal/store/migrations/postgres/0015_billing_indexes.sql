-- Statements price local-only usage (records of no billing meter) from a
-- price book; without this index each owner's statements scanned every
-- record ever received, and finalization prices every owner's.
CREATE INDEX commerce_usage_local_only ON commerce_usage (usage_hour_us) WHERE billing_meter_id = '';

-- What earlier invoices billed of the months late usage reaches is read by
-- usage period, not from all of history.
CREATE INDEX invoice_lines_usage_period ON invoice_lines (usage_period);
