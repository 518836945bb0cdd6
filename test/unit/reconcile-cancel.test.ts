import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { CancelledError } from '../../src/cancel.ts';
import { WorkQueue } from '../../src/controller/queue.ts';
import { Reconciler } from '../../src/controller/reconciler.ts';
import { decodeSecret } from '../../src/kube/objects.ts';
import { condition, FakeGit, FakeKube, silentLog, world, type World } from './fakes.ts';

/**
 * bootstrapped runs passes until the world's ClusterBootstrap is Ready (at most `max`), and returns how many it took.
 */
async function untilReady(w: World, max = 4): Promise<number> {
  for (let pass = 1; pass <= max; pass++) {
    await w.reconcile();
    if (condition(w, 'Ready')?.status === 'True') return pass;
  }
  assert.fail(`not Ready after ${max} passes: ${w.cb().status?.message}`);
}

const fresh = async () => {
  const w = await world({}, { provider: true });
  w.flux.running = true;
  return w;
};

test('a whole bootstrap runs in-process, and a second pass changes nothing', async () => {
  const w = await fresh();
  assert.equal(await untilReady(w), 1);
  const calls = w.calls.list.length;
  assert.deepEqual(await w.reconcile(), { kind: 'resync', afterMs: 10 * 60_000 });
  assert.equal(w.git.commits, 1);
  const kubeconfigReads = w.calls.list.slice(calls).filter((c) => c.what.endsWith('get Secret team/prod-kubeconfig'));
  assert.equal(kubeconfigReads.length, 1, 'the kubeconfig Secret is read once a pass');
  assert.ok(
    w.calls.list.slice(calls).every((c) => !/ (create|push) /.test(c.what)),
    'the second pass wrote nothing new',
  );
});

test(
  'a reconcile cancelled at any of its calls makes no call after the cancel, writes no status, and the next pass ' +
    'finishes it with the same key and one commit',
  async () => {
    const probe = await fresh();
    await untilReady(probe);
    const total = probe.calls.list.length;
    assert.ok(total > 40, `a first bootstrap makes many calls (${total})`);
    for (let at = 0; at < total; at++) {
      const w = await fresh();
      const cancel = new AbortController();
      w.calls.before = (_what, index) => {
        if (index === at) cancel.abort(new CancelledError(`at call ${at}`));
      };
      const before = w.cb().status;
      const outcome = await w.reconcile(cancel.signal);
      const stop = w.calls.list[at]?.what;
      assert.equal(outcome.kind, 'retry', `cancelled at ${at} (${stop})`);
      assert.deepEqual(w.calls.afterAbort(), [], `cancelled at ${at} (${stop}): calls after the cancel`);
      // Cancelled while the status write itself is in flight, that one patch lands whole; otherwise none does.
      if (!stop.endsWith('/status'))
        assert.deepEqual(w.cb().status, before, `cancelled at ${at} (${stop}): status written`);
      w.calls.before = undefined;
      await untilReady(w);
      const identity = decodeSecret(w.mgmt.read('Secret', 'team', 'prod-flux-identity'));
      assert.equal(w.cb().status?.identity?.publicKey, identity['identity.pub'].trim(), `cancelled at ${at}: one key`);
      assert.equal(w.provider.keys.size, 1, `cancelled at ${at} (${stop}): one deploy key registered`);
      assert.equal(w.git.commits, 1, `cancelled at ${at} (${stop}): one commit`);
    }
  },
);

/** hang makes every call matching `what` wait forever, as a server that accepts and never answers. */
function hang(w: World, what: RegExp): { reached: Promise<void> } {
  let reached!: () => void;
  const promise = new Promise<void>((r) => (reached = r));
  w.calls.before = (call) => {
    if (!what.test(call)) return;
    reached();
    return new Promise<void>(() => {});
  };
  return { reached: promise };
}

/** queueFor runs the world's ClusterBootstrap through a WorkQueue as main.ts does, noting the signal it hands out. */
function queueFor(w: World, deadlineMs = 60_000) {
  const outcomes: string[] = [];
  const q = new WorkQueue({
    concurrency: 1,
    deadlineMs,
    worker: (_key, signal) => w.reconcile(signal),
    observer: { finished: (_k, _r, _ms, o) => void outcomes.push(o.kind) },
  });
  return { q, outcomes };
}

async function unwound(q: WorkQueue): Promise<void> {
  while (q.runningSince().length > 0) await tick();
}

for (const { when, hangAt, cancel } of [
  { when: 'at the queue deadline', hangAt: /target\.example apply/, cancel: (_q: WorkQueue) => {} },
  {
    when: 'when the Lease is lost',
    hangAt: /git fetch/,
    cancel: (q: WorkQueue) => q.cancel('the leader Lease was lost'),
  },
  { when: 'at SIGTERM (queue.shutdown)', hangAt: /provider ensure/, cancel: (q: WorkQueue) => void q.shutdown(60_000) },
]) {
  test(`a reconcile stuck on a call is cancelled ${when}: nothing is called, pushed or written after it`, async () => {
    const w = await fresh();
    const { reached } = hang(w, hangAt);
    const deadline = when.includes('deadline') ? 20 : 60_000;
    const { q, outcomes } = queueFor(w, deadline);
    q.start();
    q.add('team/prod');
    await reached;
    const status = w.cb().status;
    const commits = w.git.commits;
    cancel(q);
    await unwound(q);
    assert.deepEqual(outcomes, ['retry']);
    assert.deepEqual(w.calls.afterAbort(), []);
    assert.deepEqual(w.cb().status, status);
    assert.equal(w.git.commits, commits);
    await q.shutdown(0);
  });
}

test('a reconcile already cancelled when it starts makes no call at all', async () => {
  const mgmt = new FakeKube();
  const reconciler = new Reconciler({
    mgmt,
    git: new FakeGit(mgmt.calls),
    log: silentLog,
    events: { record: async () => {} },
    resyncMs: 60_000,
    targetClient: () => mgmt,
  });
  const cancel = new AbortController();
  cancel.abort(new CancelledError('shutting down'));
  assert.equal((await reconciler.reconcile('team', 'prod', cancel.signal)).kind, 'retry');
  assert.deepEqual(mgmt.calls.list, []);
});
