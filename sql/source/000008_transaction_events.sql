-- Transaction metadata (opt-in, `transactionMetadata: true`): how many changes each source transaction
-- wrote into each captured table, committed with the changes themselves. A table's producer reads only
-- committed transactions, so the counts it reads are final; another table's producer may clean up its own
-- change rows at any time, so the counts live here and not in the change tables. `published` marks a
-- table's producer having passed the transaction; a transaction's rows go once every table has.
CREATE TABLE pgtunnel.transaction_events (
  txid xid8 NOT NULL,
  table_id text NOT NULL,
  events bigint NOT NULL,
  published boolean NOT NULL DEFAULT false,
  PRIMARY KEY (txid, table_id)
);

-- An AFTER INSERT statement trigger on a change table: counts exactly the change rows capture wrote (the
-- deletes of a key-changing update and truncates included). Runs as the installer, like capture itself.
CREATE FUNCTION pgtunnel.count_transaction_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO pgtunnel.transaction_events AS e (txid, table_id, events)
  SELECT n.txid, TG_ARGV[0], count(*) FROM pgtunnel_new_changes n GROUP BY n.txid
  ON CONFLICT (txid, table_id) DO UPDATE SET events = e.events + EXCLUDED.events;
  RETURN NULL;
END
$fn$;
SELECT pgtunnel.revoke_execute('pgtunnel.count_transaction_events()'::regprocedure);
