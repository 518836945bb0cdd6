import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PhaseError } from '../../src/api/errors.ts';
import { REPIN_HOST_KEYS_AT } from '../../src/api/types.ts';
import { trustHostKeys } from '../../src/phases/hostkeys.ts';
import { ensureIdentity } from '../../src/phases/identity.ts';
import { readPushCredentials } from '../../src/phases/credentials.ts';
import { formatKnownHosts, type HostKey } from '../../src/ssh/hostkeys.ts';
import { annotate, contextOf, secretOf, world, type World } from './fakes.ts';

const OTHER: HostKey = {
  host: '[git.example]:2222',
  type: 'ssh-ed25519',
  key: 'AAAAC3NzaC1lZDI1NTE5AAAAIHRoaXNfaXNfYV9kaWZmZXJlbnRfaG9zdF9rZXlfISE',
};

/** trust runs the host-key phase once, as a pass does (identity and push credentials first). */
async function trust(w: World) {
  const ctx = contextOf(w);
  const identity = (await ensureIdentity(ctx)).result;
  const push = (await readPushCredentials(ctx)).result;
  return trustHostKeys(ctx, identity, push);
}

const pinned = (w: World) => secretOf(w.mgmt, 'team', 'prod-flux-identity').known_hosts;

const rows: {
  given: string;
  setup?: (w: World) => Promise<void> | void;
  then: { reason?: string; message?: RegExp; pinned?: (w: World) => string | undefined };
}[] = [
  {
    given: 'a first scan',
    then: { message: /^pinned ssh-ed25519 SHA256:/, pinned: (w) => formatKnownHosts(w.git.hostKeys) },
  },
  {
    given: 'a later scan offering the same keys',
    setup: (w) => trust(w).then(() => undefined),
    then: { message: /^pinned ssh-ed25519 SHA256:/, pinned: (w) => formatKnownHosts(w.git.hostKeys) },
  },
  {
    given: 'a later scan offering another key',
    setup: async (w) => {
      await trust(w);
      w.git.hostKeys = [OTHER];
    },
    then: {
      reason: 'HostKeyChanged',
      message: /changed since it was pinned — refusing to connect.*repin-host-keys-at/,
      pinned: () =>
        formatKnownHosts([{ ...OTHER, key: 'AAAAC3NzaC1lZDI1NTE5AAAAIGl0c19hX2Zha2VfaG9zdF9rZXlfZm9yX3Rlc3Rz' }]),
    },
  },
  {
    given: 'another key, and the re-pin annotation',
    setup: async (w) => {
      await trust(w);
      w.git.hostKeys = [OTHER];
      annotate(w, REPIN_HOST_KEYS_AT, '2026-12-01T00:00:00Z');
    },
    then: { message: /^pinned ssh-ed25519 SHA256:/, pinned: () => formatKnownHosts([OTHER]) },
  },
  {
    given: 'keys the user pinned in spec.git.knownHosts that the host no longer offers',
    setup: (w) => {
      const cb = w.cb();
      w.mgmt.put({ ...cb, spec: { ...cb.spec, git: { ...cb.spec.git, knownHosts: formatKnownHosts([OTHER]) } } });
    },
    then: {
      reason: 'HostKeyChanged',
      message: /replace the pinned key in spec.git.knownHosts/,
      pinned: () => undefined,
    },
  },
  {
    given: 'a pinned known_hosts that cannot be read',
    setup: (w) => {
      const cb = w.cb();
      w.mgmt.put({
        ...cb,
        spec: { ...cb.spec, git: { ...cb.spec.git, knownHosts: '[git.example]:2222 ssh-ed25519' } },
      });
    },
    then: { reason: 'HostKeyInvalid', message: /cannot be read/ },
  },
  {
    given: 'a git host that does not answer the scan',
    setup: (w) => {
      w.git.scanHostKeys = async () => Promise.reject(new Error('connect ECONNREFUSED'));
    },
    then: { reason: 'GitHostUnreachable', message: /cannot reach the git host git.example:2222 over SSH/ },
  },
];

for (const row of rows) {
  test(`host keys, given ${row.given}: ${row.then.reason ?? 'trusted'}`, async () => {
    const w = await world();
    await row.setup?.(w);
    let message: string;
    try {
      message = (await trust(w)).message!;
      assert.equal(row.then.reason, undefined, 'expected a refusal');
    } catch (err) {
      if (!(err instanceof PhaseError)) throw err;
      assert.equal(err.reason, row.then.reason, err.message);
      message = err.message;
    }
    if (row.then.message) assert.match(message, row.then.message);
    if (row.then.pinned) assert.equal(pinned(w), row.then.pinned(w));
  });
}

test('an https repository is verified by TLS: no scan, nothing pinned', async () => {
  const w = await world({
    git: { url: 'https://git.example/org/fleet.git', secretRef: { name: 'token' }, sharePushCredentials: true },
  } as any);
  w.mgmt.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'token', namespace: 'team' },
    stringData: { password: 'x' },
  });
  const step = await trust(w);
  assert.equal(step.result, '');
  assert.ok(!w.calls.list.some((c) => c.what.startsWith('ssh-keyscan')));
});

test('the re-pin annotation is echoed once handled, so the next pass compares against the new pins', async () => {
  const w = await world();
  await w.reconcile();
  w.git.hostKeys = [OTHER];
  annotate(w, REPIN_HOST_KEYS_AT, 'once');
  await w.reconcile();
  assert.equal(w.cb().status?.lastHandledRepinAt, 'once');
  w.git.hostKeys = [{ ...OTHER, key: OTHER.key.replace('ISE', 'IyM') }];
  await w.reconcile();
  assert.equal(w.cb().status?.conditions?.find((c: any) => c.type === 'HostKeyTrusted')?.reason, 'HostKeyChanged');
});
