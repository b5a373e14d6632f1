-- Keys with unresolved dead letters (any orderPolicy), and the newest original offset the consumer applied
-- for each since. `dlq replay` resolves a letter older than that offset as superseded instead of writing an
-- older row image over a newer one. Only keys with letters have a row, so keys without letters cost nothing.
CREATE TABLE pgtunnel.lettered_keys (
  topic text NOT NULL,
  key text NOT NULL,
  -- the partition the key's letters came from; offsets are comparable only within it
  partition int NOT NULL,
  dead_letters int NOT NULL,
  -- newest original offset of this key applied to the target after its first letter (NULL: none yet)
  applied_offset bigint,
  PRIMARY KEY (topic, key)
);
