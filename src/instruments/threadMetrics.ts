import client from 'prom-client';

export type MetricsJson = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

/** Per-isolate metrics (heap, GC, event loop): each thread has its own; process_* ones are the process's, counted once by the main thread. */
const perThread = /^pgtunnel_nodejs_/;

const labelled = (m: MetricsJson[number], thread: string) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, thread } })) });

/** One thread's per-isolate metrics, each value labelled with the thread, ready for `aggregateThreads`. */
export async function threadMetrics(registry: client.Registry, thread: string): Promise<MetricsJson> {
  return (await registry.getMetricsAsJSON()).filter((m) => perThread.test(m.name)).map((m) => labelled(m, thread));
}

/**
 * The main registry (its counters are fed by every thread's forwarded telemetry) merged with the workers'
 * per-isolate metrics. Every series is one thread's (distinct `thread` labels) or the main thread's alone,
 * so each is taken as it is ('first'): prom-client's cluster aggregators would sum, average, or omit one.
 */
export async function aggregateThreads(main: client.Registry, workers: MetricsJson[]): Promise<string> {
  const own = (await main.getMetricsAsJSON()).map((m) => (perThread.test(m.name) ? labelled(m, 'main') : m));
  const asTheyAre = [own, ...workers].map((metrics) => metrics.map((m) => ({ ...m, aggregator: 'first' as const })));
  return client.AggregatorRegistry.aggregate(asTheyAre).metrics();
}
