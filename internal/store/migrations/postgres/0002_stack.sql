-- Stack side: operator-added meters, onboarded directory tenants, user
-- subscriptions with their history, usage idempotency keys and hourly usage
-- records. Quantities are exact decimal TEXT.

CREATE TABLE meters (
    key           TEXT PRIMARY KEY,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    unit          TEXT NOT NULL,
    category      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE directory_tenants (
    tenant_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE user_subscriptions (
    id                                 TEXT PRIMARY KEY,
    display_name                       TEXT NOT NULL,
    owner                              TEXT NOT NULL,
    tenant_id                          TEXT NOT NULL,
    offer_id                           TEXT NOT NULL,
    state                              TEXT NOT NULL,
    delegated_provider_subscription_id TEXT NOT NULL,
    created_at_us                      BIGINT NOT NULL,
    updated_at_us                      BIGINT NOT NULL
);
CREATE INDEX user_subscriptions_provider ON user_subscriptions (delegated_provider_subscription_id, id);

CREATE TABLE user_subscription_changes (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    at_us           BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX user_subscription_changes_sub ON user_subscription_changes (subscription_id, at_us);

-- Idempotency keys of accepted usage events, kept at least 35 days.
CREATE TABLE usage_dedup (
    key           TEXT PRIMARY KEY,
    expires_at_us BIGINT NOT NULL
);
CREATE INDEX usage_dedup_expiry ON usage_dedup (expires_at_us);

-- One row per subscription, meter, resource instance, usage hour and
-- reported hour. A row changes only while its reported hour is open; the
-- usage APIs and the bridge read closed reported hours only.
CREATE TABLE usage_records (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  TEXT NOT NULL,
    meter_key        TEXT NOT NULL,
    instance         TEXT NOT NULL,
    usage_hour_us    BIGINT NOT NULL,
    reported_hour_us BIGINT NOT NULL,
    quantity         TEXT NOT NULL,
    events           BIGINT NOT NULL,
    resource_uri     TEXT NOT NULL,
    location         TEXT NOT NULL,
    tags             TEXT NOT NULL,
    additional_info  TEXT NOT NULL
);
CREATE UNIQUE INDEX usage_records_key ON usage_records (subscription_id, meter_key, instance, usage_hour_us, reported_hour_us);
CREATE INDEX usage_records_reported ON usage_records (reported_hour_us, id);
