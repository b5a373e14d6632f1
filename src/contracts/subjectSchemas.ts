import { compositeKey } from '../names.js';

/** What the check needs of the registry client (src/contracts/registry.ts). */
export interface SubjectVersions {
  /** The subject's version numbers; [] when it does not exist. */
  versions(subject: string): Promise<number[]>;
  /** The schema id of one version; undefined when it does not exist. */
  versionId(subject: string, version: number): Promise<number | undefined>;
}

/** How long an id found in none of a subject's versions is refused without asking the registry again. */
const refusalMs = 30_000;
const maxRefusals = 10_000;

/**
 * Which schema ids are registered under which subjects. A record's schema id is accepted only under its
 * topic's own subjects: an id of another topic, or any id of the registry, would let whoever writes the
 * topic choose the schema (and with it what the bytes decode to). Versions are read once each; an id not
 * seen yet makes one read of the subject's new versions, then is refused for a while.
 */
export class SubjectSchemas {
  private readonly ids = new Map<string, Set<number>>();
  private readonly read = new Map<string, Set<number>>();
  private readonly refreshing = new Map<string, Promise<void>>();
  private readonly refused = new Map<string, number>();

  constructor(private readonly registry: SubjectVersions, private readonly now: () => number = Date.now) {}

  /** Known without asking: the fast path of every record after the first. */
  known(subject: string, id: number): boolean {
    return this.ids.get(subject)?.has(id) === true;
  }

  async holds(subject: string, id: number): Promise<boolean> {
    if (this.known(subject, id)) return true;
    const refusal = compositeKey(subject, String(id));
    const at = this.refused.get(refusal);
    if (at !== undefined && this.now() - at < refusalMs) return false;
    // a read already under way may have listed the versions before this id was registered: then one more
    const pending = this.refreshing.get(subject);
    if (pending) await pending;
    if (!this.known(subject, id)) await this.refresh(subject);
    if (this.known(subject, id)) return true;
    if (this.refused.size >= maxRefusals) this.refused.clear();
    this.refused.set(refusal, this.now());
    return false;
  }

  private refresh(subject: string): Promise<void> {
    let r = this.refreshing.get(subject);
    if (!r) {
      r = this.readNew(subject).finally(() => this.refreshing.delete(subject));
      this.refreshing.set(subject, r);
    }
    return r;
  }

  private async readNew(subject: string): Promise<void> {
    const read = this.read.get(subject) ?? new Set<number>();
    const ids = this.ids.get(subject) ?? new Set<number>();
    for (const version of await this.registry.versions(subject)) {
      if (read.has(version)) continue;
      const id = await this.registry.versionId(subject, version);
      if (id !== undefined) ids.add(id);
      read.add(version);
    }
    this.read.set(subject, read);
    this.ids.set(subject, ids);
  }
}
