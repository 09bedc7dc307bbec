-- Commerce side of the bridge: the local → billing meter map (versioned by
-- effective date) and usage forwarded by stacks, each record charged to the
-- subscription its tenant mapped to at its usage hour.

CREATE TABLE meter_map (
    version             INTEGER NOT NULL,
    effective_from_us   BIGINT NOT NULL,
    local_meter_key     TEXT NOT NULL,
    billing_meter_id    TEXT NOT NULL,
    billing_meter_name  TEXT NOT NULL,
    billing_category    TEXT NOT NULL,
    billing_subcategory TEXT NOT NULL,
    billing_unit        TEXT NOT NULL,
    factor              TEXT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    created_by          TEXT NOT NULL,
    PRIMARY KEY (version, local_meter_key)
);
CREATE INDEX meter_map_effective ON meter_map (effective_from_us, version);

CREATE TABLE commerce_usage (
    id                      TEXT PRIMARY KEY,
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
    additional_info         TEXT NOT NULL
);
CREATE INDEX commerce_usage_charged ON commerce_usage (charged_subscription_id, usage_hour_us);
CREATE INDEX commerce_usage_registration ON commerce_usage (registration_uid, usage_hour_us);
