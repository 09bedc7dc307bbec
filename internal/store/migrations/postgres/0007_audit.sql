-- The audit log: every change to the directory, registrations, tenant
-- mappings, price lists, meter maps, price books, invoices and tokens, with
-- who, what, when, and the state before and after. Rows are only ever
-- appended, each carrying the SHA-256 of its predecessor's hash and its own
-- content, so editing or removing a row breaks the chain (stackbill audit
-- verify). audit_head holds the chain's tip; appenders lock it, so the chain
-- stays linear when several instances write at once.

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_us      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    before     TEXT NOT NULL,
    after      TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_scope ON audit_log (scope, seq);
CREATE INDEX audit_log_entity ON audit_log (kind, entity_id, seq);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
