-- Bridge credentials: a token of role bridge is scoped to one registration.
ALTER TABLE tokens ADD COLUMN registration_uid TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_registration ON tokens (registration_uid);
