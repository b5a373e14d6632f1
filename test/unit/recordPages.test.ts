import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { placeRequests, sendInWindow } from '../../src/transport/recordPages.js';
import { partitionOf } from '../../src/transport/partitions.js';
import type { WireMessage } from '../../src/contracts/envelope.js';

const counts = new Map([['a', 3], ['b', 5]]);
const message = fc.record({
  topic: fc.constantFrom('a', 'b'),
  key: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  value: fc.option(fc.string({ maxLength: 400 }), { nil: undefined }),
  partition: fc.option(fc.oneof(fc.constant('all' as const), fc.nat({ max: 2 })), { nil: undefined }),
});

test('each message lands in its partition once (or once in every partition), in order, in requests near the size asked', () => {
  fc.assert(
    fc.property(fc.array(message, { maxLength: 200 }), fc.integer({ min: 100, max: 5000 }), (messages: WireMessage[], requestBytes) => {
      const requests = placeRequests(messages, counts, requestBytes);
      const expected = new Map<string, WireMessage[]>();
      for (const m of messages) {
        const n = counts.get(m.topic)!;
        const targets = m.partition === 'all' ? [...Array(n).keys()] : [m.partition ?? (m.key === undefined ? 0 : partitionOf(m.key, n))];
        for (const p of targets) expected.set(`${m.topic}:${p}`, [...(expected.get(`${m.topic}:${p}`) ?? []), m]);
      }
      const got = new Map<string, unknown[]>();
      for (const request of requests) {
        assert.ok(request.length > 0);
        for (const part of request) got.set(`${part.topic}:${part.partition}`, [...(got.get(`${part.topic}:${part.partition}`) ?? []), ...part.records]);
        // a request closes as soon as it reaches the size: its records before the last one stay under it
        const size = request.reduce((s, p) => s + p.records.reduce((t, r) => t + (r.value?.length ?? 0) + (r.key?.length ?? 0) + 64, 0), 0);
        assert.ok(size < requestBytes + 64 + 420, `request of ${size} bytes`);
      }
      assert.deepEqual(got, expected);
    }),
  );
});

test('a message with encoded key bytes gets them as its record key', () => {
  const keyBytes = Buffer.from([0, 0, 0, 0, 1, 2]);
  const part = placeRequests([{ topic: 'a', key: '{"id":1}', keyBytes, value: 'v' }], counts, 1 << 20)[0]![0]!;
  assert.equal(part.records[0]!.key, keyBytes);
});

test('at most two requests are unacknowledged, in order; after a failure nothing more is sent and the first error is thrown', async () => {
  const acks: (() => void)[] = [];
  const fails: ((e: Error) => void)[] = [];
  const started: number[] = [];
  let open = 0;
  let most = 0;
  const sending = sendInWindow([0, 1, 2, 3, 4, 5], (i) => {
    started.push(i);
    most = Math.max(most, ++open);
    return new Promise<void>((resolve, reject) => {
      acks[i] = () => (open--, resolve());
      fails[i] = (e) => (open--, reject(e));
    });
  });
  const outcome = sending.then(() => 'resolved', (e: Error) => e.message);
  const settle = () => new Promise((r) => setImmediate(r));
  await settle();
  assert.deepEqual(started, [0, 1]);
  acks[0]!();
  await settle();
  assert.deepEqual(started, [0, 1, 2]);
  fails[2]!(new Error('broker said no'));
  acks[1]!();
  await settle();
  assert.equal(await outcome, 'broker said no');
  assert.deepEqual(started, [0, 1, 2], 'nothing is sent after the failure');
  assert.equal(most, 2);
});
