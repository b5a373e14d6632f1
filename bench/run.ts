// npm run bench [-- --quick] [-- --format json,avro]: latency, throughput, snapshot speed, capture overhead and memory, each as a
// ratio to a baseline measured in the same invocation; appends a dated table to bench/RESULTS.md.
// `-- --peers` runs Debezium beside pgtunnel instead (bench/peers.ts); `-- --operations` only the operation timings (bench/operations.ts);
// `-- --transactional` only what `apply: transactional` costs against the default (bench/transactionalApply.ts); `-- --overhead` only the capture overhead on the source (bench/overhead.ts).
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, median, root } from './context.js';
import { nativeLatency, tunnelLatency } from './latency.js';
import { operationRows, operationTimes } from './operations.js';
import { overhead, type OverheadResult } from './overhead.js';
import { peersBench } from './peers.js';
import { latencyPlot } from './plot.js';
import { backlog } from './backlog.js';
import { idleCost } from './idleCost.js';
import { applyScale, type ScaleResult } from './scale.js';
import { snapshot } from './snapshot.js';
import { throughput } from './throughput.js';
import { transactionalCost } from './transactionalApply.js';
import { chooseThreads, describeThreads } from '../src/pipeline/threadChoice.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, smoke: { type: 'boolean', default: false }, 'no-record': { type: 'boolean', default: false }, format: { type: 'string', default: 'json' }, peers: { type: 'boolean', default: false }, operations: { type: 'boolean', default: false }, overhead: { type: 'boolean', default: false }, transactional: { type: 'boolean', default: false } } });
// --smoke (the test suite's): every phase once at the smallest size, to prove the harness runs; its figures mean nothing
const quick = values.quick! || values.smoke!;
// --format json,avro,json-schema: the streaming and snapshot measures once per encoding, side by side
const formats = values.format!.split(',').map((s) => s.trim()) as BenchContext['format'][];
if (formats.some((f) => !['json', 'avro', 'json-schema'].includes(f))) throw new Error(`--format takes json, avro and json-schema (comma-separated), not ${values.format}`);
const needsRegistry = formats.some((f) => f !== 'json');
const plan = values.smoke
  ? { rate: 100, latencySeconds: 1, throughputSeconds: 1, bulkCap: 2_000, floodRate: 200, floodSeconds: 1, backlogChanges: 2_000, idleSeconds: 1, idleProbes: 2, scaleChanges: 2_000, snapshotRows: 2_000, overheadRows: 2_000, pgbenchSeconds: 1, overheadRounds: 1 }
  : quick
  ? { rate: 200, latencySeconds: 4, throughputSeconds: 3, bulkCap: 20_000, floodRate: 500, floodSeconds: 3, backlogChanges: 20_000, idleSeconds: 5, idleProbes: 5, scaleChanges: 10_000, snapshotRows: 20_000, overheadRows: 10_000, pgbenchSeconds: 2, overheadRounds: 4 }
  : { rate: 1000, latencySeconds: 60, throughputSeconds: 20, bulkCap: 500_000, floodRate: 2500, floodSeconds: 30, backlogChanges: 1_000_000, idleSeconds: 30, idleProbes: 20, scaleChanges: 200_000, snapshotRows: 1_000_000, overheadRows: 100_000, pgbenchSeconds: 10, overheadRounds: 4 };

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
// Inside `npm test` the suite's stack is reused; alone, the bench starts a stack of its own.
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'bench-stack', { registry: needsRegistry });
if (needsRegistry && !(own?.env ?? process.env).PGTUNNEL_TEST_REGISTRY_URL) throw new Error('--format avro/json-schema needs the stack\'s schema registry (run the bench alone, or the suite with one)');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
const started = Date.now();
// the seconds since the start: where a run's time went (the smoke's share of the suite's time)
const log = (text: string) => console.log(`bench: [${Math.round((Date.now() - started) / 1000)} s] ${text}`);

type Row = { measure: string; baseline: string; tunnel: string; ratio: string; target: string; met: boolean };
const rows: Row[] = [];
const f = (n: number, digits = 1) => n.toFixed(digits);

