import type { TunnelConfig } from '../config/load.js';
import { SchemaRegistry } from '../contracts/registry.js';
import { valueSubject } from '../names.js';

/** How long a registered version is shown before the registry is asked again: schemas change rarely, the dashboard polls every second. */
const freshForMs = 10_000;

const clients = new Map<string, { registry: SchemaRegistry; versions: Map<string, { version: number | null; at: number }> }>();

/**
 * The latest registered version of each topic's `<topic>-value` subject (null: not registered), or
 * an empty map when no registry is configured.
 */
export async function registeredVersions(config: TunnelConfig, topics: string[]): Promise<Map<string, number | null>> {
  const out = new Map<string, number | null>();
  if (!config.registry) return out;
  let client = clients.get(config.registry.url);
  if (!client) clients.set(config.registry.url, (client = { registry: new SchemaRegistry(config.registry), versions: new Map() }));
  const { registry, versions } = client;
  const now = Date.now();
  await Promise.all(topics.map(async (topic) => {
    let known = versions.get(topic);
    if (!known || now - known.at > freshForMs) {
      known = { version: (await registry.latest(valueSubject(topic)))?.version ?? null, at: now };
      versions.set(topic, known);
    }
    out.set(topic, known.version);
  }));
  return out;
}
