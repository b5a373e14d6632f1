-- Kafka offsets applied to the target, written in the same transaction as the rows they carried.
CREATE SCHEMA IF NOT EXISTS pgtunnel;

CREATE TABLE IF NOT EXISTS pgtunnel.consumer_offsets (
  topic text NOT NULL,
  partition int NOT NULL,
  next_offset bigint NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  -- source capture time to target commit of the newest change applied, for `status`
  last_latency_ms double precision,
  PRIMARY KEY (topic, partition)
);
