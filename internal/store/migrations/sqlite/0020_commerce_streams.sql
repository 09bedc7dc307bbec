-- Where each cloud's forwarding stream stands on commerce: the last
-- position (reported hour, the stack's sequence) of the stream batches
-- taken (batches of them) and the latest reported hour of a record taken
-- without a position. A stream batch that starts there is new as a whole,
-- so ingestion claims no record IDs for it, except for records of hours a
-- batch without a position reached. covered_from_us is the reported hour the stream's
-- contiguous run starts in: a repeated record of an earlier hour, or of
-- that hour, is looked up, not assumed taken.
CREATE TABLE commerce_streams (
    cloud_id TEXT PRIMARY KEY,
    reported_hour_us BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    batches BIGINT NOT NULL,
    unordered_through_us BIGINT NOT NULL DEFAULT 0,
    covered_from_us BIGINT NOT NULL DEFAULT 0,
    updated_at_us BIGINT NOT NULL
);
