-- Idempotency keys leave memory once there are many of them: the keys of
-- the blocks held in memory are moved, a million or so at a time (a
-- generation), into pages on disk, sorted and grouped by the key's first 12
-- bits, each key with its own expiry (16 bytes of key, 8 of expiry,
-- big-endian). A page is read only when the in-memory filter of its
-- generation says the key may be there, so memory no longer grows by a map
-- entry per key held for the retention.
CREATE TABLE usage_dedup_pages (
    gen         INTEGER NOT NULL,
    prefix      INTEGER NOT NULL,
    expires_min BIGINT NOT NULL,
    expires_max BIGINT NOT NULL,
    keys        BLOB NOT NULL,
    PRIMARY KEY (gen, prefix)
) WITHOUT ROWID;
CREATE INDEX usage_dedup_pages_expiry ON usage_dedup_pages (expires_min);
CREATE TABLE commerce_dedup_pages (
    gen         INTEGER NOT NULL,
    prefix      INTEGER NOT NULL,
    expires_min BIGINT NOT NULL,
    expires_max BIGINT NOT NULL,
    keys        BLOB NOT NULL,
    PRIMARY KEY (gen, prefix)
) WITHOUT ROWID;
CREATE INDEX commerce_dedup_pages_expiry ON commerce_dedup_pages (expires_min);

-- A generation is named by the highest block ID it took, and a process
-- reads the blocks above the highest it has seen, so block IDs must never
-- be reused: a rowid table hands out its highest ID plus one, which goes
-- back down once a freeze or a purge has deleted the newest blocks.
-- AUTOINCREMENT never reuses one.
ALTER TABLE usage_dedup_blocks RENAME TO usage_dedup_blocks_before_0022;
CREATE TABLE usage_dedup_blocks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    expires_at_us BIGINT NOT NULL,
    keys          BLOB NOT NULL
);
INSERT INTO usage_dedup_blocks (id, expires_at_us, keys) SELECT id, expires_at_us, keys FROM usage_dedup_blocks_before_0022;
DROP TABLE usage_dedup_blocks_before_0022;
CREATE INDEX usage_dedup_blocks_expiry ON usage_dedup_blocks (expires_at_us);
ALTER TABLE commerce_dedup_blocks RENAME TO commerce_dedup_blocks_before_0022;
CREATE TABLE commerce_dedup_blocks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    expires_at_us BIGINT NOT NULL,
    keys          BLOB NOT NULL
);
INSERT INTO commerce_dedup_blocks (id, expires_at_us, keys) SELECT id, expires_at_us, keys FROM commerce_dedup_blocks_before_0022;
DROP TABLE commerce_dedup_blocks_before_0022;
CREATE INDEX commerce_dedup_blocks_expiry ON commerce_dedup_blocks (expires_at_us);