const markdown = (rows: Row[]) => ['| measure | baseline (same run) | pgtunnel | ratio | target | met |', '|---|---|---|---|---|---|', ...rows.map((r) => `| ${r.measure} | ${r.baseline} | ${r.tunnel} | ${r.ratio} | ${r.target} | ${r.met ? 'yes' : '**no**'} |`)].join('\n');

/** The tunnel thread that spent the most of an idle window, for the idle rows' profile. */
function busiestThread(threads: Record<string, number>): string {
  const [name, share] = Object.entries(threads).sort((a, b) => b[1] - a[1])[0] ?? ['-', NaN];
  return `most in thread "${name}": ${f(share, 2)}%`;
}

/**
 * The capture-overhead rows: trigger capture against none, logical capture's two ways (bench/overhead.ts). Each
 * cell is the median over the rounds; the ratio is taken per round to the plain run of the same round, shown as
 * its median and its range (min–max), and the target is judged on the median.
 */
function overheadRows(o: OverheadResult): Row[] {
  const range = (per: number[], show: (x: number) => string) => (per.length > 1 ? ` (${show(Math.min(...per))}–${show(Math.max(...per))})` : '');
  const tps = (side: 'captured' | 'logical' | 'logicalTunnel', which: 'insertTps' | 'updateTps') => {
    const per = o[which][side].map((x, i) => (x / o[which].plain[i]!) * 100);
    return { base: f(median(o[which].plain), 0), value: f(median(o[which][side]), 0), ratio: median(per), shown: `${f(median(per), 0)}%${range(per, (x) => `${f(x, 0)}%`)}` };
  };
  const bulk = (side: 'captured' | 'logical' | 'logicalTunnel') => {
    const per = o.bulkUpdateSeconds[side].map((x, i) => x / o.bulkUpdateSeconds.plain[i]!);
    return { base: `${f(median(o.bulkUpdateSeconds.plain), 2)} s`, value: `${f(median(o.bulkUpdateSeconds[side]), 2)} s`, ratio: median(per), shown: `${f(median(per), 2)}×${range(per, (x) => `${f(x, 2)}×`)}` };
  };
  const row = (measure: string, r: ReturnType<typeof tps>, target: string, met: boolean): Row => ({ measure, baseline: r.base, tunnel: r.value, ratio: r.shown, target, met });
  const runs = `${o.rounds} round${o.rounds > 1 ? 's' : ''} × ${o.seconds} s`;
  const [ti, tu, tb, li, lu, lb, ni, nu, nb] = [tps('captured', 'insertTps'), tps('captured', 'updateTps'), bulk('captured'), tps('logical', 'insertTps'), tps('logical', 'updateTps'), bulk('logical'), tps('logicalTunnel', 'insertTps'), tps('logicalTunnel', 'updateTps'), bulk('logicalTunnel')];
  return [
    row(`insert tps, 4 clients (${runs})`, ti, '≥ 90%', ti.ratio >= 90),
    row(`update tps, 4 clients (${runs})`, tu, '≥ 90%', tu.ratio >= 90),
    row(`bulk UPDATE of ${o.rows} rows (${o.rounds} round${o.rounds > 1 ? 's' : ''})`, tb, '≤ 1.3×', tb.ratio <= 1.3),
    // logical capture: a walsender decoding meanwhile (its cost on the source); then the tunnel streaming on the same cores, recorded
    row('logical: insert tps, 4 clients (a walsender decoding)', li, '≥ 97%', li.ratio >= 97),
    row('logical: update tps, 4 clients (a walsender decoding)', lu, '≥ 97%', lu.ratio >= 97),
    row(`logical: bulk UPDATE of ${o.rows} rows (a walsender decoding)`, lb, '≤ 1.1×', lb.ratio <= 1.1),
    { measure: 'logical: the decoding\'s own CPU during those writers (walsender + pg_recvlogical)', baseline: '-', tunnel: `${f(o.decoderCpu.microsPerTx, 1)} µs per transaction`, ratio: `${f(o.decoderCpu.coreShare * 100, 1)}% of the 2 cores`, target: 'recorded (what the tps rows lose to it on busy cores)', met: true },
    { measure: 'logical, the tunnel streaming on the same 2 cores: insert / update tps', baseline: `${ni.base} / ${nu.base}`, tunnel: `${ni.value} / ${nu.value}`, ratio: `${ni.shown} / ${nu.shown}`, target: 'recorded (tunnel and broker share the writers\' cores)', met: true },
    row(`logical, the tunnel streaming on the same 2 cores: bulk UPDATE of ${o.rows} rows`, nb, 'recorded', true),
  ];
}

