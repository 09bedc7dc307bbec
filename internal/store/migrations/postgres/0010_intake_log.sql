-- Intake writes what it accepts to an append-only log and acknowledges;
-- aggregation into usage_records follows from the log (usage.Service.Run,
-- and Settle before anything reads records). One row per accepted batch,
-- its events in a compact binary encoding; a row is deleted in the same
-- transaction that adds its events to the records, so each event is
-- aggregated exactly once. PostgreSQL keeps idempotency keys one per row in
-- usage_dedup: several stackbill instances may take intake at once, and the
-- unique index is what they agree on.
CREATE TABLE usage_log (
    id           BIGSERIAL PRIMARY KEY,
    received_us  BIGINT NOT NULL,
    events       INTEGER NOT NULL,
    payload      BYTEA NOT NULL
);
