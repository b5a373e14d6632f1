-- A table moving from a slot of its own onto the source's shared slot (issue 22, capture/slotMigration.ts): the
-- LSN its own slot must confirm before the table's changes come from the shared slot (a transactional logical
-- message emitted while the shared slot is held, after the table joined the shared publication). NULL: no move.
ALTER TABLE pgtunnel.state ADD COLUMN IF NOT EXISTS slot_migration pg_lsn;
