-- Regenerates the capture functions with sql/source/000007: each refuses to run on any table but its own,
-- and nobody holds EXECUTE on them.
SELECT pgtunnel.sync_capture({{tableIdLiteral}});
