-- Audited changes no longer take the chain's head in their own transaction:
-- each appends its record here, unchained, and the sealer (audit.Seal, every
-- second and before every read of the log) chains pending records in id
-- order into audit_log under the head's lock. A change's record still
-- commits with the change; only its place in the chain comes later.
CREATE TABLE audit_pending (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_us      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    before     TEXT,
    after      TEXT NOT NULL
);
