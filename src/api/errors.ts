import { Terminal, type Reason } from './conditions.ts';

/**
 * PhaseError is how a phase says why it stopped: the reason, a message that says what to fix, and when to
 * look again. The pipeline, not the phase, decides which condition reports it. Terminal reasons
 * (configuration errors) are not retried until the spec changes; the rest are retried with backoff, or
 * after `retryAfterMs` when the phase knows better (e.g. waiting for a deploy key to be registered).
 */
export class PhaseError extends Error {
  readonly reason: Reason;
  readonly retryAfterMs?: number;

  constructor(reason: Reason, message: string, opts: { cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PhaseError';
    this.reason = reason;
    this.retryAfterMs = opts.retryAfterMs;
  }

  /** terminal is true for configuration errors: the resource is Stalled. */
  get terminal(): boolean {
    return Terminal.has(this.reason);
  }
}

/** errorMessage renders an error and its causes in one line, for conditions and logs. */
export function errorMessage(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg && !parts.some((p) => p.includes(msg))) parts.push(msg);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}
