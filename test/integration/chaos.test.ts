// Alone in the suite (scripts/test.mjs): these runs kill the shared stack's Kafka, target or source; every kind of
// victim is killed in the first rounds. transactionalChaos.test kills only its own tunnel's processes, beside others.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chaosCases } from '../helpers/chaos.js';

// Both delivery modes side by side through the same kills: the broker's and the target's restarts, most of a
// round's time, are paid once for both tunnels.
test('chaos (exactlyOnce and default, side by side): SIGKILL to producer, consumer, tunnel, Kafka and target PostgreSQL; each record applied once; exactly-once: no envelope twice, no version going back; default: re-sent changes are distinct records and the target converges', { timeout: 600_000 }, async (t) => {
  // five rounds: the five default victims, each killed once (a sixth, random one proved nothing more)
  const [once, atLeastOnce] = await chaosCases(t, [{ name: 'exactlyOnce', exactlyOnce: true }, { name: 'default', exactlyOnce: false }], 5);
  assert.deepEqual(once!.twice, [], 'exactlyOnce: no source change published twice (librdkafka read_committed)');
  assert.deepEqual(once!.regressions, [], 'exactlyOnce: the target never went back to an older version nor upserted a key twice in one apply');
  t.diagnostic(`default, per-partition apply: ${(await atLeastOnce!.split()).split.length} source transactions applied in parts (the transactional test's oracle, for contrast)`);
  // A re-sent suffix is applied again (the target goes back, then forward): true of this mode, reported, not failed.
  t.diagnostic(`default, at-least-once: ${atLeastOnce!.twice.length} changes re-sent, ${atLeastOnce!.regressions.length} target writes repeated or went back before converging`);
});

// the slot survives the source's crash and restart, and the producer reconnects and resumes from its confirmed position
// (logicalExactlyOnce.test kills the tunnel's processes in exactly-once mode beside other files)
test('chaos (capture: logical): SIGKILL to the source PostgreSQL, the tunnel, its producer and its consumer; the target converges, each record applied once', { timeout: 600_000 }, async (t) => {
  const [logical] = await chaosCases(t, [{ name: 'logical', exactlyOnce: false, env: { PGTUNNEL_CAPTURE: 'logical' } }], 4, ['source', 'tunnel', 'producer', 'consumer']);
  t.diagnostic(`at-least-once: ${logical!.twice.length} changes re-sent, ${logical!.regressions.length} target writes repeated or went back before converging`);
});
