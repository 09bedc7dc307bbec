-- Activity counters for operators and the portal: records the bridge forwarded
-- per hour of forwarding (stack side), and records commerce received per stamp
-- and hour (commerce side). Each is written in the same transaction as the
-- work it counts, so the counters never disagree with the data.

CREATE TABLE bridge_forward_hours (
    hour_us  BIGINT PRIMARY KEY,
    records  BIGINT NOT NULL,
    batches  BIGINT NOT NULL
);

CREATE TABLE ingest_hours (
    registration_uid TEXT NOT NULL,
    cloud_id         TEXT NOT NULL,
    hour_us          BIGINT NOT NULL,
    records          BIGINT NOT NULL,
    duplicates       BIGINT NOT NULL,
    batches          BIGINT NOT NULL,
    last_at_us       BIGINT NOT NULL,
    PRIMARY KEY (registration_uid, hour_us)
);
