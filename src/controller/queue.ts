import { CancelledError } from '../cancel.ts';

/**
 * Outcome tells the work queue how a run ended and what to do next with its key: nothing until the object
 * changes (`done`, `stalled` for a configuration error), the periodic look of a resource that is done
 * (`resync`), a wait the worker knows (`requeue`), or a retry with per-key backoff (`retry`).
 */
export type Outcome =
  | { kind: 'done' }
  | { kind: 'resync'; afterMs: number }
  | { kind: 'requeue'; afterMs: number }
  | { kind: 'retry'; error: Error }
  | { kind: 'stalled'; error: Error };

/** Result is how one run of a key ended, in controller-runtime's words. */
export type Result = 'success' | 'error' | 'requeue' | 'requeue_after';

/** resultOf names an outcome in controller-runtime's words: a resync is a success. */
export function resultOf(outcome: Outcome): Result {
  if (outcome.kind === 'retry' || outcome.kind === 'stalled') return 'error';
  return outcome.kind === 'requeue' ? 'requeue_after' : 'success';
}

/** QueueObserver hears what the queue does, for metrics: the names follow client-go's workqueue metrics. */
export interface QueueObserver<K> {
  added?(depth: number): void;
  started?(key: K, queuedMs: number, depth: number): void;
  finished?(key: K, result: Result, workMs: number, outcome: Outcome): void;
  retried?(key: K): void;
}

export interface WorkQueueOptions<K> {
  /** concurrency is how many keys are worked on at once; one key is never worked on twice at once. */
  concurrency: number;
  /** worker runs one key; `signal` is aborted when the run is cancelled (deadline, cancel, shutdown). */
  worker: (key: K, signal: AbortSignal) => Promise<Outcome>;
  /** id is a key's identity (keys with one id are one key); String by default. */
  id?: (key: K) => string;
  /**
   * group is the tenant a key belongs to (its namespace): waiting keys are taken from the groups in turn, and
   * a group holds at most `maxPerGroup` workers. One group by default.
   */
  group?: (key: K) => string;
  /**
   * maxPerGroup is how many workers one group may hold: with groups, all but one by default, so that another
   * tenant's key always finds a worker however slow one tenant's clusters are.
   */
  maxPerGroup?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** deadlineMs is how long one run may take before it is cancelled, its worker slot freed and the key retried. */
  deadlineMs?: number;
  observer?: QueueObserver<K>;
}

interface Running {
  startedAt: number;
  abort: AbortController;
}

/**
 * WorkQueue is a keyed work queue like client-go's: a key waits at most once, is processed by one worker at
 * a time (a key added while it is processed runs again right after), and is retried with per-key
 * exponential backoff after an error, or after the delay its worker asked for. Every run has an AbortSignal:
 * a run past its deadline is cancelled and its slot goes to other keys at once, while the key itself runs
 * again only once that run has unwound (with backoff), so one stalled server never holds up the other
 * tenants and a key never runs twice. `cancel` (a lost Lease) and `shutdown` cancel the runs in flight.
 */
export class WorkQueue<K = string> {
  readonly #o: Required<Omit<WorkQueueOptions<K>, 'observer'>> & Pick<WorkQueueOptions<K>, 'observer'>;
  /** #waiting holds the keys waiting to run, by group, each in the order they came; #turn is the groups' rotation. */
  readonly #waiting = new Map<string, string[]>();
  #turn: string[] = [];
  #depth = 0;
  readonly #activeByGroup = new Map<string, number>();
  /** #urgent are the waiting keys of new work, taken before the others. */
  readonly #urgent = new Set<string>();
  readonly #keys = new Map<string, K>();
  readonly #queuedAt = new Map<string, number>();
  /** #running maps each key being run (cancelled runs still unwinding included) to its run. */
  readonly #running = new Map<string, Running>();
  readonly #dirty = new Set<string>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #failures = new Map<string, number>();
  #active = 0;
  #started = false;
  #lastFinished = Date.now();
  #idle: (() => void)[] = [];

