-- Signals (Debezium's signalling table as the model): an operator asks a running tunnel for an incremental
-- snapshot of one table, or of the rows a predicate selects, by inserting a row here (`pgtunnel snapshot
-- --table`, or POST /api/snapshot). The table's producer picks it up, reads it in key chunks interleaved
-- with the stream and stores its progress here in each chunk's checkpoint transaction, so a restarted
-- producer resumes at the next chunk. A row is the request and its progress; nothing else reads it.
CREATE TABLE pgtunnel.signals (
  signal_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_id text NOT NULL,
  -- SQL evaluated in the source by the producer: only the operator writes it (see docs/security.md)
  predicate text,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'cancelled', 'failed')),
  -- the last key a chunk published, as exact JSON text
  last_key text,
  rows_done bigint NOT NULL DEFAULT 0,
  rows_total bigint,
  message text,
  requested_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX signals_open ON pgtunnel.signals (table_id, signal_id) WHERE state IN ('pending', 'running');
