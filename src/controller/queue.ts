import type { Outcome } from './reconciler.ts';

export interface WorkQueueOptions {
  /** concurrency is how many keys are worked on at once; one key is never worked on twice at once. */
  concurrency: number;
  worker: (key: string) => Promise<Outcome>;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  onResult?: (key: string, result: 'success' | 'requeue' | 'error', error?: Error) => void;
  onDepth?: (depth: number) => void;
}

/**
 * WorkQueue is a keyed work queue like client-go's: a key waits at most once, is processed by one worker at
 * a time (a key added while it is processed runs again right after), and is retried with per-key
 * exponential backoff after an error, or after the delay its worker asked for.
 */
export class WorkQueue {
  readonly #o: Required<Omit<WorkQueueOptions, 'onResult' | 'onDepth'>> & Pick<WorkQueueOptions, 'onResult' | 'onDepth'>;
  readonly #waiting: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #failures = new Map<string, number>();
  #running = false;
  #idle: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.#o = { baseBackoffMs: 1_000, maxBackoffMs: 5 * 60_000, ...opts };
  }

  /** start begins taking work. */
  start(): void {
    this.#running = true;
    this.#pump();
  }

  /** add schedules a key now, or after a delay; an earlier schedule of the same key wins. */
  add(key: string, delayMs = 0): void {
    if (delayMs > 0) {
      const at = Date.now() + delayMs;
      const existing = this.#timers.get(key);
      if (existing && existing.at <= at) return;
      if (existing) clearTimeout(existing.timer);
      const timer = setTimeout(() => {
        this.#timers.delete(key);
        this.add(key);
      }, delayMs);
      timer.unref();
      this.#timers.set(key, { at, timer });
      return;
    }
    const existing = this.#timers.get(key);
    if (existing) {
      clearTimeout(existing.timer);
      this.#timers.delete(key);
    }
    if (this.#processing.has(key)) this.#dirty.add(key);
    else if (!this.#queued.has(key)) {
      this.#queued.add(key);
      this.#waiting.push(key);
    }
    this.#o.onDepth?.(this.#waiting.length);
    this.#pump();
  }

  /** depth is the number of keys waiting to be processed now. */
  get depth(): number {
    return this.#waiting.length;
  }

  /** shutdown stops taking work and waits (at most timeoutMs) for the keys in flight to finish. */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.#running = false;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    if (this.#processing.size === 0) return;
    await Promise.race([new Promise<void>((r) => this.#idle.push(r)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  #pump(): void {
    while (this.#running && this.#processing.size < this.#o.concurrency && this.#waiting.length > 0) {
      const key = this.#waiting.shift()!;
      this.#queued.delete(key);
      this.#processing.add(key);
      this.#o.onDepth?.(this.#waiting.length);
      void this.#run(key);
    }
  }

  async #run(key: string): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await this.#o.worker(key);
    } catch (err) {
      outcome = { error: err instanceof Error ? err : new Error(String(err)) };
    }
    this.#processing.delete(key);
    if (outcome.error) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      this.#o.onResult?.(key, 'error', outcome.error);
      if (this.#running) this.add(key, this.backoff(failures));
    } else {
      this.#failures.delete(key);
      this.#o.onResult?.(key, outcome.requeueAfterMs ? 'requeue' : 'success');
      if (this.#running && outcome.requeueAfterMs) this.add(key, outcome.requeueAfterMs);
    }
    if (this.#dirty.delete(key) && this.#running) this.add(key);
    if (this.#processing.size === 0) this.#idle.splice(0).forEach((r) => r());
    this.#pump();
  }

  /** backoff is the delay before the n-th retry: exponential, capped, with 10% jitter. */
  backoff(failures: number): number {
    const raw = Math.min(this.#o.maxBackoffMs, this.#o.baseBackoffMs * 2 ** (failures - 1));
    return Math.round(raw * (0.9 + Math.random() * 0.2));
  }
}
