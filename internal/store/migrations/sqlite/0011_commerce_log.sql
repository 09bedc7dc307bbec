-- Commerce acknowledges a bridge batch once its records are mapped,
-- deduplicated and written here, one row per batch in a compact binary
-- encoding; commerce_usage is materialised from this log in the background
-- (bridge.Ingestor.Run) and before anything reads it (Settle). A row is
-- deleted in the transaction that adds its records to commerce_usage, so
-- each record is materialised exactly once.
CREATE TABLE commerce_usage_log (
    id          INTEGER PRIMARY KEY,
    received_us BIGINT NOT NULL,
    records     INTEGER NOT NULL,
    payload     BLOB NOT NULL
);

-- The IDs of acknowledged records, as blocks of 16-byte keys, one per batch
-- (see usage_dedup_blocks). commerce_usage's primary key still refuses a
-- record whose key has expired from here.
CREATE TABLE commerce_dedup_blocks (
    id            INTEGER PRIMARY KEY,
    expires_at_us BIGINT NOT NULL,
    keys          BLOB NOT NULL
);
CREATE INDEX commerce_dedup_blocks_expiry ON commerce_dedup_blocks (expires_at_us);
