-- Billing events and their delivery to webhooks (package notify).
--
-- notify_events is the log of what happened (an invoice finalized, a
-- registration approved, ...), written in the transaction of the change
-- itself, so an event exists exactly when its change committed. partner_id
-- is the partner who holds the billing relationship (who may see it),
-- reseller_id the reseller concerned, if any.
CREATE TABLE notify_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    partner_id  TEXT NOT NULL,
    reseller_id TEXT NOT NULL,
    subject     TEXT NOT NULL,
    at_us       BIGINT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX notify_events_partner ON notify_events (partner_id, seq);
CREATE INDEX notify_events_reseller ON notify_events (reseller_id, seq) WHERE reseller_id <> '';
-- The portal's bell counts the last week's events; a watcher finds the
-- last it said of a subject.
CREATE INDEX notify_events_subject ON notify_events (type, subject, seq);
CREATE INDEX notify_events_at ON notify_events (at_us);

-- Webhook endpoints: owner_id is the partner or reseller who made it (''
-- for the operator). The secret signs deliveries (Standard Webhooks), so it
-- is kept, not hashed: it is shown once, when it is made.
CREATE TABLE notify_endpoints (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL,
    url         TEXT NOT NULL,
    description TEXT NOT NULL,
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_at_us BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX notify_endpoints_owner ON notify_endpoints (owner_id, id);

-- The event types each endpoint takes ('*' for all of them).
CREATE TABLE notify_endpoint_types (
    endpoint_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, type)
);

-- One delivery per event and endpoint (the outbox): made with the event,
-- in its transaction, and sent until it succeeds or runs out of attempts.
-- lease_until_us keeps two senders (instances) from sending it at once.
-- attempts counts every attempt (they number notify_attempts); round counts
-- those since the delivery was last replayed, its place in the schedule.
CREATE TABLE notify_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    round           INTEGER NOT NULL,
    next_attempt_us BIGINT NOT NULL,
    lease_until_us  BIGINT NOT NULL,
    last_status     INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    updated_at_us   BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (state, next_attempt_us);
CREATE INDEX notify_deliveries_endpoint ON notify_deliveries (endpoint_id, id);

-- Every attempt of a delivery, with what the receiver answered.
CREATE TABLE notify_attempts (
    delivery_id INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at_us       BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    status      INTEGER NOT NULL,
    error       TEXT NOT NULL,
    response    TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
