import client from 'prom-client';

export type MetricsJson = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

/** Per-isolate metrics (heap, GC, event loop): each thread has its own; process_* ones are the process's, counted once by the main thread. */
const perThread = /^pgtunnel_nodejs_/;

/** One thread's per-isolate metrics, each value labelled with the thread, ready for `aggregateThreads`. */
export async function threadMetrics(registry: client.Registry, thread: string): Promise<MetricsJson> {
  const all = await registry.getMetricsAsJSON();
  return all.filter((m) => perThread.test(m.name)).map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, thread } })) }));
}

/**
 * The main registry (its counters are fed by every thread's forwarded telemetry) merged with the workers'
 * per-isolate metrics: distinct `thread` labels, so prom-client's aggregation keeps them apart, never sums.
 */
export async function aggregateThreads(main: client.Registry, workers: MetricsJson[]): Promise<string> {
  const own = (await main.getMetricsAsJSON()).map((m) => (perThread.test(m.name) ? { ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, thread: 'main' } })) } : m));
  return client.AggregatorRegistry.aggregate([own, ...workers]).metrics();
}
