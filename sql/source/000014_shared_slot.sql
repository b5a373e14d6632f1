-- One slot per source (issue 22): a table that joins the source's shared slot after a snapshot takes the
-- changes of transactions committing at or after the consistent point of the temporary slot whose exported
-- snapshot it was read in. Kept so a crash during or after the snapshot still joins at the same point.
ALTER TABLE pgtunnel.state ADD COLUMN IF NOT EXISTS join_lsn pg_lsn;
