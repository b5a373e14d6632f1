-- The idle producer's wait: returns once the source's snapshot differs from the one it last read (a
-- transaction committed or began writing), or after p_timeout_ms. The polling runs here, a snapshot
-- comparison every p_step_ms, so an idle tunnel sends one query per timeout instead of one per poll, and
-- capture pays nothing (a NOTIFY per transaction serialises the writers' commits on a global lock).
CREATE OR REPLACE FUNCTION pgtunnel.wait_for_commit(p_since text, p_step_ms int, p_timeout_ms int) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  deadline timestamptz := clock_timestamp() + make_interval(secs => p_timeout_ms / 1000.0);
BEGIN
  LOOP
    IF pg_current_snapshot()::text IS DISTINCT FROM p_since THEN RETURN true; END IF;
    IF clock_timestamp() >= deadline THEN RETURN false; END IF;
    PERFORM pg_sleep(p_step_ms / 1000.0);
  END LOOP;
END
$fn$;
