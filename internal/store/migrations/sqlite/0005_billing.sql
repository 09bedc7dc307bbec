-- Billing: partner agreements (currency), CSP price list versions, billing
-- periods and finalized invoices with their lines, credit notes, chargeback
-- price books, and reconciliation export jobs. Money is decimal TEXT.

CREATE TABLE billing_agreements (
    partner_id    TEXT PRIMARY KEY,
    currency      TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    updated_by    TEXT NOT NULL
);

CREATE TABLE price_lists (
    id                INTEGER PRIMARY KEY,
    currency          TEXT NOT NULL,
    effective_from_us BIGINT NOT NULL,
    digest            TEXT NOT NULL,
    source            TEXT NOT NULL,
    rows_kept         INTEGER NOT NULL,
    rows_skipped      INTEGER NOT NULL,
    imported_at_us    BIGINT NOT NULL,
    imported_by       TEXT NOT NULL,
    UNIQUE (currency, effective_from_us)
);

CREATE TABLE prices (
    price_list_id     INTEGER NOT NULL,
    meter_id          TEXT NOT NULL,
    meter_name        TEXT NOT NULL,
    category          TEXT NOT NULL,
    subcategory       TEXT NOT NULL,
    region            TEXT NOT NULL,
    unit              TEXT NOT NULL,
    included_quantity TEXT NOT NULL,
    tiers             TEXT NOT NULL,
    PRIMARY KEY (price_list_id, meter_id)
);

CREATE TABLE billing_periods (
    period          TEXT PRIMARY KEY,
    finalized_at_us BIGINT NOT NULL,
    finalized_by    TEXT NOT NULL
);

CREATE TABLE invoices (
    number          TEXT PRIMARY KEY,
    partner_id      TEXT NOT NULL,
    period          TEXT NOT NULL,
    currency        TEXT NOT NULL,
    total           TEXT NOT NULL,
    finalized_at_us BIGINT NOT NULL,
    document        TEXT NOT NULL,
    UNIQUE (partner_id, period)
);

CREATE TABLE invoice_lines (
    invoice_number    TEXT NOT NULL,
    line_no           INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    reseller_id       TEXT NOT NULL,
    customer_tenant_id TEXT NOT NULL,
    subscription_id   TEXT NOT NULL,
    registration_uid  TEXT NOT NULL,
    usage_period      TEXT NOT NULL,
    meter_id          TEXT NOT NULL,
    price_list_id     INTEGER NOT NULL,
    tier_from         TEXT NOT NULL,
    quantity          TEXT NOT NULL,
    unit_price        TEXT NOT NULL,
    amount            TEXT NOT NULL,
    PRIMARY KEY (invoice_number, line_no)
);
CREATE INDEX invoice_lines_usage ON invoice_lines (subscription_id, meter_id, usage_period);

CREATE TABLE credit_notes (
    number         TEXT PRIMARY KEY,
    invoice_number TEXT NOT NULL,
    reason         TEXT NOT NULL,
    lines          TEXT NOT NULL,
    total          TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    created_by     TEXT NOT NULL
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_number);

CREATE TABLE price_books (
    owner_id       TEXT NOT NULL,
    target         TEXT NOT NULL,
    markup_percent TEXT NOT NULL,
    prices         TEXT NOT NULL,
    updated_at_us  BIGINT NOT NULL,
    updated_by     TEXT NOT NULL,
    PRIMARY KEY (owner_id, target)
);

CREATE TABLE export_jobs (
    id            TEXT PRIMARY KEY,
    partner_id    TEXT NOT NULL,
    period        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    status        TEXT NOT NULL,
    rows_done     BIGINT NOT NULL,
    rows_total    BIGINT NOT NULL,
    error         TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

CREATE TABLE export_chunks (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Which finalized period billed each forwarded record; NULL until then.
-- Finalization stamps it, so late usage is whatever is still NULL.
ALTER TABLE commerce_usage ADD COLUMN billed_period TEXT;
CREATE INDEX commerce_usage_unbilled ON commerce_usage (billed_period, usage_hour_us);
