import { ConditionTypes as C, Reasons, removeCondition, setCondition } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import type { ClusterBootstrapStatus, Condition } from '../api/types.ts';
import type { Outcome } from './queue.ts';

/** PassResult is how one pass over a ClusterBootstrap ended. */
export type PassResult =
  { kind: 'ready'; message: string } | { kind: 'suspended' } | { kind: 'failed'; condition: string; error: PhaseError };

/**
 * summarize writes the summary conditions as Flux and kstatus have them — Ready always; Stalled=True only for a
 * configuration error; Reconciling=True (ProgressingWithRetry) only while a failure is being retried; either
 * removed when it does not apply — the failed phase's condition and the status message for how a pass ended, and says
 * when the queue should look again: a Ready resource at
 * the next resync, a configuration error not until the spec changes (or the periodic re-list adds it), a phase
 * that knows its wait after that wait, anything else with backoff.
 */
export function summarize(
  status: ClusterBootstrapStatus,
  result: PassResult,
  generation: number | undefined,
  resyncMs: number,
): Outcome {
  const mark = (type: string, s: Condition['status'], reason: string, message: string) =>
    markCondition(status, generation, type, s, reason, message);
  const drop = (type: string) => (status.conditions = removeCondition(status.conditions ?? [], type));
  if (result.kind === 'suspended') {
    mark(C.Reconciling, 'False', Reasons.Suspended, 'spec.suspend is true: the operator leaves this cluster alone');
    status.message = 'suspended';
    return {};
  }
  if (result.kind === 'ready') {
    mark(C.Ready, 'True', Reasons.Succeeded, result.message);
    drop(C.Reconciling);
    drop(C.Stalled);
    status.message = result.message;
    return { requeueAfterMs: resyncMs, resync: true };
  }
  const { error, condition } = result;
  const message = errorMessage(error);
  if (condition !== C.Ready) mark(condition, 'False', error.reason, message);
  mark(C.Ready, 'False', error.reason, message);
  status.message = message;
  if (error.terminal) {
    mark(C.Stalled, 'True', error.reason, message);
    drop(C.Reconciling);
    return { terminal: error };
  }
  mark(C.Reconciling, 'True', Reasons.ProgressingWithRetry, message);
  drop(C.Stalled);
  return error.retryAfterMs ? { requeueAfterMs: error.retryAfterMs } : { error };
}

/** markCondition sets one condition of the status, for the resource's generation. */
export function markCondition(
  status: ClusterBootstrapStatus,
  generation: number | undefined,
  type: string,
  s: Condition['status'],
  reason: string,
  message: string,
): void {
  status.conditions = setCondition(status.conditions ?? [], {
    type,
    status: s,
    reason,
    message,
    observedGeneration: generation,
  });
}