  constructor(opts: WorkQueueOptions<K>) {
    this.#o = {
      baseBackoffMs: 1_000,
      maxBackoffMs: 5 * 60_000,
      deadlineMs: 5 * 60_000,
      id: String,
      group: () => '',
      maxPerGroup: opts.group ? Math.max(1, opts.concurrency - 1) : opts.concurrency,
      ...opts,
    };
  }

  /** start begins (or resumes) taking work. */
  start(): void {
    this.#started = true;
    this.#pump();
  }

  /** pause stops taking new work; keys keep waiting, and the runs in flight finish. */
  pause(): void {
    this.#started = false;
  }

  /**
   * cancel stops taking new work and cancels the runs in flight (the Lease is lost: another replica leads
   * now); keys keep waiting for a later start.
   */
  cancel(why: string): void {
    this.#started = false;
    for (const run of this.#running.values()) run.abort.abort(new CancelledError(why));
  }

  /** add schedules a key now, or after a delay; an earlier schedule of the same key wins. */
  add(key: K, delayMs = 0, opts: { urgent?: boolean } = {}): void {
    const id = this.#o.id(key);
    this.#keys.set(id, key);
    // New work (a new or changed object, a Secret it names changed) runs before periodic looks and retries.
    if (opts.urgent && delayMs === 0) this.#urgent.add(id);
    const existing = this.#timers.get(id);
    if (delayMs > 0) {
      const at = Date.now() + delayMs;
      if (existing && existing.at <= at) return;
      if (existing) clearTimeout(existing.timer);
      const timer = setTimeout(() => {
        this.#timers.delete(id);
        this.add(key);
      }, delayMs);
      timer.unref();
      this.#timers.set(id, { at, timer });
      return;
    }
    if (existing) {
      clearTimeout(existing.timer);
      this.#timers.delete(id);
    }
    if (this.#running.has(id)) this.#dirty.add(id);
    else if (!this.#queuedAt.has(id)) {
      this.#queuedAt.set(id, Date.now());
      const group = this.#o.group(key);
      const waiting = this.#waiting.get(group);
      if (waiting) waiting.push(id);
      else {
        this.#waiting.set(group, [id]);
        this.#turn.push(group);
      }
      this.#depth++;
      this.#o.observer?.added?.(this.#depth);
    }
    this.#pump();
  }

  /** depth is the number of keys waiting to be processed now. */
  get depth(): number {
    return this.#depth;
  }

  /** active is the number of workers busy now. */
  get active(): number {
    return this.#active;
  }

  /** runningSince lists when each run in flight began (cancelled runs still unwinding included). */
  runningSince(): number[] {
    return [...this.#running.values()].map((r) => r.startedAt);
  }

  /** stalledForMs is how long keys have waited while no run finished: 0 when the queue is idle or moving. */
  stalledForMs(): number {
    if (this.#depth === 0 && this.#active === 0) return 0;
    return Date.now() - this.#lastFinished;
  }

  /**
   * shutdown stops taking work, cancels the runs in flight and waits (at most timeoutMs) until they have
   * unwound: a cancelled run writes nothing more.
   */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.cancel('the operator is shutting down');
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    if (this.#running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.#idle.push(r)),
      new Promise((r) => (timer = setTimeout(r, timeoutMs)).unref()),
    ]);
    clearTimeout(timer);
  }

  #pump(): void {
    while (this.#started && this.#active < this.#o.concurrency && this.#depth > 0) {
      const id = this.#next();
      if (id === undefined) return;
      const key = this.#keys.get(id)!;
      const queuedAt = this.#queuedAt.get(id) ?? Date.now();
      this.#queuedAt.delete(id);
      this.#active++;
      this.#o.observer?.started?.(key, Date.now() - queuedAt, this.#depth);
      void this.#run(id);
    }
  }

  /**
   * #next takes the next key to run: new work first, then from the groups in turn, skipping a group that holds
   * its share of the workers — so one tenant's hundred slow clusters never hold every worker while another
   * tenant's new cluster waits; undefined when every group with keys waiting holds its share.
   */
  #next(): string | undefined {
    const open = (g: string) => (this.#activeByGroup.get(g) ?? 0) < this.#o.maxPerGroup;
    const urgent = [...this.#urgent].find((id) => this.#queuedAt.has(id) && open(this.#o.group(this.#keys.get(id)!)));
    const group = urgent !== undefined ? this.#o.group(this.#keys.get(urgent)!) : this.#turn.find(open);
    if (group === undefined) return undefined;
    const waiting = this.#waiting.get(group)!;
    const id = urgent ?? waiting[0];
    waiting.splice(waiting.indexOf(id), 1);
    this.#urgent.delete(id);
    this.#depth--;
    this.#turn = this.#turn.filter((g) => g !== group);
    if (waiting.length > 0) this.#turn.push(group);
    else this.#waiting.delete(group);
    this.#activeByGroup.set(group, (this.#activeByGroup.get(group) ?? 0) + 1);
    return id;
  }

  async #run(id: string): Promise<void> {
    const key = this.#keys.get(id)!;
    const run: Running = { startedAt: Date.now(), abort: new AbortController() };
    this.#running.set(id, run);
    const { signal } = run.abort;
    const seconds = this.#o.deadlineMs / 1000;
    const deadline = setTimeout(
      () => run.abort.abort(new CancelledError(`the reconcile did not finish within ${seconds} s`)),
      this.#o.deadlineMs,
    );
    deadline.unref();
    const work = this.#o
      .worker(key, signal)
      .catch((err): Outcome => ({ kind: 'retry', error: err instanceof Error ? err : new Error(String(err)) }));
    // The slot is freed when the run ends or is cancelled, whichever comes first; the key stays held until it has
    // unwound.
    const cancelled = new Promise<Outcome>((resolve) =>
      signal.addEventListener('abort', () => resolve({ kind: 'retry', error: signal.reason }), { once: true }),
    );
    const outcome = await Promise.race([work, cancelled]);
    clearTimeout(deadline);
    this.#active--;
    const group = this.#o.group(key);
    const held = (this.#activeByGroup.get(group) ?? 1) - 1;
    if (held > 0) this.#activeByGroup.set(group, held);
    else this.#activeByGroup.delete(group);
    this.#lastFinished = Date.now();
    this.#settle(
      key,
      id,
      signal.aborted ? { kind: 'retry', error: signal.reason } : outcome,
      Date.now() - run.startedAt,
    );
    this.#pump();
    await work;
    this.#running.delete(id);
    if (this.#running.size === 0) this.#idle.splice(0).forEach((r) => r());
    if (this.#dirty.delete(id) && this.#started) this.add(key);
    else if (!this.#timers.has(id) && !this.#queuedAt.has(id)) {
      this.#keys.delete(id);
      this.#urgent.delete(id);
    }
  }

  #settle(key: K, id: string, outcome: Outcome, workMs: number): void {
    this.#o.observer?.finished?.(key, resultOf(outcome), workMs, outcome);
    if (outcome.kind === 'retry') {
      const failures = (this.#failures.get(id) ?? 0) + 1;
      this.#failures.set(id, failures);
      this.#o.observer?.retried?.(key);
      if (this.#started) this.add(key, this.backoff(failures));
      return;
    }
    this.#failures.delete(id);
    // Resyncs are spread by ±10%, so a fleet made at once does not stay one wave of work every period.
    if (this.#started && outcome.kind === 'resync')
      this.add(key, Math.round(outcome.afterMs * (0.9 + Math.random() * 0.2)));
    else if (this.#started && outcome.kind === 'requeue') this.add(key, outcome.afterMs);
  }

  /** backoff is the delay before the n-th retry: exponential, capped, with 10% jitter. */
  backoff(failures: number): number {
    const raw = Math.min(this.#o.maxBackoffMs, this.#o.baseBackoffMs * 2 ** (failures - 1));
    return Math.round(raw * (0.9 + Math.random() * 0.2));
  }
}
