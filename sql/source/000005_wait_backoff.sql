-- The idle producer's wait (000004) woke its backend every p_step_ms for as long as the source stayed
-- idle: each wake-up costs ~60 µs of CPU whatever it does (a bare pg_sleep loop costs the same), so
-- 1.2–2.4% of a core at 5 ms. Now the step stays p_step_ms for 2 s after this session last saw the
-- snapshot move, then doubles each second up to 8 × p_step_ms (40 ms at the default 5 ms): under load
-- and within 2 s of the last commit nothing changes; the first commit after a long idle waits at most
-- one long step. The moment is session state (a custom setting): one producer per connection.
CREATE OR REPLACE FUNCTION pgtunnel.wait_for_commit(p_since text, p_step_ms int, p_timeout_ms int) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  now_s float8 := extract(epoch FROM clock_timestamp());
  deadline float8 := now_s + p_timeout_ms / 1000.0;
  moved float8 := NULLIF(current_setting('pgtunnel.snapshot_moved_at', true), '')::float8;
  quiet float8;
  step float8;
BEGIN
  IF moved IS NULL THEN
    moved := now_s;
    PERFORM set_config('pgtunnel.snapshot_moved_at', moved::text, false);
  END IF;
  LOOP
    IF pg_current_snapshot()::text IS DISTINCT FROM p_since THEN
      PERFORM set_config('pgtunnel.snapshot_moved_at', extract(epoch FROM clock_timestamp())::text, false);
      RETURN true;
    END IF;
    now_s := extract(epoch FROM clock_timestamp());
    IF now_s >= deadline THEN RETURN false; END IF;
    quiet := now_s - moved;
    step := CASE WHEN quiet < 2 THEN p_step_ms ELSE least(p_step_ms * 2 ^ ceil(quiet - 2), p_step_ms * 8) END / 1000.0;
    PERFORM pg_sleep(least(step, deadline - now_s));
  END LOOP;
END
$fn$;
