-- DDL by anyone keeps working, and only the captured table can call its capture (issue 19).
-- on_ddl ran with the rights of whoever ran the DDL: an application role with no grant on schema pgtunnel
-- got `permission denied` on every ALTER TABLE in the database. It now runs as the installer, catches every
-- error of its own, and when it cannot follow a change it leaves that table's capture matching values by
-- name (which no DDL can break) and records why, for `status`.
ALTER TABLE pgtunnel.captures
  -- true once the DDL trigger could not follow a change: capture matches by name until `pgtunnel install`
  ADD COLUMN by_name boolean NOT NULL DEFAULT false,
  ADD COLUMN ddl_problem text,
  ADD COLUMN ddl_problem_at timestamptz;

-- change ids restart with a reinstalled change table; the transaction id never does
ALTER TABLE pgtunnel.truncates DROP CONSTRAINT truncates_pkey, ADD PRIMARY KEY (table_id, txid, change_id);

-- Takes EXECUTE from everyone but the owner: PUBLIC, and roles that default privileges
-- (ALTER DEFAULT PRIVILEGES … GRANT EXECUTE) gave it to. Triggers fire whatever EXECUTE says (it is
-- checked when a trigger is created), so no writer of a captured table needs it.
CREATE OR REPLACE FUNCTION pgtunnel.revoke_execute(p_fn regprocedure) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE grantee oid;
BEGIN
  EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', p_fn);
  FOR grantee IN SELECT DISTINCT a.grantee FROM pg_proc p, aclexplode(p.proacl) a
                 WHERE p.oid = p_fn AND a.grantee NOT IN (0, p.proowner) LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', p_fn, grantee::regrole);
  END LOOP;
END
$fn$;

