-- Capture by column name, owned by pgtunnel, following the source table's DDL.
-- pgtunnel.captures records what install created for each captured table: uninstall drops only that,
-- and a change table name can never point at an object pgtunnel did not create.
CREATE TABLE pgtunnel.captures (
  table_id text PRIMARY KEY,
  source_table regclass NOT NULL,
  change_table regclass NOT NULL UNIQUE,
  function_prefix text NOT NULL UNIQUE,
  key_columns text[] NOT NULL,
  -- columns never captured (config `exclude`): not in the change table, never read, never in Kafka
  excluded_columns text[] NOT NULL DEFAULT '{}',
  -- bumped whenever the captured columns change; each change row carries the version it was written with
  schema_version int NOT NULL DEFAULT 1
);

-- Every TRUNCATE capture recorded, so the consumer honours a truncate envelope only when the source's
-- capture wrote it: anyone who can write a topic could otherwise empty a target table.
CREATE TABLE pgtunnel.truncates (
  table_id text NOT NULL,
  change_id bigint NOT NULL,
  txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_id, change_id)
);

-- Capture functions run as their owner (SECURITY DEFINER) with a pinned search_path: any role that may
-- write the table keeps writing without rights on the change table, and no writer can forge change rows.
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
  -- a key-changing update: every new row is an upsert, every old key no new row has is a delete
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_upd'), '',
    head_new || quote_literal('UPDATE') || tail_new || '; '
    || head_old || quote_literal('DELETE') || tail_old || ' WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE ' || key_match || ');');
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_del'), '', head_old || quote_literal('DELETE') || tail_old || ';');
  -- TRUNCATE fires no row trigger: one change row; its ACCESS EXCLUSIVE lock orders it against the rest
  EXECUTE format(fn_tpl, format('pgtunnel.%I', cap.function_prefix || '_trunc'), 'DECLARE id bigint;',
    format('INSERT INTO %s (action, schema_version) VALUES (''TRUNCATE'', %s) RETURNING change_id INTO id; ', cap.change_table, cap.schema_version)
    || format('INSERT INTO pgtunnel.truncates (table_id, change_id) VALUES (%L, id);', cap.table_id));
  RETURN cap.schema_version;
END
$sync$;

-- Follows ALTER TABLE on captured tables inside the DDL's transaction. Creating an event trigger needs a
-- superuser; without one capture keeps the columns it knows and `pgtunnel status` names the others.
CREATE OR REPLACE FUNCTION pgtunnel.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.table_id FROM pgtunnel.captures c
           WHERE c.source_table IN (SELECT d.objid FROM pg_event_trigger_ddl_commands() d WHERE d.classid = 'pg_class'::regclass) LOOP
    BEGIN
      PERFORM pgtunnel.sync_capture(t);
    EXCEPTION WHEN OTHERS THEN
      -- the application's DDL must go through whatever state capture is in (its change table dropped by
      -- hand, say); the producer reports broken capture with the repair
      RAISE WARNING 'pgtunnel could not follow this DDL on %: %', t, SQLERRM;
    END;
  END LOOP;
END
$fn$;

DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER pgtunnel_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION pgtunnel.on_ddl();
  END IF;
END $$;
