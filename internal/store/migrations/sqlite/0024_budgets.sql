-- Budgets (package budget): an owner's spending limit for a scope, per
-- month or over a custom range of months, with thresholds on the actual
-- and the forecast spend. owner_id is the partner or reseller who made it
-- ('' for the operator); scope_ref is what the scope resolved to when the
-- budget was made (a registration's UID). thresholds is JSON.
CREATE TABLE budgets (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    amount        TEXT NOT NULL,
    period_kind   TEXT NOT NULL,
    period_from   TEXT NOT NULL,
    period_to     TEXT NOT NULL,
    scope_kind    TEXT NOT NULL,
    scope_id      TEXT NOT NULL,
    scope_ref     TEXT NOT NULL,
    thresholds    TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX budgets_owner ON budgets (owner_id, id);

-- Each threshold crossed, once per budget, period and threshold, however
-- many instances evaluate: the key refuses a second, and the crossing's
-- event is recorded in the same transaction as its row.
CREATE TABLE budget_crossings (
    budget_id   TEXT NOT NULL,
    period      TEXT NOT NULL,
    basis       TEXT NOT NULL,
    percent     TEXT NOT NULL,
    crossed_at_us BIGINT NOT NULL,
    spend       TEXT NOT NULL,
    forecast    TEXT NOT NULL,
    late        INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (budget_id, period, basis, percent)
);
