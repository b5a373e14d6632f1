-- Regenerates the capture functions with sync_capture from sql/source/000006 (the UPDATE function's
-- anti-join planned for its size): every captured table, not only the one whose install applied it.
SELECT pgtunnel.sync_capture({{tableIdLiteral}});
