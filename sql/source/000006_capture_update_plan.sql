-- sync_capture as in 000003, but the UPDATE capture function no longer keeps a nested-loop plan for its
-- anti-join: a session whose first UPDATEs touched one row each cached that plan, and a later bulk UPDATE
-- in the same session spent 15.7 s on 20,000 rows (quadratic; pgbench-style single-row sessions and
-- connection pools hit it). Only the generated text of the UPDATE function differs; the table migration
-- 000006 regenerates each captured table's functions.
CREATE OR REPLACE FUNCTION pgtunnel.sync_capture(p_table_id text) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $sync$
DECLARE
  cap pgtunnel.captures;
  col record;
  ct text;
  changed boolean := false;
  -- with the DDL event trigger, capture is regenerated in the DDL's own transaction and may name the
  -- source's columns directly (fastest); without it, values are matched by name through row_to_json so
  -- DROP / RENAME COLUMN on the source never breaks a write
  direct boolean := EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl' AND evtenabled <> 'D');
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
  -- every capture function: SECURITY DEFINER with a pinned search_path, its declarations and its body
  fn_tpl text := $t$CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$ %s BEGIN %s RETURN NULL; END $b$$t$;
BEGIN
  SELECT * INTO cap FROM pgtunnel.captures WHERE table_id = p_table_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pgtunnel: table % is not captured', p_table_id;
  END IF;
  -- adopt the source's columns: add new ones, follow type changes, drop what the source dropped
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

  SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO cols FROM pg_attribute a
   WHERE a.attrelid = cap.change_table AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY (control);
  SELECT string_agg(format('%I', c), ', ') INTO list FROM unnest(cols) c;
  IF direct THEN
    SELECT string_agg(format('n.%I', c), ', '), string_agg(format('o.%I', c), ', ') INTO sel_new, sel_old FROM unnest(cols) c;
    from_new := 'new_rows n';
    from_old := 'old_rows o';
  ELSE
    SELECT string_agg(format('rn.%I', c), ', '), string_agg(format('ro.%I', c), ', ') INTO sel_new, sel_old FROM unnest(cols) c;
    from_new := format('new_rows n, json_populate_record(NULL::%s, row_to_json(n.*)) rn', cap.change_table);
    from_old := format('old_rows o, json_populate_record(NULL::%s, row_to_json(o.*)) ro', cap.change_table);
  END IF;
  SELECT string_agg(format('n.%I = o.%I', k, k), ' AND ') INTO key_match FROM unnest(cap.key_columns) k;

  -- the statements writing a transition table's rows with an action: head || quote_literal(action) || tail
  -- (concatenated, never a format string: a quoted column name may hold a %)
  head_new := format('INSERT INTO %s (%s, action, schema_version) SELECT %s, ', cap.change_table, list, sel_new);
  head_old := format('INSERT INTO %s (%s, action, schema_version) SELECT %s, ', cap.change_table, list, sel_old);
  tail_new := format(', %s FROM %s', cap.schema_version, from_new);
  tail_old := format(', %s FROM %s', cap.schema_version, from_old);
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_ins'), '', head_new || quote_literal('INSERT') || tail_new || ';');
  -- a key-changing update: every new row is an upsert, every old key no new row has is a delete. The
  -- anti-join's plan is cached with the row counts of the session's first UPDATE: after single-row
  -- updates it stays a nested loop, quadratic for a later bulk UPDATE (20,000 rows: 15.7 s). So it runs
  -- as a cached statement only for one row and is planned for its size otherwise.
  anti_join := head_old || quote_literal('DELETE') || tail_old || ' WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE ' || key_match || ')';
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_upd'), 'DECLARE pgtunnel_rows bigint;',
    head_new || quote_literal('UPDATE') || tail_new || '; '
    || 'GET DIAGNOSTICS pgtunnel_rows = ROW_COUNT; '
    || 'IF pgtunnel_rows = 1 THEN ' || anti_join || '; '
    || 'ELSIF pgtunnel_rows > 1 THEN EXECUTE ' || quote_literal(anti_join) || '; END IF;');
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_del'), '', head_old || quote_literal('DELETE') || tail_old || ';');
  -- TRUNCATE fires no row trigger: one change row; its ACCESS EXCLUSIVE lock orders it against the rest
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_trunc'), 'DECLARE id bigint;',
    format('INSERT INTO %s (action, schema_version) VALUES (''TRUNCATE'', %s) RETURNING change_id INTO id; ', cap.change_table, cap.schema_version)
    || format('INSERT INTO pgtunnel.truncates (table_id, change_id) VALUES (%L, id);', cap.table_id));
  RETURN cap.schema_version;
END
$sync$;
