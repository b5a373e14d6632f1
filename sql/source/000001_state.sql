-- pgtunnel's own state in the source: one row per captured table.
CREATE SCHEMA IF NOT EXISTS pgtunnel;

CREATE TABLE IF NOT EXISTS pgtunnel.state (
  table_id text PRIMARY KEY,
  phase text NOT NULL DEFAULT 'snapshot' CHECK (phase IN ('snapshot', 'streaming')),
  -- the checkpoint: the last source snapshot whose batch Kafka acknowledged in full
  prev_snapshot pg_snapshot,
  -- a batch being published in pages: its snapshot and the last change_id acknowledged
  cur_snapshot pg_snapshot,
  last_change_id bigint NOT NULL DEFAULT 0,
  snapshot_last_key jsonb,
  snapshot_rows_done bigint NOT NULL DEFAULT 0,
  snapshot_rows_total bigint,
  changes_published bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