/** One part of the bench alone (`-- --overhead` and the like): its table printed, recorded under `title`, the stack down, exit. */
async function alone(title: string, flag: string, rows: () => Promise<Row[]>): Promise<never> {
  try {
    const table = markdown(await rows());
    console.log(`\n${table}\n`);
    if (!values['no-record']) {
      appendFileSync(path.join(root, 'bench', 'RESULTS.md'), `\n## ${title} ${new Date().toISOString().slice(0, 10)} (npm run bench -- ${flag}${quick ? ' --quick' : ''}, 2 cores)\n${table}\n`);
      log('recorded in bench/RESULTS.md');
    }
  } finally {
    await own?.stack.down();
  }
  process.exit(0);
}

if (values.overhead) {
  log('capture overhead: pgbench and a bulk UPDATE with and without capture');
  await alone('Capture overhead', '--overhead', async () => overheadRows(await overhead(ctx, plan.overheadRows, plan.pgbenchSeconds, plan.overheadRounds, log)));
}
if (values.operations) {
  log('operations: run --once, SIGTERM and failover timings');
  await alone('Operations', '--operations', async () => operationRows(await operationTimes(ctx)));
}
if (values.transactional) await alone('apply: transactional', '--transactional', () => transactionalCost(ctx, plan, log));

if (values.peers) {
  try {
    await peersBench(ctx, formats, quick, !values['no-record'] && !quick);
    log(`done in ${f((Date.now() - started) / 1000, 0)} s`);
  } finally {
    await own?.stack.down();
  }
  process.exit(0);
}

