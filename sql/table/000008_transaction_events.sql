-- The transaction counter of this change table (sql/source/000008), created disabled: install enables it
-- only while `transactionMetadata` is on, so capture pays nothing for it otherwise.
CREATE TRIGGER pgtunnel_transaction_events AFTER INSERT ON {{changeTable}}
  REFERENCING NEW TABLE AS pgtunnel_new_changes FOR EACH STATEMENT
  EXECUTE FUNCTION pgtunnel.count_transaction_events({{tableIdLiteral}});
ALTER TABLE {{changeTable}} DISABLE TRIGGER pgtunnel_transaction_events;
