import { ConditionTypes as C, Reasons, setCondition } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import type { ClusterBootstrapStatus, Condition } from '../api/types.ts';
import type { Outcome } from './queue.ts';

/** PassResult is how one pass over a ClusterBootstrap ended. */
export type PassResult =
  | { kind: 'ready'; message: string }
  | { kind: 'suspended' }
  | { kind: 'failed'; condition: string; error: PhaseError };

/**
 * summarize writes the summary conditions (Ready, Reconciling, Stalled), the failed phase's condition and
 * the status message for how a pass ended, and says when the queue should look again: a Ready resource at
 * the next resync, a configuration error not until the spec changes (or the periodic re-list adds it), a phase
 * that knows its wait after that wait, anything else with backoff.
 */
export function summarize(status: ClusterBootstrapStatus, result: PassResult, generation: number | undefined, resyncMs: number): Outcome {
  const mark = (type: string, s: Condition['status'], reason: string, message: string) => markCondition(status, generation, type, s, reason, message);
  if (result.kind === 'suspended') {
    mark(C.Reconciling, 'False', Reasons.Suspended, 'spec.suspend is true: the operator leaves this cluster alone');
    status.message = 'suspended';
    return {};
  }
  if (result.kind === 'ready') {
    mark(C.Ready, 'True', Reasons.Succeeded, result.message);
    mark(C.Reconciling, 'False', Reasons.Succeeded, 'reconciled');
    mark(C.Stalled, 'False', Reasons.Succeeded, 'not stalled');
    status.message = result.message;
    return { requeueAfterMs: resyncMs, resync: true };
  }
  const { error, condition } = result;
  const message = errorMessage(error);
  if (condition !== C.Ready) mark(condition, 'False', error.reason, message);
  mark(C.Ready, 'False', error.reason, message);
  mark(C.Stalled, error.terminal ? 'True' : 'False', error.terminal ? error.reason : Reasons.Progressing, error.terminal ? message : 'not stalled');
  mark(C.Reconciling, error.terminal ? 'False' : 'True', error.terminal ? error.reason : Reasons.Progressing, error.terminal ? 'stalled: fix the spec' : message);
  status.message = message;
  if (error.terminal) return { terminal: error };
  return error.retryAfterMs ? { requeueAfterMs: error.retryAfterMs } : { error };
}

/** markCondition sets one condition of the status, for the resource's generation. */
export function markCondition(status: ClusterBootstrapStatus, generation: number | undefined, type: string, s: Condition['status'], reason: string, message: string): void {
  status.conditions = setCondition(status.conditions ?? [], { type, status: s, reason, message, observedGeneration: generation });
}
