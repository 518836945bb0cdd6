import { reasonInfo, type Reason } from './conditions.ts';
import type { ClusterBootstrapStatus } from './types.ts';

/**
 * PhaseError is how a phase says why it stopped: the reason and a message that says what to fix. The
 * pipeline, not the phase, decides which condition reports it. When to look again is the reason's, from the
 * Catalogue: configuration errors are not retried until the spec changes, the rest after the reason's delay
 * or with backoff; a phase that knows better (a rate limit's reset) passes `retryAfterMs`.
 */
export class PhaseError extends Error {
  readonly reason: Reason;
  readonly retryAfterMs?: number;
  /** status is what the phase found before it stopped, for the status all the same (an open pull request). */
  readonly status?: Partial<ClusterBootstrapStatus>;

  constructor(
    reason: Reason,
    message: string,
    opts: { cause?: unknown; retryAfterMs?: number; status?: Partial<ClusterBootstrapStatus> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PhaseError';
    this.reason = reason;
    this.retryAfterMs = opts.retryAfterMs ?? reasonInfo(reason).retryMs;
    this.status = opts.status;
  }

  /** terminal is true for configuration errors: the resource is Stalled. */
  get terminal(): boolean {
    return reasonInfo(this.reason).stalls === true;
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
