// The producer's record building alone (Kafka, no PostgreSQL): N envelopes of ~300 bytes to one topic of 3
// partitions, lz4, idempotent, acks=all, in pages as the publish step hands them over. Two ways, in turns,
// each round in its own child process under --trace-gc-nvp (V8 heap bytes allocated, summed over the GCs of
// the measured part): `client` is the path EnvelopeProducer.publish took before (@platformatic/kafka builds
// the records), `batches` is EnvelopeProducer.publish now (our encoder, BatchSender, two requests in flight). CPU µs/record is the figure to compare on a loaded machine.
//   node dist/bench/recordBatches.js [records=200000] [--rounds 2] [--brokers host:port]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Producer, stringSerializer } from '@platformatic/kafka';
import { EnvelopeProducer, ensureTopics, endOffsets } from '../src/transport/kafka.js';
import { placeRequests } from '../src/transport/recordPages.js';
import { startTestStack } from '../testkit/testStack.js';
import type { WireMessage } from '../src/contracts/envelope.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const records = Number(args.find((a) => /^\d+$/.test(a)) ?? 200_000);
const pageSize = 5000;
const partitions = 3;
const marker = 'record-batches-bench';

/** A snapshot envelope of about 300 bytes, as the publish step passes it: key and value as JSON text. */
function page(from: number, n: number, topic: string): WireMessage[] {
  const out: WireMessage[] = [];
  for (let i = from; i < from + n; i++) {
    const after = `{"emp_id":${i},"first_name":"first${i}","last_name":"last${i}","dob":"1970-01-01","city":"city${i % 100}","salary":${i % 100000}}`;
    const value = `{"before":null,"after":${after},"op":"r","ts_ms":1765000000000,"source":{"version":"1.0","connector":"pgtunnel","name":"pgtunnel","ts_ms":1765000000000,"snapshot":"true","db":"db1","schema":"public","table":"employees","txId":null,"lsn":null,"schema_version":1}}`;
    out.push({ topic, key: `{"emp_id":${i}}`, value });
  }
  return out;
}

const bytes = (v: string | Buffer | undefined) => (v === undefined ? undefined : typeof v === 'string' ? Buffer.from(v) : v);

/** One measured round in this process: prints the markers the parent sums GC lines between, and the figures. */
async function round(way: 'client' | 'batches', brokers: string, topic: string): Promise<void> {
  const kafka = { kafkaBrokers: [brokers] };
  let publish: (messages: WireMessage[]) => Promise<void>;
  let close: () => Promise<void>;
  if (way === 'client') {
    // today's path before this change: the client builds the records, requests of ~1 MB one after the other
    const producer = new Producer({ clientId: 'bench-client', bootstrapBrokers: [brokers], idempotent: true, acks: -1, compression: 'lz4', retries: 3, timeout: 10_000, serializers: { key: bytes, value: bytes, headerKey: stringSerializer, headerValue: stringSerializer } });
    publish = async (m) => {
      for (const request of placeRequests(m, new Map([[topic, partitions]]), 1024 * 1024)) {
        await producer.send({ messages: request.flatMap((p) => p.records.map((r) => ({ topic: p.topic, partition: p.partition, key: r.key, value: r.value }))) });
      }
    };
    close = () => producer.close();
  } else {
    const producer = new EnvelopeProducer(kafka, 'bench-batches');
    publish = (m) => producer.publish(m);
    close = () => producer.close();
  }
  for (let i = 0; i < 10_000; i += pageSize) await publish(page(i, pageSize, topic)); // warm-up: connections, JIT
  const pages = [];
  for (let i = 0; i < records; i += pageSize) pages.push(page(i, Math.min(pageSize, records - i), topic));
  const before = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc(); // what the warm-up left is collected before the start marker; the last GC below reports the rest
  console.log(`${marker} start`);
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  for (const p of pages) await publish(p);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const used = process.cpuUsage(cpu);
  gc();
  console.log(`${marker} end`);
  const after = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  await close();
  console.log(`${marker} ${JSON.stringify({ way, records, ms, cpuUs: used.user + used.system, written: Number(after - before) })}`);
}

function child(way: string, brokers: string, topic: string) {
  const r = spawnSync(process.execPath, ['--trace-gc-nvp', '--expose-gc', fileURLToPath(import.meta.url), String(records), '--round', way, '--brokers', brokers, '--topic', topic], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`bench: ${way} round failed: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  const start = lines.indexOf(`${marker} start`);
  const end = lines.indexOf(`${marker} end`);
  let allocated = 0;
  for (const line of lines.slice(start, end)) allocated += Number(/ allocated=(\d+)/.exec(line)?.[1] ?? 0);
  const figures = JSON.parse(lines.find((l) => l.startsWith(`${marker} {`))!.slice(marker.length + 1));
  if (figures.written !== records) throw new Error(`bench: ${way} wrote ${figures.written} records, not ${records}`);
  return { ...figures, allocated };
}

async function main(): Promise<void> {
  if (option('--round')) return round(option('--round') as 'client' | 'batches', option('--brokers')!, option('--topic')!);
  let stack;
  let brokers = option('--brokers');
  if (!brokers) {
    const started = await startTestStack(path.join(root, '.pgtunnel'), 'bench-record-batches');
    stack = started.stack;
    brokers = started.env.PGTUNNEL_TEST_BROKERS!;
  }
  try {
    const topic = `bench-record-batches-${Date.now()}`;
    await ensureTopics({ kafkaBrokers: [brokers] }, [topic], partitions);
    const rounds = Number(option('--rounds') ?? 2);
    const results = [];
    for (let r = 0; r < rounds; r++) for (const way of ['client', 'batches']) results.push(child(way, brokers, topic));
    console.log('way      records/s  CPU µs/record  V8 heap bytes allocated/record');
    for (const r of results) console.log(`${r.way.padEnd(8)} ${Math.round(r.records / (r.ms / 1000)).toString().padStart(9)}  ${(r.cpuUs / r.records).toFixed(2).padStart(13)}  ${Math.round(r.allocated / r.records).toString().padStart(30)}`);
  } finally {
    await stack?.down();
  }
}

await main();
