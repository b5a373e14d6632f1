import pg from 'pg';

/** The torture table: `version` goes up by one with every committed write of a key. */
export const tortureDdl = `CREATE TABLE torture (id int PRIMARY KEY, version int NOT NULL, payload text)`;

interface Entry {
  version: number;
  deleted: boolean;
}

export interface WorkloadOptions {
  writers: number;
  /** Largest transaction, in rows. */
  maxTxRows: number;
  /** Chance that a transaction is held open (and commits late) for up to `lateMs`. */
  lateChance: number;
  lateMs: number;
  rollbackChance: number;
  savepointChance: number;
}

export const defaultWorkload: WorkloadOptions = {
  writers: 4,
  maxTxRows: 1000,
  lateChance: 0.05,
  lateMs: 1500,
  rollbackChance: 0.1,
  savepointChance: 0.2,
};

function pick<T>(items: T[]): T | undefined {
  return items.length === 0 ? undefined : items[Math.floor(Math.random() * items.length)];
}

function rand(n: number): number {
  return Math.floor(Math.random() * n);
}

/**
 * Concurrent writers doing what applications do: random-size transactions mixing inserts, updates,
 * deletes, key changes, repeated updates of one key, delete + re-insert, no-op updates, rollbacks,
 * savepoint rollbacks and transactions that commit late. It keeps what committed, so the target can be
 * checked for exact versions: a change applied twice, skipped or out of order shows as a wrong version.
 */
export class Workload {
  /** id → its newest committed state; merged by version, so commit-order races between writers are harmless. */
  readonly expected = new Map<number, Entry>();
  private nextId = 1;
  private running = false;
  private loops: Promise<void>[] = [];
  private paused: Promise<void> | undefined;
  private resume: (() => void) | undefined;
  committed = 0;
  rolledBack = 0;
  changes = 0;
  errors: Error[] = [];

  constructor(private readonly url: string, private readonly options: WorkloadOptions = defaultWorkload) {}

  start(): void {
    this.running = true;
    for (let i = 0; i < this.options.writers; i++) this.loops.push(this.writerLoop());
  }

  async stop(): Promise<void> {
    this.running = false;
    this.resume?.();
    await Promise.all(this.loops);
    if (this.errors.length > 0) throw this.errors[0];
  }

  /** TRUNCATE with the writers held at a transaction boundary, so the expected state is known. */
  async truncate(): Promise<void> {
    await this.held(async () => {
      const client = new pg.Client({ connectionString: this.url });
      await client.connect();
      try {
        await client.query('TRUNCATE torture');
        for (const e of this.expected.values()) {
          e.deleted = true;
          e.version += 0.5;
        }
      } finally {
        await client.end();
      }
    });
  }

  /**
   * Runs `body` (a crash and restart of the source) with every writer held at a transaction boundary, so no
   * commit is in doubt; the writers connect again before they go on.
   */
  async whileHeld(body: () => Promise<void>): Promise<void> {
    await this.held(async () => {
      await body();
      this.epoch++;
    });
  }

  private async held(body: () => Promise<void>): Promise<void> {
    this.paused = new Promise((resolve) => (this.resume = resolve));
    try {
      // Every writer at a transaction boundary: no commit can land while `body` runs.
      while (this.active > 0) await new Promise((r) => setTimeout(r, 5));
      await body();
    } finally {
      const resume = this.resume;
      this.paused = undefined;
      resume?.();
    }
  }

  /** Bumped by `whileHeld`: the writers' connections are from before a source restart. */
  private epoch = 0;

  private liveCache: { at: number; ids: number[] } = { at: 0, ids: [] };
  private active = 0;

