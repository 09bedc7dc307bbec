-- Foundation: settings, access tokens, the partner directory with its history,
-- Microsoft.AzureStack registrations and tenant mappings with theirs.
-- Instants are BIGINT Unix microseconds (UTC). Booleans are INTEGER 0/1.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tokens (
    id              TEXT PRIMARY KEY,
    hash            TEXT NOT NULL,
    role            TEXT NOT NULL,
    partner_id      TEXT NOT NULL DEFAULT '',
    subscription_id TEXT NOT NULL DEFAULT '',
    name            TEXT NOT NULL DEFAULT '',
    created_at_us   BIGINT NOT NULL,
    expires_at_us   BIGINT,
    revoked_at_us   BIGINT
);

CREATE TABLE partners (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,
    provider_id   TEXT NOT NULL DEFAULT '',
    mpn_id        TEXT NOT NULL DEFAULT '',
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX partners_provider ON partners (provider_id);

CREATE TABLE customers (
    tenant_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX customers_partner ON customers (partner_id);

CREATE TABLE subscriptions (
    id                 TEXT PRIMARY KEY,
    offer              TEXT NOT NULL,
    partner_id         TEXT NOT NULL DEFAULT '',
    customer_tenant_id TEXT NOT NULL DEFAULT '',
    name               TEXT NOT NULL DEFAULT '',
    created_at_us      BIGINT NOT NULL,
    updated_at_us      BIGINT NOT NULL
);
CREATE INDEX subscriptions_partner ON subscriptions (partner_id);
CREATE INDEX subscriptions_customer ON subscriptions (customer_tenant_id);

CREATE TABLE directory_changes (
    seq       INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    op        TEXT NOT NULL,
    at_us     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX directory_changes_entity ON directory_changes (kind, entity_id, at_us);

CREATE TABLE registrations (
    uid                             TEXT PRIMARY KEY,
    subscription_id                 TEXT NOT NULL,
    resource_group                  TEXT NOT NULL,
    name                            TEXT NOT NULL,
    lookup_key                      TEXT NOT NULL,
    location                        TEXT NOT NULL,
    tags                            TEXT NOT NULL DEFAULT '{}',
    etag                            TEXT NOT NULL,
    cloud_id                        TEXT NOT NULL,
    object_id                       TEXT NOT NULL,
    billing_model                   TEXT NOT NULL,
    agreement_number                TEXT NOT NULL DEFAULT '',
    usage_reporting_enabled         INTEGER NOT NULL,
    marketplace_syndication_enabled INTEGER NOT NULL,
    token                           TEXT NOT NULL,
    approved                        INTEGER NOT NULL DEFAULT 0,
    approved_at_us                  BIGINT,
    approved_by                     TEXT NOT NULL DEFAULT '',
    remote_management_at_us         BIGINT,
    remote_management_by            TEXT NOT NULL DEFAULT '',
    created_at_us                   BIGINT NOT NULL,
    created_by                      TEXT NOT NULL,
    updated_at_us                   BIGINT NOT NULL,
    updated_by                      TEXT NOT NULL,
    deleted_at_us                   BIGINT,
    deleted_by                      TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX registrations_live_key ON registrations (lookup_key) WHERE deleted_at_us IS NULL;
CREATE INDEX registrations_subscription ON registrations (subscription_id, lookup_key);
CREATE INDEX registrations_cloud ON registrations (cloud_id);

CREATE TABLE registration_events (
    seq              INTEGER PRIMARY KEY,
    registration_uid TEXT NOT NULL REFERENCES registrations (uid),
    at_us            BIGINT NOT NULL,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    data             TEXT NOT NULL
);
CREATE INDEX registration_events_reg ON registration_events (registration_uid, seq);

-- One row per period in which a directory tenant was mapped to a customer
-- subscription on a registration: [valid_from_us, valid_to_us). Rows are
-- closed, never deleted, so billing can ask which mapping held at any hour.
CREATE TABLE tenant_mappings (
    id                       INTEGER PRIMARY KEY,
    registration_uid         TEXT NOT NULL REFERENCES registrations (uid),
    customer_subscription_id TEXT NOT NULL,
    tenant_id                TEXT NOT NULL,
    etag                     TEXT NOT NULL,
    valid_from_us            BIGINT NOT NULL,
    valid_to_us              BIGINT,
    created_by               TEXT NOT NULL,
    removed_by               TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX tenant_mappings_live_sub ON tenant_mappings (registration_uid, customer_subscription_id) WHERE valid_to_us IS NULL;
CREATE UNIQUE INDEX tenant_mappings_live_tenant ON tenant_mappings (registration_uid, tenant_id) WHERE valid_to_us IS NULL;
CREATE INDEX tenant_mappings_history ON tenant_mappings (registration_uid, tenant_id, valid_from_us);
CREATE INDEX tenant_mappings_sub_history ON tenant_mappings (registration_uid, customer_subscription_id);
