-- Intake writes what it accepts to an append-only log and acknowledges;
-- aggregation into usage_records follows from the log (usage.Service.Run,
-- and Settle before anything reads records). One row per accepted batch,
-- its events in a compact binary encoding; a row is deleted in the same
-- transaction that adds its events to the records, so each event is
-- aggregated exactly once.
CREATE TABLE usage_log (
    id           INTEGER PRIMARY KEY,
    received_us  BIGINT NOT NULL,
    events       INTEGER NOT NULL,
    payload      BLOB NOT NULL
);

-- On SQLite the idempotency keys of one batch are stored together as one
-- row (16-byte keys, concatenated) and checked against an in-memory set
-- built from these rows: one B-tree insert per batch instead of one per
-- event in a randomly ordered index, which cost a dirty page per event.
CREATE TABLE usage_dedup_blocks (
    id            INTEGER PRIMARY KEY,
    expires_at_us BIGINT NOT NULL,
    keys          BLOB NOT NULL
);
CREATE INDEX usage_dedup_blocks_expiry ON usage_dedup_blocks (expires_at_us);

-- Keys stored one per row before this migration become blocks, one per day
-- of expiry (keeping the latest expiry of the day, so none is forgotten
-- early).
INSERT INTO usage_dedup_blocks (expires_at_us, keys)
    SELECT MAX(expires_at_us), unhex(group_concat(key, ''))
    FROM usage_dedup GROUP BY expires_at_us / 86400000000;
DELETE FROM usage_dedup;
