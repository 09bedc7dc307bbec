-- Budgets (package budget): an owner's spending limit for a scope, per
-- month or over a custom range of months, with thresholds on the actual
-- and the forecast spend. owner_id is the partner or reseller who made it
-- ('' for the operator); scope_ref is what the scope resolved to when the
-- budget was made (a registration's UID, a customer's or a subscription's
-- tenant). thresholds is JSON. action is '' or 'disable': at 100 % of the
-- amount, the tenant's user subscriptions on its stamps are disabled.
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
    action        TEXT NOT NULL,
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

-- Tenants whose user subscriptions a budget's action holds disabled on the
-- stamps they are mapped on, per period; released when the budget is raised
-- above the spend, its period ends, or someone releases it by hand. A hold
-- released by hand is not taken again in that period; one released because
-- the budget was raised is, once the spend reaches the new amount.
CREATE TABLE budget_holds (
    budget_id      TEXT NOT NULL,
    period         TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    held_at_us     BIGINT NOT NULL,
    spend          TEXT NOT NULL,
    released_at_us BIGINT,
    released_by    TEXT NOT NULL,
    release_reason TEXT NOT NULL,
    PRIMARY KEY (budget_id, period, tenant_id)
);
CREATE INDEX budget_holds_active ON budget_holds (tenant_id) WHERE released_at_us IS NULL;
