import { ConditionTypes as C, Reasons, removeCondition, setCondition } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import type { Condition } from '../api/types.ts';
import { mergePatchOf } from '../kube/objects.ts';
import type { KubeApi } from '../phases/context.ts';
import type { Outcome } from './queue.ts';

/** PassResult is how one pass over a ClusterBootstrap ended. */
export type PassResult =
  { kind: 'ready'; message: string } | { kind: 'suspended' } | { kind: 'failed'; condition: string; error: PhaseError };

/** Conditioned is a status with conditions and a message: a ClusterBootstrap's or a set's. */
export interface Conditioned {
  conditions?: Condition[];
  message?: string;
}

/**
 * summarize writes the summary conditions as Flux and kstatus have them — Ready always; Stalled=True only for
 * a configuration error; Reconciling=True (ProgressingWithRetry) only while a failure is being retried; either
 * removed when it does not apply — the failed phase's condition and the status message, and says when the
 * queue should look again: a Ready resource at the next resync, a configuration error not until the spec
 * changes (or the periodic re-list adds it), a reason with a delay after that delay, anything else with backoff.
 */
export function summarize(
  status: Conditioned,
  result: PassResult,
  generation: number | undefined,
  resyncMs: number,
  now?: () => string,
): Outcome {
  const mark = (type: string, s: Condition['status'], reason: string, message: string) =>
    markCondition(status, generation, type, s, reason, message, now);
  const drop = (type: string) => (status.conditions = removeCondition(status.conditions ?? [], type));
  if (result.kind === 'suspended') {
    mark(C.Reconciling, 'False', Reasons.Suspended, 'spec.suspend is true: the operator leaves this cluster alone');
    status.message = 'suspended';
    return { kind: 'done' };
  }
  if (result.kind === 'ready') {
    mark(C.Ready, 'True', Reasons.Succeeded, result.message);
    drop(C.Reconciling);
    drop(C.Stalled);
    status.message = result.message;
    return { kind: 'resync', afterMs: resyncMs };
  }
  const { error, condition } = result;
  const message = errorMessage(error);
  if (condition !== C.Ready) mark(condition, 'False', error.reason, message);
  mark(C.Ready, 'False', error.reason, message);
  status.message = message;
  if (error.terminal) {
    mark(C.Stalled, 'True', error.reason, message);
    drop(C.Reconciling);
    return { kind: 'stalled', error };
  }
  mark(C.Reconciling, 'True', Reasons.ProgressingWithRetry, message);
  drop(C.Stalled);
  return error.retryAfterMs ? { kind: 'requeue', afterMs: error.retryAfterMs } : { kind: 'retry', error };
}

/** markCondition sets one condition of the status, for the resource's generation. */
export function markCondition(
  status: Conditioned,
  generation: number | undefined,
  type: string,
  s: Condition['status'],
  reason: string,
  message: string,
  now?: () => string,
): void {
  const condition = { type, status: s, reason, message, observedGeneration: generation };
  status.conditions = setCondition(status.conditions ?? [], condition, now);
}

/**
 * writeStatus writes an object's status once, at the end of a pass, as a merge patch of what changed — and
 * nothing when nothing did, so that a pass that finds all well costs no write (nor the watch event it makes).
 * It returns whether it wrote.
 */
export async function writeStatus<S extends object>(
  mgmt: KubeApi,
  obj: { apiVersion: string; kind: string; metadata: { namespace?: string; name: string }; status?: S },
  status: S,
): Promise<boolean> {
  if (JSON.stringify(status) === JSON.stringify(obj.status ?? {})) return false;
  const { namespace, name } = obj.metadata;
  const patch = { status: mergePatchOf(obj.status ?? {}, status) };
  await mgmt.mergePatch(obj.apiVersion, obj.kind, namespace, name, patch, 'status');
  return true;
}
