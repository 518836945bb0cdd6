/** Outcome tells the work queue what to do next with a key: look again after a while, or back off after an error. */
export interface Outcome {
  requeueAfterMs?: number;
  error?: Error;
  /** resync marks a requeue that is only the periodic check of a resource that is done (counted as a success). */
  resync?: boolean;
  /** terminal marks an error that is not retried until the object changes (a configuration error). */
  terminal?: Error;
}

/** Result is how one run of a key ended, in controller-runtime's words. */
export type Result = 'success' | 'error' | 'requeue' | 'requeue_after';

/** QueueObserver hears what the queue does, for metrics: the names follow client-go's workqueue metrics. */
export interface QueueObserver {
  added?(depth: number): void;
  started?(key: string, queuedMs: number, depth: number): void;
  finished?(key: string, result: Result, workMs: number, outcome: Outcome): void;
  retried?(key: string): void;
}

export interface WorkQueueOptions {
  /** concurrency is how many keys are worked on at once; one key is never worked on twice at once. */
  concurrency: number;
  worker: (key: string) => Promise<Outcome>;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * deadlineMs is how long one run may take before it is abandoned: its worker slot is freed and it is retried with
   * backoff.
   */
  deadlineMs?: number;
  observer?: QueueObserver;
}

/**
 * WorkQueue is a keyed work queue like client-go's: a key waits at most once, is processed by one worker at
 * a time (a key added while it is processed runs again right after), and is retried with per-key
 * exponential backoff after an error, or after the delay its worker asked for. A run past its deadline is
 * abandoned: the slot goes to other keys at once, and the key itself runs again only once that run has
 * ended (with backoff), so one stalled server never holds up the other tenants and a key never runs twice.
 */
export class WorkQueue {
  readonly #o: Required<Omit<WorkQueueOptions, 'observer'>> & Pick<WorkQueueOptions, 'observer'>;
  readonly #waiting: string[] = [];
  readonly #queuedAt = new Map<string, number>();
  /** #processing maps each key being run (abandoned runs included) to when its run started. */
  readonly #processing = new Map<string, number>();
  readonly #dirty = new Set<string>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #failures = new Map<string, number>();
  #active = 0;
  #running = false;
  #lastFinished = Date.now();
  #idle: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.#o = { baseBackoffMs: 1_000, maxBackoffMs: 5 * 60_000, deadlineMs: 5 * 60_000, ...opts };
  }

  /** start begins (or resumes) taking work. */
  start(): void {
    this.#running = true;
    this.#pump();
  }

  /** pause stops taking new work; keys keep waiting, and the runs in flight finish. */
  pause(): void {
    this.#running = false;
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
    else if (!this.#queuedAt.has(key)) {
      this.#queuedAt.set(key, Date.now());
      this.#waiting.push(key);
      this.#o.observer?.added?.(this.#waiting.length);
    }
    this.#pump();
  }

  /** depth is the number of keys waiting to be processed now. */
  get depth(): number {
    return this.#waiting.length;
  }

  /** active is the number of workers busy now. */
  get active(): number {
    return this.#active;
  }

  /** runningSince lists when each run in flight began (abandoned runs included). */
  runningSince(): number[] {
    return [...this.#processing.values()];
  }

  /** stalledForMs is how long keys have waited while no run finished: 0 when the queue is idle or moving. */
  stalledForMs(): number {
    if (this.#waiting.length === 0 && this.#active === 0) return 0;
    return Date.now() - this.#lastFinished;
  }

  /** shutdown stops taking work and waits (at most timeoutMs) for the keys in flight to finish. */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.#running = false;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    if (this.#active === 0) return;
    await Promise.race([
      new Promise<void>((r) => this.#idle.push(r)),
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }

  #pump(): void {
    while (this.#running && this.#active < this.#o.concurrency && this.#waiting.length > 0) {
      const key = this.#waiting.shift()!;
      const queuedAt = this.#queuedAt.get(key) ?? Date.now();
      this.#queuedAt.delete(key);
      this.#processing.set(key, Date.now());
      this.#active++;
      this.#o.observer?.started?.(key, Date.now() - queuedAt, this.#waiting.length);
      void this.#run(key);
    }
  }

  async #run(key: string): Promise<void> {
    const started = Date.now();
    let deadline: NodeJS.Timeout | undefined;
    const abandoned = new Promise<Outcome>((resolve) => {
      deadline = setTimeout(
        () =>
          resolve({
            error: new Error(
              `the reconcile of ${key} did not finish within ${this.#o.deadlineMs / 1000} s: abandoned, retrying ` +
                `with backoff`,
            ),
          }),
        this.#o.deadlineMs,
      );
      deadline.unref();
    });
    const work = this.#o
      .worker(key)
      .catch((err): Outcome => ({ error: err instanceof Error ? err : new Error(String(err)) }));
    const outcome = await Promise.race([work, abandoned]);
    clearTimeout(deadline);
    this.#active--;
    this.#lastFinished = Date.now();
    this.#settle(key, outcome, Date.now() - started);
    if (this.#active === 0) this.#idle.splice(0).forEach((r) => r());
    this.#pump();
    // An abandoned run still holds its key until it really ends: the key never runs twice at once.
    await work;
    this.#processing.delete(key);
    if (this.#dirty.delete(key) && this.#running) this.add(key);
  }

  #settle(key: string, outcome: Outcome, workMs: number): void {
    const result: Result =
      outcome.error || outcome.terminal
        ? 'error'
        : outcome.resync || !outcome.requeueAfterMs
          ? 'success'
          : 'requeue_after';
    this.#o.observer?.finished?.(key, result, workMs, outcome);
    if (outcome.error) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      this.#o.observer?.retried?.(key);
      if (this.#running) this.add(key, this.backoff(failures));
      return;
    }
    this.#failures.delete(key);
    if (this.#running && outcome.requeueAfterMs) this.add(key, outcome.requeueAfterMs);
  }

  /** backoff is the delay before the n-th retry: exponential, capped, with 10% jitter. */
  backoff(failures: number): number {
    const raw = Math.min(this.#o.maxBackoffMs, this.#o.baseBackoffMs * 2 ** (failures - 1));
    return Math.round(raw * (0.9 + Math.random() * 0.2));
  }
}
