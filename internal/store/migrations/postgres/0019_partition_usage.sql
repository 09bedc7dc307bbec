-- Forwarded usage is partitioned by usage month, so that retention drops a
-- month's partition instead of deleting its rows one by one, and so that
-- materialisation writes into the small, recently used indexes of the month
-- in progress. The primary key includes the partition key (PostgreSQL
-- requires it); a record's ID fixes its usage day, so (id, usage_day_us) is
-- as unique as id alone. The ledger creates the partitions of the current
-- and coming months ahead of time; the default partition catches anything
-- else (late usage of a month already dropped, or far ahead), so that no
-- insert ever waits for a partition. Existing rows are moved into one
-- partition per month that holds them.
ALTER TABLE commerce_usage RENAME TO commerce_usage_before_partitions;
ALTER INDEX commerce_usage_pkey RENAME TO commerce_usage_before_partitions_pkey;
ALTER INDEX commerce_usage_charged RENAME TO commerce_usage_before_partitions_charged;
ALTER INDEX commerce_usage_rating RENAME TO commerce_usage_before_partitions_rating;
ALTER INDEX commerce_usage_local_only RENAME TO commerce_usage_before_partitions_local_only;
CREATE TABLE commerce_usage (
    id                      TEXT NOT NULL,
    registration_uid        TEXT NOT NULL,
    cloud_id                TEXT NOT NULL,
    charged_subscription_id TEXT NOT NULL,
    mapped                  INTEGER NOT NULL,
    reason                  TEXT NOT NULL,
    local_subscription_id   TEXT NOT NULL,
    tenant_id               TEXT NOT NULL,
    local_meter_key         TEXT NOT NULL,
    billing_meter_id        TEXT NOT NULL,
    quantity                TEXT NOT NULL,
    billing_quantity        TEXT NOT NULL,
    meter_map_version       INTEGER NOT NULL,
    usage_hour_us           BIGINT NOT NULL,
    reported_hour_us        BIGINT NOT NULL,
    received_at_us          BIGINT NOT NULL,
    resource_uri            TEXT NOT NULL,
    location                TEXT NOT NULL,
    tags                    TEXT NOT NULL,
    additional_info         TEXT NOT NULL,
    billed_period           TEXT,
    usage_day_us            BIGINT NOT NULL DEFAULT 0,
    series_id               BIGINT NOT NULL DEFAULT 0,
    billing_units           BIGINT,
    PRIMARY KEY (id, usage_day_us)
) PARTITION BY RANGE (usage_day_us);
CREATE INDEX commerce_usage_charged ON commerce_usage (charged_subscription_id, usage_hour_us);
CREATE INDEX commerce_usage_rating ON commerce_usage (billed_period, usage_day_us, series_id, billing_units);
CREATE INDEX commerce_usage_local_only ON commerce_usage (usage_hour_us) WHERE billing_meter_id = '';
CREATE TABLE commerce_usage_default PARTITION OF commerce_usage DEFAULT;
DO $$ DECLARE m TIMESTAMP; BEGIN FOR m IN SELECT DISTINCT date_trunc('month', to_timestamp(usage_day_us / 1000000) AT TIME ZONE 'UTC') FROM commerce_usage_before_partitions LOOP EXECUTE format('CREATE TABLE %I PARTITION OF commerce_usage FOR VALUES FROM (%s) TO (%s)', 'commerce_usage_y' || to_char(m, 'YYYY') || 'm' || to_char(m, 'MM'), (extract(epoch FROM m) * 1000000)::bigint, (extract(epoch FROM m + interval '1 month') * 1000000)::bigint); END LOOP; END $$;
INSERT INTO commerce_usage (id, registration_uid, cloud_id, charged_subscription_id, mapped, reason, local_subscription_id, tenant_id, local_meter_key,
    billing_meter_id, quantity, billing_quantity, meter_map_version, usage_hour_us, reported_hour_us, received_at_us, resource_uri, location, tags,
    additional_info, billed_period, usage_day_us, series_id, billing_units)
SELECT id, registration_uid, cloud_id, charged_subscription_id, mapped, reason, local_subscription_id, tenant_id, local_meter_key,
    billing_meter_id, quantity, billing_quantity, meter_map_version, usage_hour_us, reported_hour_us, received_at_us, resource_uri, location, tags,
    additional_info, billed_period, usage_day_us, series_id, billing_units FROM commerce_usage_before_partitions;
DROP TABLE commerce_usage_before_partitions;
