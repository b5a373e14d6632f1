import { setTimeout as delay } from 'node:timers/promises';

/** Waits, or returns early when the signal aborts; never throws. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  await delay(ms, undefined, { signal }).catch(() => {});
}

/** Capped exponential backoff with jitter, so a fleet of tunnels does not retry in lockstep. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly baseMs = 100, private readonly capMs = 5000) {}

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }
}