-- Generates the four capture functions from the change table's columns (never the source's): in by-name
-- mode it needs nothing of the source, so it is the fallback when adopting the source's columns fails.
CREATE OR REPLACE FUNCTION pgtunnel.generate_capture(p_table_id text, p_direct boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $gen$
DECLARE
  cap pgtunnel.captures;
  control text[] := ARRAY['action', 'change_id', 'txid', 'captured_at', 'schema_version'];
  cols text[];
  list text;
  sel_new text;
  sel_old text;
  from_new text;
  from_old text;
  key_match text;
  head_new text;
  head_old text;
  tail_new text;
  tail_old text;
  anti_join text;
  guard text;
  fn text;
  -- every capture function: SECURITY DEFINER with a pinned search_path, its declarations and its body
  fn_tpl text := $t$CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$ %s BEGIN %s %s RETURN NULL; END $b$$t$;
BEGIN
  SELECT * INTO STRICT cap FROM pgtunnel.captures WHERE table_id = p_table_id;
  SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO cols FROM pg_attribute a
   WHERE a.attrelid = cap.change_table AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY (control);
  SELECT string_agg(format('%I', c), ', ') INTO list FROM unnest(cols) c;
  IF p_direct THEN
    SELECT string_agg(format('n.%I', c), ', '), string_agg(format('o.%I', c), ', ') INTO sel_new, sel_old FROM unnest(cols) c;
    from_new := 'new_rows n';
    from_old := 'old_rows o';
  ELSE
    SELECT string_agg(format('rn.%I', c), ', '), string_agg(format('ro.%I', c), ', ') INTO sel_new, sel_old FROM unnest(cols) c;
    from_new := format('new_rows n, json_populate_record(NULL::%s, row_to_json(n.*)) rn', cap.change_table);
    from_old := format('old_rows o, json_populate_record(NULL::%s, row_to_json(o.*)) ro', cap.change_table);
  END IF;
  SELECT string_agg(format('n.%I = o.%I', k, k), ' AND ') INTO key_match FROM unnest(cap.key_columns) k;
  -- attached to any other table (a role granted EXECUTE, by default privileges say), the function refuses
  -- rather than write forged change rows; looked up by oid, so a renamed or restored table still matches
  guard := format('IF NOT EXISTS (SELECT 1 FROM pgtunnel.captures WHERE table_id = %L AND source_table = TG_RELID) THEN '
    || 'RAISE EXCEPTION ''pgtunnel: a capture function of another table fired on %%.%%'', TG_TABLE_SCHEMA, TG_TABLE_NAME '
    || 'USING ERRCODE = ''42501'', HINT = ''drop this trigger: only the captured table may call its capture''; END IF;', cap.table_id);

  -- the statements writing a transition table's rows with an action: head || quote_literal(action) || tail
  -- (concatenated, never a format string: a quoted column name may hold a %)
  head_new := format('INSERT INTO %s (%s, action, schema_version) SELECT %s, ', cap.change_table, list, sel_new);
  head_old := format('INSERT INTO %s (%s, action, schema_version) SELECT %s, ', cap.change_table, list, sel_old);
  tail_new := format(', %s FROM %s', cap.schema_version, from_new);
  tail_old := format(', %s FROM %s', cap.schema_version, from_old);
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_ins'), '', guard, head_new || quote_literal('INSERT') || tail_new || ';');
  -- a key-changing update: every new row is an upsert, every old key no new row has is a delete; the
  -- anti-join runs as a cached statement only for one row and is planned for its size otherwise (000006)
  anti_join := head_old || quote_literal('DELETE') || tail_old || ' WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE ' || key_match || ')';
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_upd'), 'DECLARE pgtunnel_rows bigint;', guard,
    head_new || quote_literal('UPDATE') || tail_new || '; '
    || 'GET DIAGNOSTICS pgtunnel_rows = ROW_COUNT; '
    || 'IF pgtunnel_rows = 1 THEN ' || anti_join || '; '
    || 'ELSIF pgtunnel_rows > 1 THEN EXECUTE ' || quote_literal(anti_join) || '; END IF;');
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_del'), '', guard, head_old || quote_literal('DELETE') || tail_old || ';');
  -- TRUNCATE: one change row and its record; records published (below the checkpoint) more than 7 days
  -- ago are pruned, so the table grows only with recent truncates (a consumer lagging more than that
  -- dead-letters the old truncate instead of honouring it)
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_trunc'), 'DECLARE id bigint;', guard,
    format('INSERT INTO %s (action, schema_version) VALUES (''TRUNCATE'', %s) RETURNING change_id INTO id; ', cap.change_table, cap.schema_version)
    || format('INSERT INTO pgtunnel.truncates (table_id, change_id) VALUES (%L, id); ', cap.table_id)
    || format('DELETE FROM pgtunnel.truncates t USING pgtunnel.state s WHERE t.table_id = %L AND s.table_id = t.table_id '
       || 'AND s.prev_snapshot IS NOT NULL AND pg_visible_in_snapshot(t.txid, s.prev_snapshot) AND t.recorded_at < now() - interval ''7 days'';', cap.table_id));
  FOREACH fn IN ARRAY ARRAY['_ins', '_upd', '_del', '_trunc'] LOOP
    PERFORM pgtunnel.revoke_execute(format('pgtunnel.%I()', cap.function_prefix || fn)::regprocedure);
  END LOOP;
END
$gen$;

-- sync_capture as in 000006: adopts the source's columns, then generates; direct naming only while the
-- DDL trigger follows this table
CREATE OR REPLACE FUNCTION pgtunnel.sync_capture(p_table_id text) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $sync$
DECLARE
  cap pgtunnel.captures;
  col record;
  ct text;
  changed boolean := false;
  -- naming columns directly is safe only while both event triggers follow every column change
  direct boolean := (SELECT count(*) FROM pg_event_trigger WHERE evtname IN ('pgtunnel_ddl', 'pgtunnel_ddl_drop') AND evtenabled <> 'D') = 2;
  control text[] := ARRAY['action', 'change_id', 'txid', 'captured_at', 'schema_version'];
