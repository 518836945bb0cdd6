import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PathIndex } from '../../src/controller/paths.ts';
import { PhaseError } from '../../src/api/errors.ts';
import type { ClusterBootstrap } from '../../src/api/types.ts';

let uid = 0;
/** cb is a ClusterBootstrap on the shared path, created at minute `at`, that has committed there or not. */
function cb(namespace: string, name: string, at: number, committed = false): ClusterBootstrap {
  return {
    apiVersion: 'fluxbootstrap.dev/v1alpha1',
    kind: 'ClusterBootstrap',
    metadata: {
      namespace,
      name,
      uid: `u${++uid}`,
      generation: 1,
      creationTimestamp: `2026-12-01T00:${String(at).padStart(2, '0')}:00Z`,
    },
    spec: {
      target: { kubeconfigSecretRef: { name: 'k' } },
      git: { url: 'ssh://git@git.example/org/fleet.git', secretRef: { name: 'push' }, path: 'clusters/prod' },
    },
    status: committed
      ? { conditions: [{ type: 'Committed', status: 'True', reason: 'Succeeded', message: '', observedGeneration: 1 }] }
      : {},
  } as ClusterBootstrap;
}

function conflict(index: PathIndex, who: ClusterBootstrap): string | undefined {
  try {
    index.check(who);
    return undefined;
  } catch (err) {
    assert.ok(err instanceof PhaseError && err.reason === 'PathConflict');
    return err.message;
  }
}

const rows: { given: string; others: ClusterBootstrap[]; me: ClusterBootstrap; then: RegExp | undefined }[] = [
  {
    given: 'an older one in my namespace',
    others: [cb('a', 'old', 1)],
    me: cb('a', 'new', 2),
    then: /^ClusterBootstrap old already/,
  },
  { given: 'a younger one in my namespace', others: [cb('a', 'young', 3)], me: cb('a', 'me', 2), then: undefined },
  {
    given: 'an older one of another namespace that never committed there (a squatter)',
    others: [cb('b', 'squat', 1)],
    me: cb('a', 'prod', 2),
    then: undefined,
  },
  {
    given: 'one of another namespace that has committed there',
    others: [cb('b', 'owner', 3, true)],
    me: cb('a', 'prod', 2),
    then: /^a ClusterBootstrap in another namespace already bootstraps clusters\/prod/,
  },
  {
    given: 'an older one in my namespace, when I have committed there and it has not',
    others: [cb('a', 'old', 1)],
    me: cb('a', 'me', 2, true),
    then: undefined,
  },
  {
    given: 'one being deleted',
    others: [{ ...cb('a', 'gone', 1), metadata: { ...cb('a', 'gone', 1).metadata, deletionTimestamp: 'x' } }],
    me: cb('a', 'me', 2),
    then: undefined,
  },
];

for (const row of rows) {
  test(`path conflicts, given ${row.given}: ${row.then ? 'PathConflict' : 'mine'}`, () => {
    const index = new PathIndex();
    for (const o of [...row.others, row.me]) index.upsert(o);
    const message = conflict(index, row.me);
    if (row.then) assert.match(message ?? '', row.then);
    else assert.equal(message, undefined);
    if (message) assert.ok(!/\bb\//.test(message) && !message.includes('owner'), 'another namespace is never named');
  });
}

test('the index is looked up, not rebuilt: a spec is validated once per generation, and a removed one claims nothing', () => {
  const index = new PathIndex();
  const old = cb('a', 'old', 1);
  const me = cb('a', 'me', 2);
  index.upsert(old);
  index.upsert(me);
  assert.ok(conflict(index, me));
  index.upsert({
    ...old,
    spec: { ...old.spec, git: { ...old.spec.git, path: 'clusters/other' } },
    metadata: { ...old.metadata, generation: 2 },
  });
  assert.equal(conflict(index, me), undefined, 'the older one moved to another path');
  index.remove(old);
  assert.equal(index.size, 1);
});
