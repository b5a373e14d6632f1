-- A truncate is honoured once per partition: a genuine truncate record written to the topic again (a
-- replay, or a copy by whoever can write the topic) must not empty the target a second time. Rows go in
-- the apply transaction, with the offsets.
CREATE TABLE IF NOT EXISTS pgtunnel.honoured_truncates (
  topic text NOT NULL,
  partition int NOT NULL,
  tx_id text NOT NULL,
  change_id text NOT NULL,
  honoured_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, partition, tx_id, change_id)
);
