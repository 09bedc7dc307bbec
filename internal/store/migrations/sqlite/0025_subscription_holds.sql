-- The stack's user subscriptions that a commerce budget holds disabled
-- (package tenancy): the stack disables a held tenant's Enabled
-- subscriptions once, remembers each here, and re-enables exactly these
-- when commerce releases the hold (those still Disabled: an operator's own
-- change since is theirs).
CREATE TABLE subscription_holds (
    subscription_id TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    budget_id       TEXT NOT NULL,
    held_at_us      BIGINT NOT NULL
);
