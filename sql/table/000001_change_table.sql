-- The change table: the captured table's columns (no defaults, all nullable), then what capture adds.
CREATE TABLE {{changeTable}} (LIKE {{table}});

DO $$
DECLARE col record;
BEGIN
  FOR col IN SELECT attname FROM pg_attribute
             WHERE attrelid = {{changeTableLiteral}}::regclass AND attnum > 0 AND NOT attisdropped AND attnotnull
  LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', {{changeTableLiteral}}, col.attname);
  END LOOP;
END $$;

ALTER TABLE {{changeTable}}
  ADD COLUMN action varchar(100) NOT NULL,
  ADD COLUMN change_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- the top-level transaction: batches are the transactions a new snapshot sees and the previous did not
  ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  ADD COLUMN captured_at timestamptz NOT NULL DEFAULT clock_timestamp();

CREATE INDEX ON {{changeTable}} (txid);

INSERT INTO pgtunnel.state (table_id) VALUES ({{tableIdLiteral}}) ON CONFLICT DO NOTHING;
