import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueue } from '../../src/controller/queue.ts';

test('a key added many times while waiting is processed once', async () => {
  const seen: string[] = [];
  const q = new WorkQueue({ concurrency: 1, worker: async (k) => (seen.push(k), { kind: 'done' }) });
  for (let i = 0; i < 5; i++) q.add('ns/a');
  q.add('ns/b');
  q.start();
  await sleep(20);
  assert.deepEqual(seen, ['ns/a', 'ns/b']);
});

test('one key is never processed twice at once, and an add during processing runs it again after', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  let runs = 0;
  const q = new WorkQueue({
    concurrency: 4,
    worker: async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      runs++;
      await sleep(20);
      inFlight--;
      return { kind: 'done' };
    },
  });
  q.start();
  q.add('ns/a');
  await sleep(5);
  q.add('ns/a');
  q.add('ns/a');
  await sleep(80);
  assert.equal(maxInFlight, 1);
  assert.equal(runs, 2);
});

test('different keys are processed in parallel up to the concurrency', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const q = new WorkQueue({
    concurrency: 3,
    worker: async () => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await sleep(20);
      inFlight--;
      return { kind: 'done' };
    },
  });
  q.start();
  for (let i = 0; i < 6; i++) q.add(`ns/${i}`);
  await sleep(100);
  assert.equal(maxInFlight, 3);
});

test('a failing key is retried with growing backoff, and success resets it', async () => {
  const times: number[] = [];
  const q = new WorkQueue({
    concurrency: 1,
    baseBackoffMs: 10,
    worker: async () => {
      times.push(Date.now());
      return times.length < 4 ? { kind: 'retry', error: new Error('boom') } : { kind: 'done' };
    },
  });
  q.start();
  q.add('ns/a');
  await sleep(300);
  assert.equal(times.length, 4);
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(gaps[2] > gaps[0], `gaps grow: ${gaps}`);
  assert.ok(q.backoff(30) <= 5 * 60_000 * 1.1, 'backoff is capped');
});

test('a worker may ask to be called again after a delay', async () => {
  let runs = 0;
  const q = new WorkQueue({
    concurrency: 1,
    worker: async () => (runs++ === 0 ? { kind: 'requeue', afterMs: 30 } : { kind: 'done' }),
  });
  q.start();
  q.add('ns/a');
  await sleep(10);
  assert.equal(runs, 1);
  await sleep(60);
  assert.equal(runs, 2);
});

test('shutdown waits for the key in flight and takes no more work', async () => {
  let finished = false;
  const q = new WorkQueue({
    concurrency: 1,
    worker: async () => (await sleep(30), (finished = true), { kind: 'done' }),
  });
  q.start();
  q.add('ns/a');
  q.add('ns/b');
  await sleep(5);
  await q.shutdown(1000);
  assert.equal(finished, true);
  assert.equal(q.depth, 1);
});

test(
  'a run past its deadline is abandoned: other keys get its worker, and the key runs again only after that run ' +
    'ends',
  async () => {
    let release!: () => void;
    const seen: string[] = [];
    let inFlightA = 0;
    let maxInFlightA = 0;
    const q = new WorkQueue({
      concurrency: 1,
      deadlineMs: 30,
      baseBackoffMs: 1,
      worker: async (key) => {
        seen.push(key);
        if (key === 'ns/stuck') {
          inFlightA++;
          maxInFlightA = Math.max(maxInFlightA, inFlightA);
          if (seen.filter((k) => k === 'ns/stuck').length === 1) await new Promise<void>((r) => (release = r));
          inFlightA--;
        }
        return { kind: 'done' };
      },
    });
    q.start();
    q.add('ns/stuck');
    q.add('ns/next');
    await sleep(80);
    assert.ok(seen.includes('ns/next'), 'the other key ran while the stuck one hung');
    assert.equal(
      seen.filter((k) => k === 'ns/stuck').length,
      1,
      'the stuck key is not run again while its run is still going',
    );
    release();
    await sleep(50);
    assert.equal(seen.filter((k) => k === 'ns/stuck').length, 2, 'once it ended, the abandoned key ran again');
    assert.equal(maxInFlightA, 1, 'never twice at once');
  },
);
