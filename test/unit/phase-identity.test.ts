import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ROTATE_IDENTITY_AT } from '../../src/api/types.ts';
import { ensureIdentity } from '../../src/phases/identity.ts';
import { fingerprint } from '../../src/ssh/keys.ts';
import { annotate, condition, contextOf, registerKey, secretOf, world, type World } from './fakes.ts';

const identity = (w: World) => secretOf(w.mgmt, 'team', 'prod-flux-identity');
const fluxKey = (w: World) => secretOf(w.target, 'flux-system', 'flux-system')['identity.pub']?.trim();

/** ready bootstraps a ClusterBootstrap whose key a person registers (provider generic), with Flux running. */
async function ready(): Promise<World> {
  const w = await world();
  w.flux.running = true;
  await w.reconcile();
  registerKey(w);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True');
  return w;
}

test('the first pass makes one key pair and keeps it in the identity Secret; later passes never make another', async () => {
  const w = await world();
  await w.reconcile();
  const first = identity(w);
  assert.match(first.identity, /BEGIN OPENSSH PRIVATE KEY/);
  assert.equal(w.cb().status?.identity?.publicKey, first['identity.pub'].trim());
  w.restart();
  await w.reconcile();
  assert.deepEqual(identity(w), first);
});

test('two reconciles racing for the first key end with one: the loser of the create reads the winner', async () => {
  const w = await world();
  const [a, b] = await Promise.all([ensureIdentity(contextOf(w)), ensureIdentity(contextOf(w))]);
  assert.equal(a.result.publicKey, b.result.publicKey);
  assert.equal(w.mgmt.of('Secret').filter((s) => s.metadata.name === 'prod-flux-identity').length, 1);
});

/**
 * A rotation resumed at each of its steps: before every pass the operator is restarted (a new Reconciler, which
 * knows nothing but what the clusters and git hold). Each row names the decision and what must hold after it.
 */
test(
  'a rotation resumed by a restarted operator at each step makes one next key and never leaves Flux with a key ' +
    'the host refuses',
  async () => {
    const w = await ready();
    const old = identity(w)['identity.pub'].trim();
    annotate(w, ROTATE_IDENTITY_AT, '2026-12-01T10:00:00Z');
    let next = '';
    const rows: { given: string; act?: () => void; then: () => void }[] = [
      {
        given: 'rotation asked, next key not yet registered',
        then: () => {
          next = identity(w)['next.identity.pub'].trim();
          assert.ok(next && next !== old, 'the next key is kept beside the current one');
          assert.equal(identity(w)['identity.pub'].trim(), old);
          assert.equal(fluxKey(w), old, 'Flux keeps the current key');
          assert.equal(condition(w, 'IdentityReady')?.reason, 'DeployKeyNotAuthorized');
          assert.match(
            condition(w, 'IdentityReady')!.message,
            new RegExp(next.split(' ')[1].slice(0, 20).replace(/\+/g, '\\+')),
          );
          assert.equal(w.cb().status?.identity?.rotatingTo, fingerprint(next));
        },
      },
      {
        given: 'restarted while waiting for the next key',
        then: () => assert.equal(identity(w)['next.identity.pub'].trim(), next, 'the same next key, not a second one'),
      },
      {
        given: 'next key registered, Flux not yet fetched with it',
        act: () => {
          registerKey(w, next);
          w.flux.stale = true;
        },
        then: () => {
          assert.equal(identity(w)['identity.pub'].trim(), next, 'switched');
          assert.equal(identity(w)['previous.identity.pub'].trim(), old, 'the old key is remembered until retired');
          assert.equal(identity(w)['next.identity'], undefined);
          assert.equal(fluxKey(w), next, "Flux's Secret holds the new key");
          assert.match(condition(w, 'FluxReady')!.message, /has not fetched with Flux's new key yet/);
          assert.ok(w.git.readers.has(old.split(' ').slice(0, 2).join(' ')), 'the old key still reads meanwhile');
        },
      },
      {
        given: 'restarted after the switch, Flux still not fetched',
        then: () => {
          assert.equal(identity(w)['previous.identity.pub'].trim(), old);
          assert.equal(condition(w, 'Ready')?.status, 'False');
        },
      },
      {
        given: 'Flux fetched with the new key',
        act: () => (w.flux.stale = false),
        then: () => {
          assert.equal(identity(w)['previous.identity.pub'], undefined, 'retired');
          assert.equal(condition(w, 'Ready')?.status, 'True');
          assert.equal(w.cb().status?.lastHandledRotateAt, '2026-12-01T10:00:00Z');
          assert.match(w.events.at(-2)?.message ?? w.events.at(-1)!.message, /revoke the old deploy key/);
        },
      },
      {
        given: 'restarted once the rotation is done',
        then: () => {
          assert.equal(identity(w)['identity.pub'].trim(), next);
          assert.equal(identity(w)['next.identity'], undefined, 'the handled annotation starts no second rotation');
        },
      },
    ];
    for (const row of rows) {
      row.act?.();
      w.restart();
      await w.reconcile();
      try {
        row.then();
      } catch (err) {
        throw new Error(`given ${row.given}: ${(err as Error).message}`, { cause: err });
      }
    }
  },
);

test('spec.identity.rotateEvery rotates a key once it is older than that, and names when next', async () => {
  const w = await world({ identity: { rotateEvery: '720h' } } as any, { provider: true });
  w.flux.running = true;
  await w.reconcile();
  const made = Date.parse(w.cb().status!.identity!.createdAt!);
  assert.equal(w.cb().status?.identity?.nextRotationAt, new Date(made + 720 * 3600_000).toISOString());
  const old = identity(w)['identity.pub'];
  w.clock.t = made + 719 * 3600_000;
  await w.reconcile();
  assert.equal(identity(w)['identity.pub'], old, 'not yet');
  w.clock.t = made + 721 * 3600_000;
  await w.reconcile();
  assert.notEqual(identity(w)['identity.pub'], old, 'rotated through the provider in one pass');
  assert.equal(w.provider.keys.size, 1, 'the old deploy key was removed through the provider');
});

test("a changed spec.identity.algorithm is reported, never applied behind the user's back", async () => {
  const w = await world({ identity: { algorithm: 'ecdsa' } } as any);
  await w.reconcile();
  const cb = w.cb();
  w.mgmt.put({
    ...cb,
    metadata: { ...cb.metadata, generation: 2 },
    spec: { ...cb.spec, identity: { algorithm: 'ed25519' } },
  });
  const before = identity(w)['identity.pub'];
  await w.reconcile();
  assert.equal(identity(w)['identity.pub'], before);
  assert.match(condition(w, 'IdentityReady')!.message, /not ed25519 as spec.identity asks: rotate it/);
});

test('two reconciles racing to begin a rotation end with one next key: the write is guarded by the resourceVersion', async () => {
  const w = await world();
  await w.reconcile();
  annotate(w, ROTATE_IDENTITY_AT, 'now');
  const [a, b] = await Promise.all([ensureIdentity(contextOf(w)), ensureIdentity(contextOf(w))]);
  assert.ok(a.result.next && b.result.next);
  assert.equal(a.result.next.publicKey, b.result.next.publicKey);
  assert.equal(identity(w)['next.identity.pub'].trim(), a.result.next.publicKey);
});