BEGIN
  SELECT * INTO cap FROM pgtunnel.captures WHERE table_id = p_table_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pgtunnel: table % is not captured', p_table_id;
  END IF;
  FOR col IN SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS typ FROM pg_attribute a
             WHERE a.attrelid = cap.source_table AND a.attnum > 0 AND NOT a.attisdropped
               AND NOT a.attname = ANY (cap.excluded_columns) ORDER BY a.attnum LOOP
      SELECT format_type(a.atttypid, a.atttypmod) INTO ct FROM pg_attribute a
       WHERE a.attrelid = cap.change_table AND a.attname = col.name AND NOT a.attisdropped;
      IF ct IS NULL THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', cap.change_table, col.name, col.typ);
        changed := true;
      ELSIF ct <> col.typ THEN
        BEGIN
          EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE %s USING %I::text::%s', cap.change_table, col.name, col.typ, col.name, col.typ);
        EXCEPTION WHEN OTHERS THEN
          -- rows not yet published that the new type cannot hold keep their text
          EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE text', cap.change_table, col.name);
        END;
        changed := true;
      END IF;
    END LOOP;
  FOR col IN SELECT a.attname::text AS name FROM pg_attribute a
             WHERE a.attrelid = cap.change_table AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY (control)
               AND (a.attname = ANY (cap.excluded_columns) OR NOT EXISTS (
                    SELECT 1 FROM pg_attribute s WHERE s.attrelid = cap.source_table AND s.attname = a.attname AND s.attnum > 0 AND NOT s.attisdropped)) LOOP
    EXECUTE format('ALTER TABLE %s DROP COLUMN %I', cap.change_table, col.name);
    changed := true;
  END LOOP;
  IF changed THEN
    UPDATE pgtunnel.captures SET schema_version = schema_version + 1 WHERE table_id = p_table_id RETURNING * INTO cap;
  END IF;
  PERFORM pgtunnel.generate_capture(p_table_id, direct AND NOT cap.by_name);
  RETURN cap.schema_version;
END
$sync$;

-- Follows one captured table's DDL; never raises. A failure regenerates capture by name and records why.
CREATE OR REPLACE FUNCTION pgtunnel.follow_ddl(p_table_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE problem text;
BEGIN
  BEGIN
    PERFORM pgtunnel.sync_capture(p_table_id);
    RETURN;
  EXCEPTION WHEN OTHERS THEN
    problem := SQLERRM;
  END;
  BEGIN
    UPDATE pgtunnel.captures SET by_name = true, ddl_problem = problem, ddl_problem_at = now() WHERE table_id = p_table_id;
    PERFORM pgtunnel.generate_capture(p_table_id, false);
    RAISE WARNING 'pgtunnel could not follow this DDL on % (%); its capture now matches columns by name: run `pgtunnel install` to adopt the new columns', p_table_id, problem;
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgtunnel could not follow this DDL on %: % (then: %); `pgtunnel status` says how to repair it', p_table_id, problem, SQLERRM;
  END;
END
$fn$;

-- Follows the captured tables among p_tables (source table oids, still present); never raises.
CREATE OR REPLACE FUNCTION pgtunnel.follow_tables(p_tables oid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.table_id FROM pgtunnel.captures c
           WHERE c.source_table::oid = ANY (p_tables) AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c.source_table) LOOP
    PERFORM pgtunnel.follow_ddl(t);
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  -- the application's statement goes through whatever happens here
  RAISE WARNING 'pgtunnel could not follow this DDL: %', SQLERRM;
END
$fn$;

-- ALTER TABLE on captured tables, inside the DDL's transaction, as the installer.
CREATE OR REPLACE FUNCTION pgtunnel.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM pgtunnel.follow_tables(ARRAY(SELECT d.objid FROM pg_event_trigger_ddl_commands() d WHERE d.classid = 'pg_class'::regclass));
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pgtunnel could not follow this DDL: %', SQLERRM;
END
$fn$;

-- DROP TYPE … CASCADE and DROP DOMAIN … CASCADE remove columns with no ALTER TABLE: sql_drop lists them
-- as 'table column' objects of their table (objid). pgtunnel_ddl stays the one switch: disabled, neither
-- follows and capture matches by name.
CREATE OR REPLACE FUNCTION pgtunnel.on_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl' AND evtenabled <> 'D') THEN
    PERFORM pgtunnel.follow_tables(ARRAY(SELECT d.objid FROM pg_event_trigger_dropped_objects() d WHERE d.object_type = 'table column'));
  END IF;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pgtunnel could not follow this DROP: %', SQLERRM;
END
$fn$;

DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AND EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl')
     AND NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl_drop') THEN
    CREATE EVENT TRIGGER pgtunnel_ddl_drop ON sql_drop EXECUTE FUNCTION pgtunnel.on_drop();
  END IF;
END $$;

-- nobody but the installer calls pgtunnel's functions; the producer is granted wait_for_commit (README)
DO $$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'pgtunnel'::regnamespace LOOP
    PERFORM pgtunnel.revoke_execute(f);
  END LOOP;
END $$;
