-- TRUNCATE fires no row or UPDATE/DELETE trigger: a statement trigger records it as one change.
-- Its ACCESS EXCLUSIVE lock orders it against every other change of the table.
CREATE OR REPLACE FUNCTION {{truncateFunction}}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {{changeTable}} (action) VALUES ('TRUNCATE');
  RETURN NULL;
END
$fn$;

CREATE TRIGGER pgtunnel_capture_truncate AFTER TRUNCATE ON {{table}}
  FOR EACH STATEMENT EXECUTE FUNCTION {{truncateFunction}}();
