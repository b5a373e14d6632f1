import { setTimeout as delay } from 'node:timers/promises';

/** Waits, or returns early when the signal aborts; never throws. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  await delay(ms, undefined, { signal }).catch(() => {});
}

/**
 * Waits until the `wake` handed to `hold` is called or the signal aborts. Idle consumers wait thousands of times a
 * minute: no abort listener is left behind.
 */
export async function wakeOrAbort(signal: AbortSignal, hold: (wake: () => void) => void): Promise<void> {
  let onAbort: (() => void) | undefined;
  await new Promise<void>((resolve) => {
    hold(resolve);
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  signal.removeEventListener('abort', onAbort!);
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
