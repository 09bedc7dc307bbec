-- Containment: what keeps one principal inside its scope and one bad
-- record from stopping billing for anyone else (docs/security.md).

-- The public key of the stack that first registered each cloud (package
-- registration). A registration token must be signed by it, so knowing a
-- cloudId is not enough to claim a stamp. Kept after a registration is
-- deleted: the cloud is the stack, and its key lives in the stack's database
-- with its cloudId.
CREATE TABLE cloud_keys (
    cloud_id    TEXT PRIMARY KEY,
    stack_key   TEXT NOT NULL,
    bound_at_us BIGINT NOT NULL,
    bound_by    TEXT NOT NULL
);

-- Records that a background stage could not take (package quarantine):
-- held with the reason, out of the way of everyone else's usage, until an
-- operator releases (retries) or drops them. record_key makes a re-sent
-- record land once per stage.
CREATE TABLE quarantine (
    id               BIGSERIAL PRIMARY KEY,
    at_us            BIGINT NOT NULL,
    stage            TEXT NOT NULL,
    record_key       TEXT NOT NULL,
    reason           TEXT NOT NULL,
    registration_uid TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    meter_key        TEXT NOT NULL,
    usage_hour_us    BIGINT,
    quantity         TEXT NOT NULL,
    records          INTEGER NOT NULL,
    payload          BYTEA NOT NULL,
    resolution       TEXT NOT NULL DEFAULT '',
    resolved_at_us   BIGINT,
    resolved_by      TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX quarantine_key ON quarantine (stage, record_key) WHERE record_key <> '';
CREATE INDEX quarantine_open ON quarantine (resolution, stage, id);

-- Portal sessions (package auth): the cookie holds a random session ID,
-- never a bearer token; only its SHA-256 is stored. A session ends with its
-- token (revoked or expired) and at its own expiry.
CREATE TABLE portal_sessions (
    id_hash       TEXT PRIMARY KEY,
    token_id      TEXT NOT NULL,
    env_hash      TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL
);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at_us);

-- Signed checkpoints of the audit chain's head (package audit), so that a
-- chain recomputed after an edit, or cut short, no longer matches.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT NOT NULL,
    at_us     BIGINT NOT NULL,
    kid       TEXT NOT NULL,
    signature TEXT NOT NULL
);
