import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarize, type PassResult } from '../../src/controller/status.ts';
import type { Outcome } from '../../src/controller/queue.ts';
import { PhaseError } from '../../src/api/errors.ts';
import { Reasons } from '../../src/api/conditions.ts';
import type { ClusterBootstrapStatus } from '../../src/api/types.ts';

const RESYNC = 600_000;
const failed = (condition: string, error: PhaseError): PassResult => ({ kind: 'failed', condition, error });

interface Row {
  pass: string;
  result: PassResult;
  ready: string;
  reason: string;
  reconciling: string;
  stalled: string;
  phase?: [string, string];
  requeue: 'resync' | 'none' | 'backoff' | number;
}

const rows: Row[] = [
  {
    pass: 'every phase held',
    result: { kind: 'ready', message: 'in sync' },
    ready: 'True',
    reason: 'Succeeded',
    reconciling: 'False',
    stalled: 'False',
    requeue: 'resync',
  },
  {
    pass: 'the spec is invalid',
    result: failed('Ready', new PhaseError(Reasons.InvalidGitURL, 'spec.git.url is bad')),
    ready: 'False',
    reason: 'InvalidGitURL',
    reconciling: 'False',
    stalled: 'True',
    requeue: 'none',
  },
  {
    pass: 'the deploy key is not registered yet',
    result: failed(
      'DeployKeyAuthorized',
      new PhaseError(Reasons.DeployKeyNotAuthorized, 'register ssh-ed25519 AAAA', { retryAfterMs: 15_000 }),
    ),
    ready: 'False',
    reason: 'DeployKeyNotAuthorized',
    reconciling: 'True',
    stalled: 'False',
    phase: ['DeployKeyAuthorized', 'False'],
    requeue: 15_000,
  },
  {
    pass: 'the target does not answer',
    result: failed(
      'Applied',
      new PhaseError(Reasons.TargetUnreachable, 'no answer', { cause: new Error('ECONNREFUSED') }),
    ),
    ready: 'False',
    reason: 'TargetUnreachable',
    reconciling: 'True',
    stalled: 'False',
    phase: ['Applied', 'False'],
    requeue: 'backoff',
  },
];

for (const row of rows) {
  test(
    `when ${row.pass}, Ready is ${row.ready} (${row.reason}), Reconciling ${row.reconciling}, Stalled ` +
      `${row.stalled}, and the queue ` +
      `${typeof row.requeue === 'number' ? `looks again after ${row.requeue} ms` : row.requeue === 'resync' ? 'looks again at the resync' : row.requeue === 'none' ? 'waits for a change' : 'backs off'}`,
    () => {
      const status: ClusterBootstrapStatus = {};
      const outcome: Outcome = summarize(status, row.result, 3, RESYNC);
      const c = (type: string) => status.conditions?.find((x) => x.type === type);
      assert.equal(c('Ready')?.status, row.ready);
      assert.equal(c('Ready')?.reason, row.reason);
      assert.equal(c('Ready')?.observedGeneration, 3);
      // Reconciling and Stalled are there only when True, as Flux writes them.
      assert.equal(c('Reconciling')?.status, row.reconciling === 'True' ? 'True' : undefined);
      assert.equal(c('Stalled')?.status, row.stalled === 'True' ? 'True' : undefined);
      if (row.reconciling === 'True') assert.equal(c('Reconciling')?.reason, 'ProgressingWithRetry');
      if (row.phase) assert.deepEqual([row.phase[0], c(row.phase[0])?.status], row.phase);
      if (row.requeue === 'resync') assert.deepEqual(outcome, { kind: 'resync', afterMs: RESYNC });
      if (row.requeue === 'none') assert.ok(outcome.kind === 'stalled' || outcome.kind === 'done');
      if (row.requeue === 'backoff') assert.ok(outcome.kind === 'retry' && outcome.error instanceof PhaseError);
      if (typeof row.requeue === 'number') assert.deepEqual(outcome, { kind: 'requeue', afterMs: row.requeue });
      assert.equal(status.message, c('Ready')?.message);
    },
  );
}

test('a suspended resource says so in Reconciling and is not looked at again until it changes', () => {
  const status: ClusterBootstrapStatus = {};
  assert.deepEqual(summarize(status, { kind: 'suspended' }, 1, RESYNC), { kind: 'done' });
  assert.equal(status.conditions?.find((c) => c.type === 'Reconciling')?.reason, 'Suspended');
});

test('the failure message carries its cause, so the user sees what git or the API server said', () => {
  const status: ClusterBootstrapStatus = {};
  summarize(
    status,
    failed(
      'Committed',
      new PhaseError(Reasons.PushRejected, 'push to main', { cause: new Error('pre-receive hook declined') }),
    ),
    1,
    RESYNC,
  );
  assert.equal(status.message, 'push to main: pre-receive hook declined');
});

test('the status patch removes what the operator no longer reports, and keeps what did not change out of it', async () => {
  const { mergePatchOf } = await import('../../src/kube/objects.ts');
  const before = { identity: { fingerprint: 'a', rotatingTo: 'b' }, message: 'x', conditions: [{ type: 'Ready' }] };
  const after = { identity: { fingerprint: 'b' }, message: 'x', conditions: [{ type: 'Ready' }, { type: 'Stalled' }] };
  assert.deepEqual(mergePatchOf(before, after), {
    identity: { fingerprint: 'b', rotatingTo: null },
    conditions: [{ type: 'Ready' }, { type: 'Stalled' }],
  });
});
