import type { SchemaRegistryClient } from '../src/contracts/codec.js';
import type { SchemaType } from '../src/contracts/registry.js';

/** The registry in memory: the bench times the codec, not HTTP. Each subject has one version per id registered under it. */
export class MemoryRegistry implements SchemaRegistryClient {
  private readonly schemas: { schema: string; schemaType: SchemaType }[] = [];
  private readonly subjects = new Map<string, number[]>();
  async register(subject: string, schema: string, schemaType: SchemaType): Promise<number> {
    let id = this.schemas.findIndex((s) => s.schema === schema) + 1;
    if (id === 0) id = this.schemas.push({ schema, schemaType });
    const ids = this.subjects.get(subject) ?? [];
    if (!ids.includes(id)) ids.push(id);
    this.subjects.set(subject, ids);
    return id;
  }
  async schemaById(id: number) {
    return this.schemas[id - 1]!;
  }
  async versions(subject: string): Promise<number[]> {
    return (this.subjects.get(subject) ?? []).map((_, i) => i + 1);
  }
  async versionId(subject: string, version: number): Promise<number | undefined> {
    return this.subjects.get(subject)?.[version - 1];
  }
}
