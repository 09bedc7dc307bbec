-- Each logged batch names its cloud, so that ingestion can tell whether a
-- cloud still has records waiting to be materialised before it looks a
-- repeated record up in commerce_usage. Rows logged before this migration
-- name none ('') and are materialised as before.
ALTER TABLE commerce_usage_log ADD COLUMN cloud_id TEXT NOT NULL DEFAULT '';
CREATE INDEX commerce_usage_log_cloud ON commerce_usage_log (cloud_id, id);
