/**
 * CancelledError ends work whose reconcile was cancelled: at the queue's deadline, on a lost Lease or at
 * shutdown. It is never a result to report: a cancelled pass writes no status and is retried.
 */
export class CancelledError extends Error {
  constructor(why: string) {
    super(`cancelled: ${why}`);
    this.name = 'CancelledError';
  }
}

/** isCancelled is true for a CancelledError anywhere in an error's cause chain. */
export function isCancelled(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++)
    if (e instanceof CancelledError) return true;
  return false;
}

/** reasonOf is why a signal was aborted, as a CancelledError. */
export function reasonOf(signal: AbortSignal): CancelledError {
  return signal.reason instanceof CancelledError
    ? signal.reason
    : new CancelledError(String(signal.reason ?? 'aborted'));
}

/** checkSignal throws the signal's CancelledError once it is aborted. */
export function checkSignal(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw reasonOf(signal);
}

/**
 * abortable settles with `work`, or rejects with the signal's CancelledError as soon as it is aborted; what
 * `work` comes to after that is dropped (never an unhandled rejection).
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reasonOf(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** sleep waits `ms`, and rejects with the signal's CancelledError when it is aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(reasonOf(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(reasonOf(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** SYNC_METHODS are the adapters' methods that return no promise (KubeApi's forget and withSignal). */
const SYNC_METHODS = new Set(['forget', 'withSignal']);

/**
 * guarded wraps every method of an adapter so that, once the signal is aborted, no call starts, a call in
 * flight is no longer waited for, and an answer that arrives after the cancel is not acted on: each rejects
 * with the CancelledError (a call refused is a rejected promise, never a throw, so `Promise.all(items.map(…))`
 * stays whole). The adapter itself also gets the signal where it can stop the work in flight (an HTTP request
 * destroyed, a git process group killed); this is the guard that holds for all of them.
 */
export function guarded<T extends object>(target: T, signal: AbortSignal): T {
  return new Proxy(target, {
    get(obj, prop) {
      const value = Reflect.get(obj, prop, obj);
      if (typeof value !== 'function') return value;
      if (SYNC_METHODS.has(String(prop))) return (...args: unknown[]) => (checkSignal(signal), value.apply(obj, args));
      return (...args: unknown[]) => {
        if (signal.aborted) return Promise.reject(reasonOf(signal));
        let out: unknown;
        try {
          out = value.apply(obj, args);
        } catch (err) {
          return Promise.reject(err);
        }
        return abortable(Promise.resolve(out), signal).then((v) => (checkSignal(signal), v));
      };
    },
  });
}