try {
  log(`plan ${JSON.stringify(plan)}`);
  log('latency: PostgreSQL logical replication (baseline)');
  const native = await nativeLatency(ctx, plan.rate, plan.latencySeconds);
  let peak = 0;
  let atLeastOnceBulk = 0;
  const latencies: { format: string; result: Awaited<ReturnType<typeof tunnelLatency>> }[] = [];
  for (const format of formats) {
    ctx.format = format;
    const tag = formats.length > 1 ? ` [${format}]` : '';
    log(`latency: pgtunnel${tag}`);
    const tunnel = await tunnelLatency(ctx, plan.rate, plan.latencySeconds);
    latencies.push({ format, result: tunnel });
    rows.push(
      { measure: `latency p50 (${plan.rate}/s, ${plan.latencySeconds} s)${tag}`, baseline: `${f(native.p50, 2)} ms`, tunnel: `${f(tunnel.p50)} ms`, ratio: `${f(tunnel.p50 / native.p50)}×`, target: '≤ 10 ms', met: tunnel.p50 <= 10 },
      { measure: `latency p99${tag}`, baseline: `${f(native.p99, 2)} ms`, tunnel: `${f(tunnel.p99)} ms`, ratio: `${f(tunnel.p99 / native.p99)}×`, target: '≤ 30 ms', met: tunnel.p99 <= 30 },
      { measure: `latency max${tag}`, baseline: `${f(native.max, 2)} ms`, tunnel: `${f(tunnel.max)} ms`, ratio: `${f(tunnel.max / native.max)}×`, target: '< 100 ms', met: tunnel.max < 100 },
    );
    log('throughput: the fastest single-connection writer (one-row transactions) vs the tunnel');
    const oltp = await throughput(ctx, plan.throughputSeconds, 1, Number.MAX_SAFE_INTEGER);
    rows.push({ measure: `keeps up with one-row transactions (${oltp.changes} changes)${tag}`, baseline: `writer ${f(oltp.writerPerSec, 0)}/s`, tunnel: `${f(oltp.tunnelPerSec, 0)}/s`, ratio: f(oltp.tunnelPerSec / oltp.writerPerSec, 2), target: 'ratio ≈ 1', met: oltp.tunnelPerSec >= 0.9 * oltp.writerPerSec });
    log('throughput: a bulk writer (100-row transactions) vs the tunnel');
    const tp = await throughput(ctx, plan.throughputSeconds, 100, plan.bulkCap);
    if (format === 'json' || !atLeastOnceBulk) atLeastOnceBulk = tp.tunnelPerSec;
    rows.push({ measure: `max throughput, bulk writer (${tp.changes} changes)${tag}`, baseline: `writer ${f(tp.writerPerSec, 0)}/s`, tunnel: `${f(tp.tunnelPerSec, 0)}/s`, ratio: f(tp.tunnelPerSec / tp.writerPerSec, 2), target: 'ratio ≥ 0.8', met: tp.tunnelPerSec >= 0.8 * tp.writerPerSec });
    log(`snapshot of ${plan.snapshotRows} rows: COPY pipe vs the tunnel`);
    const snap = await snapshot(ctx, plan.snapshotRows);
    const snapRatio = snap.copySeconds / snap.tunnelSeconds;
    rows.push({ measure: `snapshot ${plan.snapshotRows} rows${tag}`, baseline: `COPY pipe ${f(snap.copySeconds, 2)} s`, tunnel: `${f(snap.tunnelSeconds)} s (${f(snap.rows / snap.tunnelSeconds / 1000, 1)}k rows/s, ${f(snap.tableMb / snap.tunnelSeconds, 1)} MB/s of a ${f(snap.tableMb, 0)} MB table)`, ratio: `${f(snapRatio * 100, 0)}% of COPY`, target: '≥ 30%', met: snapRatio >= 0.3 });
    peak = Math.max(peak, snap.peakRssMb, tp.peakRssMb, oltp.peakRssMb, tunnel.peakRssMb);
  }
  // the default's latency (JSON when measured) is the baseline of the logical, other-threads and exactlyOnce rows
  const plain = latencies.find((l) => l.format === 'json')?.result ?? latencies[0]!.result;
  ctx.format = 'json';
  log(`flood: ${plan.floodRate} one-row transactions/s from 4 writers for ${plan.floodSeconds} s`);
  const flood = await tunnelLatency(ctx, plan.floodRate, plan.floodSeconds);
  const stalled = flood.samples.filter((ms) => ms >= 1000).length;
  rows.push({ measure: `flood ${plan.floodRate}/s, ${plan.floodSeconds} s: changes ≥ 1 s (p50 / p99 / max)`, baseline: '-', tunnel: `${stalled} of ${flood.count} (${f(flood.p50)} / ${f(flood.p99)} / ${f(flood.max)} ms)`, ratio: '-', target: 'none over 1 s', met: stalled === 0 });
  log(`backlog: ${plan.backlogChanges} changes captured while no tunnel ran`);
  const bl = await backlog(ctx, plan.backlogChanges);
  rows.push({ measure: `backlog of ${bl.changes} changes caught up (tunnel start included)`, baseline: `source wrote it in ${f(bl.writeSeconds)} s`, tunnel: `${f(bl.catchUpSeconds)} s (${f(bl.changes / bl.catchUpSeconds / 1000, 1)}k/s)`, ratio: f(bl.writeSeconds / bl.catchUpSeconds, 2), target: '≤ 20 s', met: bl.catchUpSeconds <= 20 });
  peak = Math.max(peak, flood.peakRssMb, bl.peakRssMb);
  log(`idle: CPU over ${plan.idleSeconds} s without writes, then ${plan.idleProbes} probes`);
  const idle = await idleCost(ctx, plan.idleSeconds, plan.idleProbes);
  rows.push(
    { measure: `idle CPU over ${f(idle.seconds, 0)} s, tunnel process + its source backend`, baseline: '-', tunnel: `${f(idle.tunnelCpu + idle.producerBackendCpu, 2)}% of a core (${f(idle.tunnelCpu, 2)}% + ${f(idle.producerBackendCpu, 2)}%; ${busiestThread(idle.threads)})`, ratio: '-', target: '≤ 1%', met: idle.tunnelCpu + idle.producerBackendCpu <= 1 },
    { measure: `wake-up: first change after the idle window; ${idle.probes.count} probes after 50–250 ms gaps (p50 / p99)`, baseline: '-', tunnel: `${f(idle.firstProbeMs)} ms; ${f(idle.probes.p50)} / ${f(idle.probes.p99)} ms`, ratio: '-', target: 'recorded', met: true },
  );
  log('capture: logical — latency and idle CPU beside trigger capture (its source overhead is measured with the trigger\'s below)');
  process.env.PGTUNNEL_CAPTURE = 'logical'; // the bench tunnels inherit the environment
  try {
    const lat = await tunnelLatency(ctx, plan.rate, plan.latencySeconds);
    const lidle = await idleCost(ctx, plan.idleSeconds, plan.idleProbes);
    rows.push(
      { measure: `logical: latency p50 / p99 / max (${plan.rate}/s, ${plan.latencySeconds} s)`, baseline: `native ${f(native.p50, 2)} / ${f(native.p99, 2)} / ${f(native.max, 2)} ms; trigger ${f(plain.p50)} / ${f(plain.p99)} / ${f(plain.max)} ms`, tunnel: `${f(lat.p50)} / ${f(lat.p99)} / ${f(lat.max)} ms`, ratio: `${f(lat.p50 / native.p50)}× / ${f(lat.p99 / native.p99)}× native`, target: '≤ 5 / ≤ 15 / < 50 ms', met: lat.p50 <= 5 && lat.p99 <= 15 && lat.max < 50 },
      { measure: `logical: idle CPU over ${f(lidle.seconds, 0)} s, tunnel process + its source backends (walsender included)`, baseline: `trigger ${f(idle.tunnelCpu + idle.producerBackendCpu, 2)}%`, tunnel: `${f(lidle.tunnelCpu + lidle.producerBackendCpu, 2)}% of a core (${f(lidle.tunnelCpu, 2)}% + ${f(lidle.producerBackendCpu, 2)}%; ${busiestThread(lidle.threads)})`, ratio: '-', target: '≤ 0.5%', met: lidle.tunnelCpu + lidle.producerBackendCpu <= 0.5 },
    );
    peak = Math.max(peak, lat.peakRssMb);
  } finally {
    delete process.env.PGTUNNEL_CAPTURE;
  }
  // the default is threads: auto (the main thread on up to 2 cores): the forced other choice, beside it
  const other = chooseThreads('auto').threads ? 'off' : 'on';
  const otherName = other === 'on' ? 'threads: true (two worker threads)' : 'threads: false (the main thread)';
  log(`${otherName} — latency beside the default (${describeThreads(chooseThreads('auto'), 2)})`);
  process.env.PGTUNNEL_THREADS = other; // the bench tunnels inherit the environment
  try {
    const one = await tunnelLatency(ctx, plan.rate, plan.latencySeconds);
    rows.push({ measure: `${otherName} — latency p50 / p99 / max (${plan.rate}/s)`, baseline: `default (${chooseThreads('auto').threads ? 'two threads' : 'main thread'}) ${f(plain.p50)} / ${f(plain.p99)} / ${f(plain.max)} ms`, tunnel: `${f(one.p50)} / ${f(one.p99)} / ${f(one.max)} ms`, ratio: `${f(one.p50 / plain.p50, 2)}× / ${f(one.p99 / plain.p99, 2)}×`, target: 'recorded (the rule of threads: auto)', met: true });
    peak = Math.max(peak, one.peakRssMb);
  } finally {
    delete process.env.PGTUNNEL_THREADS;
  }
  log('exactly-once into Kafka: the bulk writer and the latency load with exactlyOnce on');
  process.env.PGTUNNEL_EXACTLY_ONCE = 'true'; // the bench tunnels inherit the environment
  let eos: { tp: Awaited<ReturnType<typeof throughput>>; lat: Awaited<ReturnType<typeof tunnelLatency>> } | undefined;
  try {
    const eosTp = await throughput(ctx, plan.throughputSeconds, 100, plan.bulkCap);
    const eosLat = await tunnelLatency(ctx, plan.rate, plan.latencySeconds);
    eos = { tp: eosTp, lat: eosLat };
    rows.push(
      { measure: `exactlyOnce: bulk writer (${eosTp.changes} changes)`, baseline: `at-least-once ${f(atLeastOnceBulk, 0)}/s`, tunnel: `${f(eosTp.tunnelPerSec, 0)}/s (writer ${f(eosTp.writerPerSec, 0)}/s)`, ratio: `${f(eosTp.tunnelPerSec / atLeastOnceBulk, 2)}×`, target: 'recorded (a mode, off by default)', met: true },
      { measure: `exactlyOnce: latency p50 / p99 / max (${plan.rate}/s)`, baseline: `at-least-once ${f(plain.p50)} / ${f(plain.p99)} / ${f(plain.max)} ms`, tunnel: `${f(eosLat.p50)} / ${f(eosLat.p99)} / ${f(eosLat.max)} ms`, ratio: `${f(eosLat.p50 / plain.p50, 2)}× / ${f(eosLat.p99 / plain.p99, 2)}×`, target: 'recorded (a mode, off by default)', met: true },
    );
  } finally {
    delete process.env.PGTUNNEL_EXACTLY_ONCE;
  }
  // the default's and exactlyOnce's figures of this run are the baselines: only the transactional mode runs again
  rows.push(...(await transactionalCost(ctx, plan, log, { 'per-partition': { tp: { tunnelPerSec: atLeastOnceBulk, writerPerSec: 0, changes: 0 }, lat: plain }, 'per-partition, exactlyOnce': eos })));
  log(`apply throughput: a backlog applied by ${values.smoke ? '1 and 3' : '1, 2 and 3'} consumer processes (6 partitions)`);
  const scale: ScaleResult[] = [];
  // the smoke proves the harness: 2 consumers run the same code as 3
  for (const consumers of values.smoke ? [1, 3] : [1, 2, 3]) scale.push(await applyScale(ctx, consumers, plan.scaleChanges));
  for (const s of scale) {
    rows.push({ measure: `apply throughput, ${s.consumers} consumer process${s.consumers > 1 ? 'es' : ''} (${s.changes} changes)`, baseline: `1 consumer ${f(scale[0]!.applyPerSec, 0)}/s`, tunnel: `${f(s.applyPerSec, 0)}/s (partitions ${s.spread.join('+')})`, ratio: `${f(s.applyPerSec / scale[0]!.applyPerSec, 2)}×`, target: 'recorded (2 cores shared with the target)', met: true });
  }
  log('capture overhead: pgbench and a bulk UPDATE with and without capture');
  rows.push(...overheadRows(await overhead(ctx, plan.overheadRows, plan.pgbenchSeconds, plan.overheadRounds, log)));
  log('operations: run --once, SIGTERM and failover timings');
  rows.push(...operationRows(await operationTimes(ctx)));
  rows.push({ measure: 'peak RSS (snapshot, throughput, latency, flood, backlog runs)', baseline: '-', tunnel: `${f(peak, 0)} MB`, ratio: '-', target: '< 200 MB', met: peak < 200 });

  const table = markdown(rows);
  console.log(`\n${table}\n`);
  log(`done in ${f((Date.now() - started) / 1000, 0)} s`);
  if (!values['no-record'] && !quick) {
    const date = new Date().toISOString().slice(0, 10);
    const svg = `latency-${new Date().toISOString().slice(0, 16).replace(':', '')}.svg`;
    writeFileSync(path.join(root, 'bench', svg), latencyPlot([
      { name: `PostgreSQL logical replication (p99 ${f(native.p99, 1)} ms)`, color: '#888', samples: native.samples },
      ...latencies.map(({ format, result }, i) => ({ name: `pgtunnel${formats.length > 1 ? ` ${format}` : ''} (p99 ${f(result.p99, 1)} ms)`, color: ['#1f6feb', '#d1242f', '#1a7f37'][i]!, samples: result.samples })),
    ], `Streaming latency at ${plan.rate} changes/s, ${date}`));
    const file = path.join(root, 'bench', 'RESULTS.md');
    if (!existsSync(file)) writeFileSync(file, '# Benchmark and long-run results\n');
    appendFileSync(file, `\n## Benchmarks ${date} (npm run bench, 2 cores)\n${table}\n\n![latency](${svg})\n`);
    log(`recorded in bench/RESULTS.md and bench/${svg}`);
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
