-- Commerce acknowledges a bridge batch once its records are mapped,
-- deduplicated and written here, one row per batch in a compact binary
-- encoding; commerce_usage is materialised from this log in the background
-- (bridge.Ingestor.Run) and before anything reads it (Settle). A row is
-- deleted in the transaction that adds its records to commerce_usage, so
-- each record is materialised exactly once.
CREATE TABLE commerce_usage_log (
    id          BIGSERIAL PRIMARY KEY,
    received_us BIGINT NOT NULL,
    records     INTEGER NOT NULL,
    payload     BYTEA NOT NULL
);

-- The IDs of acknowledged records, one row per key under a unique index,
-- which concurrent commerce instances agree on. commerce_usage's primary
-- key still refuses a record whose key has expired from here.
CREATE TABLE commerce_dedup (
    key           TEXT PRIMARY KEY,
    expires_at_us BIGINT NOT NULL
);
CREATE INDEX commerce_dedup_expiry ON commerce_dedup (expires_at_us);
