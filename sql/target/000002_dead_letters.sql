-- What the consumer did with the records of each partition, counted in the same transaction as the rows.
ALTER TABLE pgtunnel.consumer_offsets
  ADD COLUMN applied bigint NOT NULL DEFAULT 0,
  ADD COLUMN dead_lettered bigint NOT NULL DEFAULT 0,
  ADD COLUMN poison bigint NOT NULL DEFAULT 0;

-- Keys with unresolved dead letters: with orderPolicy park, their later changes wait behind them.
CREATE TABLE pgtunnel.parked_keys (
  topic text NOT NULL,
  key text NOT NULL,
  dead_letters int NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, key)
);

-- Dead letters that `pgtunnel dlq replay` resolved (applied, or superseded by a newer attempt);
-- Kafka data is never deleted, resolution is tracked by offsets.
CREATE TABLE pgtunnel.dlq_resolved (
  topic text NOT NULL,
  partition int NOT NULL,
  "offset" bigint NOT NULL,
  outcome text NOT NULL,
  resolved_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, partition, "offset")
);
