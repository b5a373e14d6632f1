-- apply: transactional. A source transaction is applied once all its parts arrived, possibly before
-- records of earlier offsets in the same partition (they belong to transactions still incomplete), so a
-- partition's stored next offset is its lowest record not yet applied. The units applied past that offset
-- are remembered here, in the apply transaction, so a restart reading from the stored offsets skips them;
-- a row goes once the partition's stored offset passes its last record there.
CREATE TABLE IF NOT EXISTS pgtunnel.applied_ahead (
  unit_id text NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL,
  last_offset bigint NOT NULL,
  PRIMARY KEY (unit_id, topic, partition)
);

-- Records of incomplete transactions past the consumer's memory budget wait here (written in their own
-- target transactions, never read by anyone else). They are below the stored offsets' reach: a restart
-- reads them again from Kafka, so the applier empties this table when it starts.
CREATE TABLE IF NOT EXISTS pgtunnel.held_records (
  unit_id text NOT NULL,
  seq bigint NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL,
  kafka_offset bigint NOT NULL,
  record_key text,
  record_value text,
  PRIMARY KEY (unit_id, seq)
);
