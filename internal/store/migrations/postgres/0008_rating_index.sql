-- Rating sums usage per billed period, usage day and rating series (a
-- registration, charged subscription and billing meter). Each record now
-- carries its usage day, its series as a small integer, and its billing
-- quantity as an integer of 1e-9 units (NULL when the exact decimal does not
-- fit). One covering index in exactly that order lets the database do the
-- sums in a single ordered pass over compact integer keys, without reading
-- the table or sorting. It replaces commerce_usage_unbilled, whose callers
-- all filter on month boundaries, which are day boundaries too. Records
-- stored before this migration keep NULL units and are summed from their
-- exact text. Series 0 is usage of local-only meters, which is never rated.

CREATE TABLE rating_series (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_uid        TEXT NOT NULL,
    charged_subscription_id TEXT NOT NULL,
    billing_meter_id        TEXT NOT NULL,
    UNIQUE (registration_uid, charged_subscription_id, billing_meter_id)
);
CREATE INDEX rating_series_subscription ON rating_series (charged_subscription_id);

ALTER TABLE commerce_usage ADD COLUMN usage_day_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE commerce_usage ADD COLUMN series_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE commerce_usage ADD COLUMN billing_units BIGINT;
UPDATE commerce_usage SET usage_day_us = usage_hour_us - (usage_hour_us % 86400000000);
INSERT INTO rating_series (registration_uid, charged_subscription_id, billing_meter_id)
    SELECT DISTINCT registration_uid, charged_subscription_id, billing_meter_id FROM commerce_usage WHERE billing_meter_id <> '';
UPDATE commerce_usage SET series_id = (SELECT s.id FROM rating_series s WHERE s.registration_uid = commerce_usage.registration_uid
    AND s.charged_subscription_id = commerce_usage.charged_subscription_id AND s.billing_meter_id = commerce_usage.billing_meter_id)
    WHERE billing_meter_id <> '';
DROP INDEX commerce_usage_unbilled;
CREATE INDEX commerce_usage_rating ON commerce_usage (billed_period, usage_day_us, series_id, billing_units);
