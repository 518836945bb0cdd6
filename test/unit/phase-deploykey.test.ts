import { test } from 'node:test';
import assert from 'node:assert/strict';
import { untilNextLook, registerDeployKeys } from '../../src/phases/deploykey.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { condition, contextOf, FakeClock, registerKey, world } from './fakes.ts';

const waitingSince = (at: string) => ({
  metadata: { name: 'prod', namespace: 'team' },
  status: {
    conditions: [
      { type: 'DeployKeyAuthorized', status: 'False', reason: 'DeployKeyNotAuthorized', lastTransitionTime: at },
    ],
  },
});

test('the deploy-key wait curve: 2 s after the key is published, then half the time waited so far, at most 30 s', () => {
  const clock = new FakeClock();
  const since = (s: number) => new Date(clock.t - s * 1000).toISOString();
  const rows: [string, any, number][] = [
    ['the key was just published', { metadata: {}, status: {} }, 2_000],
    ['waiting 1 s', waitingSince(since(1)), 2_000],
    ['waiting 10 s', waitingSince(since(10)), 5_000],
    ['waiting 40 s', waitingSince(since(40)), 20_000],
    ['waiting 2 min', waitingSince(since(120)), 30_000],
    ['waiting a day', waitingSince(since(86_400)), 30_000],
    ['a transition time that cannot be read', waitingSince('yesterday'), 2_000],
  ];
  for (const [given, cb, wait] of rows) assert.equal(untilNextLook({ cb, clock }), wait, given);
});

test('a pass that finds the key unauthorized publishes it and asks to look again by the curve', async () => {
  const w = await world();
  const outcome = await w.reconcile();
  const key = w.cb().status?.identity?.publicKey;
  assert.equal(condition(w, 'DeployKeyAuthorized')?.reason, 'DeployKeyNotAuthorized');
  assert.ok(
    condition(w, 'DeployKeyAuthorized')!.message.includes(
      `deploy key of ${'ssh://git@git.example:2222/org/fleet.git'}: ${key}`,
    ),
  );
  assert.deepEqual(outcome, { kind: 'requeue', afterMs: 2_000 });
  w.clock.t += 60_000;
  assert.deepEqual(await w.reconcile(), { kind: 'requeue', afterMs: 30_000 }, 'a minute later: at most 30 s');
  registerKey(w);
  await w.reconcile();
  assert.equal(condition(w, 'DeployKeyAuthorized')?.status, 'True');
  assert.equal(w.git.commits, 1);
});

test('a host that answers "not found" to a key is told apart: no repository, or push credentials that cannot read', async () => {
  const w = await world();
  w.git.writer = 'ssh-ed25519 AAAAnotthepushkey';
  await w.reconcile();
  assert.equal(condition(w, 'DeployKeyAuthorized')?.reason, 'GitAuthenticationFailed');
  assert.match(condition(w, 'DeployKeyAuthorized')!.message, /the push credentials in Secret push cannot read/);
  const x = await world();
  x.git.readHead = async () => {
    const { GitError } = await import('../../src/git/errors.ts');
    throw new GitError('notFound', 'Repository not found');
  };
  await x.reconcile();
  assert.equal(condition(x, 'DeployKeyAuthorized')?.reason, 'RepositoryNotFound');
});

test("through the provider, Flux's key is registered once, titled after the cluster, and not asked again for a while", async () => {
  const w = await world({ git: { url: 'ssh://git@git.example:2222/org/once.git' } } as any, { provider: true });
  w.flux.running = true;
  await w.reconcile();
  assert.deepEqual([...w.provider.keys.keys()], ['flux-team-prod']);
  const asked = () => w.calls.list.filter((c) => c.what.startsWith('provider ensure')).length;
  const first = asked();
  await w.reconcile();
  assert.equal(asked(), first, 'within ten minutes the API is not asked again');
  w.clock.t += 11 * 60_000;
  await w.reconcile();
  assert.equal(asked(), first + 1);
});

test('a host that refuses a second key with one title (Gitea) gets the next key under a title of its own', async () => {
  const w = await world({}, { provider: true });
  const ctx = contextOf(w);
  const titles: string[] = [];
  const provider = {
    ensure: async (title: string) => {
      titles.push(title);
      if (title === 'flux-team-prod') throw new ProviderError('conflict', 'title taken');
      return { created: true };
    },
    remove: async () => {},
  };
  const identity = {
    publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl0c19hX2Zha2VfaG9zdF9rZXlfZm9yX3Rlc3Rz',
    privateKey: '',
    secretName: 's',
  };
  await registerDeployKeys(
    { ...ctx, opts: { ...ctx.opts, git: { ...ctx.opts.git, url: 'ssh://h/conflict.git' } } },
    identity,
    provider,
  );
  assert.equal(titles.length, 2);
  assert.match(titles[1], /^flux-team-prod-[A-Za-z0-9+/]{8}$/);
});

test('provider answers become reasons: a bad token, a rate limit until its reset, a 5xx with backoff', async () => {
  const rows: [ProviderError, string, number | undefined][] = [
    [new ProviderError('unauthorized', 'bad token'), 'GitProviderAuthFailed', 60_000],
    [new ProviderError('rateLimited', 'slow down', { retryAfterMs: 90_000 }), 'GitProviderRateLimited', 90_000],
    [new ProviderError('unreachable', 'HTTP 502'), 'GitProviderError', undefined],
  ];
  for (const [answer, reason, retry] of rows) {
    const w = await world({ git: { url: `ssh://git@git.example:2222/org/${reason}.git` } } as any, { provider: true });
    w.provider.ensure = async () => Promise.reject(answer);
    const outcome = await w.reconcile();
    assert.equal(condition(w, 'DeployKeyAuthorized')?.reason, reason);
    assert.deepEqual(
      outcome,
      retry ? { kind: 'requeue', afterMs: retry } : { kind: 'retry', error: outcome.kind === 'retry' && outcome.error },
    );
  }
});

test('Flux not Ready yet is looked at after 10 s, then less often the longer it takes, at most every minute', async () => {
  const w = await world();
  await w.reconcile();
  registerKey(w);
  assert.deepEqual(await w.reconcile(), { kind: 'requeue', afterMs: 10_000 });
  w.clock.t += 60_000;
  assert.deepEqual(await w.reconcile(), { kind: 'requeue', afterMs: 30_000 });
  w.clock.t += 10 * 60_000;
  assert.deepEqual(await w.reconcile(), { kind: 'requeue', afterMs: 60_000 });
});