  /** Committed live ids, recomputed at most every 100 ms (writers only need plausible targets). */
  private live(): number[] {
    if (Date.now() - this.liveCache.at > 100) {
      const ids: number[] = [];
      for (const [id, e] of this.expected) if (!e.deleted) ids.push(id);
      this.liveCache = { at: Date.now(), ids };
    }
    return this.liveCache.ids;
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  private async writerLoop(): Promise<void> {
    let client = await this.connect();
    let epoch = this.epoch;
    try {
      while (this.running) {
        if (this.paused) await this.paused;
        if (!this.running) break;
        if (epoch !== this.epoch) {
          await client.end().catch(() => {});
          [client, epoch] = [await this.connect(), this.epoch];
        }
        this.active++;
        await this.transaction(client).finally(() => this.active--).catch(async (err: Error & { code?: string }) => {
          await client.query('ROLLBACK').catch(() => {});
          // deadlocks between random writers are expected; the rolled-back work is simply not expected
          if (err.code !== '40P01') this.errors.push(err);
          this.rolledBack++;
        });
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  private async transaction(client: pg.Client): Promise<void> {
    const local = new Map<number, Entry>();
    let savepoint: Map<number, Entry> | undefined;
    const size = 1 + rand(Math.random() < 0.8 ? 20 : this.options.maxTxRows);
    await client.query('BEGIN');
    let changes = 0;
    for (let done = 0; done < size; ) {
      if (savepoint === undefined && Math.random() < this.options.savepointChance / 5) {
        await client.query('SAVEPOINT s');
        savepoint = new Map([...local].map(([k, v]) => [k, { ...v }]));
      }
      const n = await this.step(client, local, size - done);
      done += Math.max(1, n);
      changes += n;
    }
    if (savepoint !== undefined && Math.random() < 0.5) {
      await client.query('ROLLBACK TO SAVEPOINT s');
      local.clear();
      for (const [k, v] of savepoint) local.set(k, v);
    }
    if (Math.random() < this.options.lateChance) await new Promise((r) => setTimeout(r, rand(this.options.lateMs)));
    if (Math.random() < this.options.rollbackChance) {
      await client.query('ROLLBACK');
      this.rolledBack++;
      return;
    }
    await client.query('COMMIT');
    this.committed++;
    this.changes += changes;
    for (const [id, e] of local) {
      const known = this.expected.get(id);
      if (!known || e.version > known.version) this.expected.set(id, e);
    }
  }

  /** One random operation; returns how many rows it wrote. */
  private async step(client: pg.Client, local: Map<number, Entry>, budget: number): Promise<number> {
    const live = this.live().filter((id) => !local.get(id)?.deleted);
    for (const [id, e] of local) if (!e.deleted) live.push(id);
    const record = (rows: { id: number; version: number }[]) => {
      for (const r of rows) local.set(r.id, { version: r.version, deleted: false });
      return rows.length;
    };
    const roll = Math.random();
    if (roll < 0.35 || live.length < 10) {
      const count = Math.min(budget, 1 + rand(50));
      const ids = Array.from({ length: count }, () => this.nextId++);
      const { rows } = await client.query<{ id: number; version: number }>(
        "INSERT INTO torture (id, version, payload) SELECT i, 1, 'p' || i FROM unnest($1::int[]) i RETURNING id, version",
        [ids],
      );
      return record(rows);
    }
    if (roll < 0.6) {
      const ids = [...new Set(Array.from({ length: Math.min(budget, 1 + rand(30)) }, () => pick(live)!))];
      const { rows } = await client.query<{ id: number; version: number }>(
        'UPDATE torture SET version = version + 1, payload = md5(random()::text) WHERE id = ANY($1::int[]) RETURNING id, version',
        [ids],
      );
      return record(rows);
    }
    if (roll < 0.68) {
      // many updates to one key inside one transaction
      const id = pick(live)!;
      let n = 0;
      for (let i = 0; i < 5; i++) {
        const { rows } = await client.query<{ id: number; version: number }>('UPDATE torture SET version = version + 1 WHERE id = $1 RETURNING id, version', [id]);
        n += record(rows);
      }
      return n;
    }
    if (roll < 0.76) {
      const ids = [...new Set(Array.from({ length: Math.min(budget, 1 + rand(10)) }, () => pick(live)!))];
      const { rows } = await client.query<{ id: number; version: number }>('DELETE FROM torture WHERE id = ANY($1::int[]) RETURNING id, version', [ids]);
      for (const r of rows) local.set(r.id, { version: r.version + 0.5, deleted: true });
      return rows.length;
    }
    if (roll < 0.84) {
      // delete + re-insert of the same key
      const id = pick(live)!;
      const { rows } = await client.query<{ version: number }>('DELETE FROM torture WHERE id = $1 RETURNING version', [id]);
      if (rows.length === 0) return 0;
      const again = await client.query<{ id: number; version: number }>("INSERT INTO torture VALUES ($1, $2, 'reborn') RETURNING id, version", [id, rows[0]!.version + 1]);
      return 1 + record(again.rows);
    }
    if (roll < 0.92) {
      // a key-changing update: the old key is deleted, the new key carries the row on
      const id = pick(live)!;
      const to = this.nextId++;
      const { rows } = await client.query<{ id: number; version: number }>('UPDATE torture SET id = $2, version = version + 1 WHERE id = $1 RETURNING id, version', [id, to]);
      if (rows.length === 0) return 0;
      local.set(id, { version: rows[0]!.version - 0.5, deleted: true });
      return record(rows);
    }
    // an update that changes nothing
    const ids = [...new Set(Array.from({ length: Math.min(budget, 1 + rand(20)) }, () => pick(live)!))];
    const { rowCount } = await client.query('UPDATE torture SET payload = payload WHERE id = ANY($1::int[])', [ids]);
    return rowCount ?? 0;
  }

  /** Keys whose target version differs from what committed; empty when the target is exact. */
  async mismatches(targetUrl: string): Promise<string[]> {
    const client = new pg.Client({ connectionString: targetUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: number; version: number }>('SELECT id, version FROM torture');
      const actual = new Map(rows.map((r) => [r.id, r.version]));
      const out: string[] = [];
      for (const [id, e] of this.expected) {
        const got = actual.get(id);
        if (e.deleted ? got !== undefined : got !== e.version) out.push(`${id}: expected ${e.deleted ? 'deleted' : `v${e.version}`}, target ${got === undefined ? 'missing' : `v${got}`}`);
        actual.delete(id);
      }
      for (const [id, v] of actual) out.push(`${id}: not expected, target v${v}`);
      return out;
    } finally {
      await client.end();
    }
  }
}
