-- The directory as finalization saw it, per period: who each subscription
-- was billed to, customer and partner names, registrations. A finalized
-- period's reconciliation file is rebuilt from it, so renaming a customer
-- or moving a subscription to another partner later cannot change what a
-- finalized invoice's reconciliation says. Periods finalized before this
-- migration have no row and fall back to the current directory.

CREATE TABLE period_directories (
    period    TEXT PRIMARY KEY,
    snapshot  TEXT NOT NULL
);
