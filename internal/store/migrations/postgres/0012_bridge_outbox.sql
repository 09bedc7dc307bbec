-- The stack's bridge outbox: closed hours' records, sealed into the batches
-- the bridge will post (binary, zstd-compressed), in reported-time order.
-- Sealing runs as hours close, whether or not commerce is reachable, so a
-- catch-up after an outage posts what is already encoded instead of reading
-- and encoding a week of rows. A row is deleted in the transaction that
-- advances the watermark past it, once commerce has acknowledged it.
CREATE TABLE bridge_outbox (
    id                     BIGSERIAL PRIMARY KEY,
    first_reported_hour_us BIGINT NOT NULL,
    last_reported_hour_us  BIGINT NOT NULL,
    last_record_id         BIGINT NOT NULL,
    records                INTEGER NOT NULL,
    payload                BYTEA NOT NULL
);
