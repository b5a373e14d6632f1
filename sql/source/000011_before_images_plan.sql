-- generate_capture as in 000009, but the UPDATE function of a `before: full` table no longer serves a bulk
-- UPDATE with a plan made for one row. PL/pgSQL keeps a statement's plan for the session, planned at its first
-- run with the transition tables' sizes of that run: after single-row UPDATEs, the join of the inserted change
-- rows with old_rows stayed a nested loop, and a later 50,000-row UPDATE in that session compared every pair
-- (722x a trigger-less UPDATE, bench/RESULTS.md). The same cure as 000006's anti-join: the cached statements
-- run only when the statement changed at most one row, EXECUTE plans them for their size otherwise (which also
-- takes the planning of the anti-join off the single-row path). Without `before: full` the functions are
-- 000007's exactly. Existing `before: full` captures are regenerated below.
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
  ret_keys text;
  key_match_io text;
  with_images text;
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
  IF cap.before_full THEN
    -- before: full — each update row's old row (captured columns only) beside it, by its change_id; a row
    -- whose key changed has none (its old key's DELETE carries it)
    SELECT string_agg(format('%I', k), ', '), string_agg(format('i.%I = o.%I', k, k), ' AND ') INTO ret_keys, key_match_io FROM unnest(cap.key_columns) k;
    with_images := 'WITH pgtunnel_ins AS (' || head_new || quote_literal('UPDATE') || tail_new || ' RETURNING change_id, ' || ret_keys || ') '
      || 'INSERT INTO pgtunnel.before_images (table_id, change_id, image) SELECT ' || quote_literal(cap.table_id)
      || ', i.change_id, (SELECT to_jsonb(b.*) FROM (SELECT ' || sel_old || ') b) FROM pgtunnel_ins i, ' || from_old || ' WHERE ' || key_match_io;
    -- one old row: the statements' cached plans (planned once for one row); more: planned for their size
    EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_upd'), '', guard,
      'IF NOT EXISTS (SELECT 1 FROM old_rows OFFSET 1) THEN ' || with_images || '; ' || anti_join || '; '
      || 'ELSE EXECUTE ' || quote_literal(with_images) || '; EXECUTE ' || quote_literal(anti_join) || '; END IF;');
  ELSE
    EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_upd'), 'DECLARE pgtunnel_rows bigint;', guard,
      head_new || quote_literal('UPDATE') || tail_new || '; '
      || 'GET DIAGNOSTICS pgtunnel_rows = ROW_COUNT; '
      || 'IF pgtunnel_rows = 1 THEN ' || anti_join || '; '
      || 'ELSIF pgtunnel_rows > 1 THEN EXECUTE ' || quote_literal(anti_join) || '; END IF;');
  END IF;
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

DO $regen$
DECLARE
  t text;
  direct boolean := EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl' AND evtenabled <> 'D');
BEGIN
  FOR t IN SELECT table_id FROM pgtunnel.captures c WHERE c.before_full LOOP
    PERFORM pgtunnel.generate_capture(t, direct AND NOT (SELECT by_name FROM pgtunnel.captures WHERE table_id = t));
  END LOOP;
END
$regen$;
