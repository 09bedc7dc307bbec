-- What a reconciliation export is doing, so that a client can show it while
-- no record has been written yet: "reading" (rating state and the sorted
-- records before the first row), "writing" (records_done counts), or
-- "copying" (a finalized period's stored file).
ALTER TABLE export_jobs ADD COLUMN phase TEXT NOT NULL DEFAULT '';
