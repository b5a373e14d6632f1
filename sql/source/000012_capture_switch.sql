-- A switch of a table from logical back to trigger capture (capture/captureSwitch.ts): 'to trigger' once it
-- is decided (the triggers may not be installed yet), 'to trigger at boundary' once the transaction that
-- splits the table's writes between the two captures committed; NULL when no such switch is under way.
ALTER TABLE pgtunnel.state ADD COLUMN capture_switch text CHECK (capture_switch IN ('to trigger', 'to trigger at boundary'));
