import type { TunnelConfig } from '../config/load.js';
import { connect, type Client } from '../pg.js';
import { KafkaOffsetReader } from '../transport/kafkaOffsets.js';
import { EndOffsetReader } from '../transport/kafka.js';
import { CommittedReader } from '../transport/committedReader.js';
import type { Logger } from '../instruments/log.js';
import { redactError } from '../redact.js';
import { collectStatus, countCommitted, type StatusLinks, type StatusReport } from './status.js';
import { applicationNames, clientIds } from '../names.js';

/** One PostgreSQL connection kept between polls; dropped on any error so the next poll connects afresh. */
class KeptClient {
  private client: Promise<Client> | undefined;

  constructor(private readonly url: string, private readonly role: 'source' | 'target') {}

  async use<T>(body: (c: Client) => Promise<T>): Promise<T> {
    this.client ??= connect(this.url, this.role, applicationNames.status);
    try {
      return await body(await this.client);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Not awaited for a connect still under way (it may take its full timeout while the database is down). */
  close(): void {
    const client = this.client;
    this.client = undefined;
    void client?.then((c) => c.end()).catch(() => {});
  }
}

/**
 * Polls the status for the dashboard and /metrics only while someone watches (a request in the last
 * `idleAfterMs`), one poll at a time, on connections kept open between polls and closed when nobody watches.
 */
export class StatusPoller {
  report: StatusReport | undefined;
  private lastWatched = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly source: KeptClient;
  private readonly target: KeptClient;
  private readonly offsets: EndOffsetReader;
  private committed: CommittedReader | undefined;
  private readonly links: StatusLinks;
  private readonly group: KafkaOffsetReader;
  /** Polls started and polls done since start (for tests). */
  pollsStarted = 0;
  polls = 0;

  constructor(
    private readonly config: TunnelConfig,
    private readonly log: Logger,
    private readonly onReport: (report: StatusReport) => void,
    private readonly intervalMs = 2000,
    private readonly idleAfterMs = 30_000,
  ) {
    this.source = new KeptClient(config.sourceUrl, 'source');
    this.target = new KeptClient(config.targetUrl, 'target');
    this.offsets = new EndOffsetReader(config);
    this.group = new KafkaOffsetReader(config);
    // After stop, a poll still under way opens nothing new.
    const open = <T>(use: () => Promise<T>) => (this.stopped ? Promise.reject(new Error('status poller stopped')) : use());
    this.links = {
      groupOffsets: (t) => open(() => this.group.committed(t, config.groupId)),
      withSource: (b) => open(() => this.source.use(b)),
      withTarget: (b) => open(() => this.target.use(b)),
      endOffsets: (t) => open(() => this.offsets.read(t)),
      committedRecords: (topic, partition, from, until) => open(() => countCommitted((this.committed ??= new CommittedReader(config, clientIds.status)), topic, partition, from, until)),
    };
  }

  /** Nothing under way and nothing scheduled: no poll starts until someone watches again. */
  get idle(): boolean {
    return !this.running && !this.timer;
  }

  /** Someone looks: start polling if idle; resolves once a report exists (the first request waits for it). */
  async watch(): Promise<void> {
    this.lastWatched = Date.now();
    if (!this.running && !this.timer && !this.stopped) this.loop();
    if (!this.report && this.running) await this.running;
  }

  private loop(): void {
    this.timer = undefined;
    if (this.stopped) return;
    if (Date.now() - this.lastWatched > this.idleAfterMs) {
      void this.closeLinks();
      return;
    }
    this.running = this.poll().finally(() => {
      this.running = undefined;
      if (this.stopped) return;
      // The next poll is scheduled only after this one ended: polls never overlap, however slow.
      this.timer = setTimeout(() => this.loop(), this.intervalMs);
      this.timer.unref();
    });
  }

  private async poll(): Promise<void> {
    this.pollsStarted++;
    try {
      this.report = await collectStatus(this.config, this.links);
      this.polls++;
      this.onReport(this.report);
    } catch (err) {
      this.log.debug({ err: redactError(err) }, 'status poll failed');
    }
  }

  private async closeLinks(): Promise<void> {
    await this.group.close();
    this.source.close();
    this.target.close();
    await this.offsets.close();
    await this.committed?.close();
    this.committed = undefined;
  }

  /** Stops at once, without waiting for a poll under way (its next service call fails and it ends). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.closeLinks();
  }
}
