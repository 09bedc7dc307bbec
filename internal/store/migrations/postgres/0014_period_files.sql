-- What finalization stores of a period besides its invoices (package
-- billing): each bill-to partner's reconciliation file, and each owner's
-- statements, so that every view of a finalized period comes from what was
-- stored when it was billed, never from a recomputation that could drift.
-- A file is kept in 1 MiB chunks, in order.
CREATE TABLE period_files (
    period   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    data     BYTEA NOT NULL,
    PRIMARY KEY (period, kind, owner_id, seq)
);
