-- apply: transactional keeps no key of a spilled record in memory, only a fixed-size summary of them; when
-- the summary says a later record's key may be one of them, the applier asks here. A hash index: a key's text
-- may be longer than a btree entry allows, and only equality is asked.
CREATE INDEX IF NOT EXISTS held_records_key ON pgtunnel.held_records USING hash ((coalesce(record_key, '')));
