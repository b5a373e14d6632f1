-- Change rows the producer sent to the dead-letter topic instead of the table topic (bad actions).
ALTER TABLE pgtunnel.state ADD COLUMN dead_lettered bigint NOT NULL DEFAULT 0;
