-- Statement-level triggers with transition tables: one INSERT … SELECT per statement, not per row
-- (measured 1.5x a trigger-less bulk UPDATE where a row trigger cost 2.5x).
-- The change table starts with the captured table's columns in the same order, so `n.*` lines up.
CREATE OR REPLACE FUNCTION {{captureFunction}}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {{changeTable}} SELECT n.*, 'INSERT' FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO {{changeTable}} SELECT n.*, 'UPDATE' FROM new_rows n;
    -- a key-changing update: the old key is gone, so it is captured as a delete of the old key
    INSERT INTO {{changeTable}} SELECT o.*, 'DELETE' FROM old_rows o
      WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE {{keyJoin}});
  ELSE
    INSERT INTO {{changeTable}} SELECT o.*, 'DELETE' FROM old_rows o;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER pgtunnel_capture_insert AFTER INSERT ON {{table}}
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{captureFunction}}();
CREATE TRIGGER pgtunnel_capture_update AFTER UPDATE ON {{table}}
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {{captureFunction}}();
CREATE TRIGGER pgtunnel_capture_delete AFTER DELETE ON {{table}}
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{captureFunction}}();
