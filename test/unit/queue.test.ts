import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { WorkQueue, type Outcome } from '../../src/controller/queue.ts';

const done: Outcome = { kind: 'done' };

/** until waits for a condition by yielding to the event loop; the test runner's timeout is the only bound. */
async function until(what: () => boolean): Promise<void> {
  while (!what()) await tick();
}

/** gate is a promise a test opens by hand. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

test('a key added many times while waiting is processed once', async () => {
  const seen: string[] = [];
  const q = new WorkQueue({ concurrency: 1, worker: async (k) => (seen.push(k), done) });
  for (let i = 0; i < 5; i++) q.add('ns/a');
  q.add('ns/b');
  q.start();
  await until(() => seen.length === 2);
  await until(() => q.active === 0);
  assert.deepEqual(seen, ['ns/a', 'ns/b']);
});

test('one key is never processed twice at once, and an add during processing runs it again after', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let runs = 0;
  const first = gate();
  const q = new WorkQueue({
    concurrency: 4,
    worker: async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (++runs === 1) await first.opened;
      inFlight--;
      return done;
    },
  });
  q.start();
  q.add('ns/a');
  await until(() => runs === 1);
  q.add('ns/a');
  q.add('ns/a');
  first.open();
  await until(() => runs === 2 && q.active === 0);
  assert.equal(maxInFlight, 1);
  assert.equal(runs, 2);
});

test('different keys are processed in parallel up to the concurrency', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let finished = 0;
  const hold = gate();
  const q = new WorkQueue({
    concurrency: 3,
    worker: async () => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await hold.opened;
      inFlight--;
      finished++;
      return done;
    },
  });
  q.start();
  for (let i = 0; i < 6; i++) q.add(`ns/${i}`);
  await until(() => inFlight === 3);
  assert.equal(q.depth, 3, 'the rest wait');
  hold.open();
  await until(() => finished === 6);
  assert.equal(maxInFlight, 3);
});

test('a failing key is retried with backoff until it succeeds, and success resets it', async () => {
  let runs = 0;
  const q = new WorkQueue({
    concurrency: 1,
    baseBackoffMs: 1,
    worker: async () => (++runs < 4 ? { kind: 'retry', error: new Error('boom') } : done),
  });
  q.start();
  q.add('ns/a');
  await until(() => runs === 4);
  assert.equal(runs, 4);
});

test('backoff doubles from its base per failure, with 10% jitter, and is capped', () => {
  const q = new WorkQueue({ concurrency: 1, baseBackoffMs: 1_000, maxBackoffMs: 60_000, worker: async () => done });
  for (const [failures, nominal] of [
    [1, 1_000],
    [2, 2_000],
    [4, 8_000],
    [7, 60_000],
    [30, 60_000],
  ]) {
    const wait = q.backoff(failures);
    assert.ok(wait >= nominal * 0.9 && wait <= nominal * 1.1, `${failures} failures: ${wait} ms`);
  }
});

test('a worker may ask to be called again after a delay, and is not called before', async () => {
  let runs = 0;
  const q = new WorkQueue({
    concurrency: 1,
    worker: async () => (runs++ === 0 ? { kind: 'requeue', afterMs: 5 } : done),
  });
  q.start();
  q.add('ns/a');
  await until(() => runs === 1 && q.active === 0);
  assert.equal(q.depth, 0, 'the key waits for its delay, not in the queue');
  await until(() => runs === 2);
});

test('shutdown cancels the key in flight, waits for it to unwind, and takes no more work', async () => {
  let cancelled = false;
  const q = new WorkQueue({
    concurrency: 1,
    worker: (_key, signal) =>
      new Promise<Outcome>((resolve) =>
        signal.addEventListener('abort', () => ((cancelled = true), resolve(done)), { once: true }),
      ),
  });
  q.start();
  q.add('ns/a');
  q.add('ns/b');
  await until(() => q.active === 1);
  await q.shutdown(60_000);
  assert.equal(cancelled, true);
  assert.equal(q.runningSince().length, 0);
  assert.equal(q.depth, 1);
});

test(
  'a run past its deadline is cancelled: other keys get its worker, and the key runs again only after that run ' +
    'ends',
  async () => {
    const release = gate();
    const seen: string[] = [];
    let inFlightA = 0;
    let maxInFlightA = 0;
    let signalled = false;
    const q = new WorkQueue({
      concurrency: 1,
      deadlineMs: 1,
      baseBackoffMs: 1,
      worker: async (key, signal) => {
        seen.push(key);
        if (key === 'ns/stuck') {
          inFlightA++;
          maxInFlightA = Math.max(maxInFlightA, inFlightA);
          signal.addEventListener('abort', () => (signalled = true));
          // A run that ignores its signal for a while: the slot is freed anyway.
          if (seen.filter((k) => k === 'ns/stuck').length === 1) await release.opened;
          inFlightA--;
        }
        return done;
      },
    });
    q.start();
    q.add('ns/stuck');
    q.add('ns/next');
    await until(() => seen.includes('ns/next'));
    assert.ok(signalled, 'the stuck run was told it is cancelled');
    assert.equal(seen.filter((k) => k === 'ns/stuck').length, 1, 'not run again while its run is still going');
    release.open();
    await until(() => seen.filter((k) => k === 'ns/stuck').length === 2);
    assert.equal(maxInFlightA, 1, 'never twice at once');
  },
);

test('cancel (a lost Lease) cancels the runs in flight and takes no more work until started again', async () => {
  const seen: string[] = [];
  const q = new WorkQueue({
    concurrency: 1,
    worker: (key, signal) => {
      seen.push(key);
      return new Promise<Outcome>((resolve) => signal.addEventListener('abort', () => resolve(done), { once: true }));
    },
  });
  q.start();
  q.add('ns/a');
  q.add('ns/b');
  await until(() => seen.length === 1);
  q.cancel('the Lease was lost');
  await until(() => q.runningSince().length === 0);
  assert.deepEqual(seen, ['ns/a']);
  q.start();
  await until(() => seen.length === 2);
  assert.deepEqual(seen, ['ns/a', 'ns/b']);
  await q.shutdown(60_000);
});

test('typed keys: one key is one id, whatever object carries it', async () => {
  const seen: string[] = [];
  const q = new WorkQueue<{ kind: string; name: string }>({
    concurrency: 1,
    id: (k) => `${k.kind}/${k.name}`,
    worker: async (k) => (seen.push(`${k.kind}/${k.name}`), done),
  });
  q.add({ kind: 'ClusterBootstrap', name: 'a' });
  q.add({ kind: 'ClusterBootstrap', name: 'a' });
  q.add({ kind: 'ClusterBootstrapSet', name: 'a' });
  q.start();
  await until(() => seen.length === 2 && q.active === 0);
  assert.deepEqual(seen, ['ClusterBootstrap/a', 'ClusterBootstrapSet/a']);
});

test("tenants take turns: one namespace's keys are interleaved with another's, not run all before it", async () => {
  const seen: string[] = [];
  const q = new WorkQueue({
    concurrency: 1,
    group: (k) => k.split('/')[0],
    worker: async (k) => (seen.push(k), done),
  });
  for (const k of ['a/1', 'a/2', 'a/3', 'b/1', 'c/1']) q.add(k);
  q.start();
  await until(() => seen.length === 5);
  assert.deepEqual(seen, ['a/1', 'b/1', 'c/1', 'a/2', 'a/3']);
});

test("one namespace's slow keys never hold every worker: another namespace's new key runs at once", async () => {
  const hold = gate();
  const running = new Set<string>();
  const ran: string[] = [];
  const q = new WorkQueue({
    concurrency: 4,
    group: (k) => k.split('/')[0],
    worker: async (k) => {
      running.add(k);
      ran.push(k);
      if (k.startsWith('a/')) await hold.opened;
      running.delete(k);
      return done;
    },
  });
  for (let i = 0; i < 20; i++) q.add(`a/${i}`);
  q.start();
  await until(() => running.size === 3);
  assert.equal(q.active, 3, 'a tenant holds at most all workers but one');
  q.add('b/new');
  await until(() => ran.includes('b/new') && !running.has('b/new'));
  hold.open();
  await until(() => ran.length === 21);
});

test('new work runs before the periodic looks and retries already waiting', async () => {
  const seen: string[] = [];
  const q = new WorkQueue({ concurrency: 1, worker: async (k) => (seen.push(k), done) });
  for (let i = 0; i < 5; i++) q.add(`ns/resync-${i}`);
  q.add('ns/new', 0, { urgent: true });
  q.start();
  await until(() => seen.length === 6);
  assert.equal(seen[0], 'ns/new');
});

test('resyncs are spread over ±10% of the period, so a fleet made at once does not stay one wave', async () => {
  const period = 600_000;
  const q = new WorkQueue({ concurrency: 4, worker: async () => ({ kind: 'resync', afterMs: period }) as Outcome });
  const delays: number[] = [];
  const add = q.add.bind(q);
  q.add = (key, delayMs = 0, opts) => (delayMs > 0 && delays.push(delayMs), add(key, delayMs, opts));
  for (let i = 0; i < 50; i++) q.add(`ns/c-${i}`);
  q.start();
  await until(() => delays.length === 50);
  q.shutdown();
  assert.ok(
    delays.every((d) => d >= period * 0.9 && d <= period * 1.1),
    'within ±10%',
  );
  assert.ok(new Set(delays).size > 40, 'and spread, not one wave');
});
