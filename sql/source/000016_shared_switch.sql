-- A switch of a table from trigger capture straight onto the source's shared slot (issue 22 item 8,
-- capture/captureSwitch.ts): the LSN M of the boundary transaction's logical message. That transaction pinned
-- trigger capture's last batch at its snapshot (every write committed before it) and set join_lsn = M (the
-- shared stream gives the table every commit after it). NULL: no such switch under way.
ALTER TABLE pgtunnel.state ADD COLUMN IF NOT EXISTS shared_switch pg_lsn;
