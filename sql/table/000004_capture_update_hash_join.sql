-- 000002 matched old and new keys with IS NOT DISTINCT FROM, which only a nested loop can evaluate:
-- quadratic in the rows of one UPDATE (a 10,000-row UPDATE took 1 s). Keys are never null, so `=`
-- lets the planner hash the transition tables instead.
CREATE OR REPLACE FUNCTION {{captureFunction}}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {{changeTable}} SELECT n.*, 'INSERT' FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO {{changeTable}} SELECT n.*, 'UPDATE' FROM new_rows n;
    -- a key-changing update: the old key is gone, so it is captured as a delete of the old key
    INSERT INTO {{changeTable}} SELECT o.*, 'DELETE' FROM old_rows o
      WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE {{keyEquals}});
  ELSE
    INSERT INTO {{changeTable}} SELECT o.*, 'DELETE' FROM old_rows o;
  END IF;
  RETURN NULL;
END
$fn$;
