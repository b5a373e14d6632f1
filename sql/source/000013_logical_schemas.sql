-- Logical capture's schema versions (trigger capture keeps its own in pgtunnel.captures). pgoutput's
-- relation messages describe a table's columns as of the WAL they precede; each new set of captured
-- columns (name, type, typmod) is a version, from the LSN of the first change it describes. A restart
-- replays WAL from the slot's confirmed position: its relation messages find the version they had.
CREATE TABLE pgtunnel.logical_schemas (
  table_id text NOT NULL,
  schema_version int NOT NULL,
  from_lsn pg_lsn NOT NULL,
  -- [{"name", "typeOid", "typeMod"}] in the table's column order
  columns jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_id, schema_version)
);
