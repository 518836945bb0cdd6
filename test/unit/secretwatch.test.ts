import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { SecretWatch } from '../../src/controller/secrets.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import type { ClusterBootstrap } from '../../src/api/types.ts';

const cb = (name: string, secret: string) =>
  ({
    metadata: { namespace: 'team', name },
    spec: { git: { secretRef: { name: secret } } },
  }) as unknown as ClusterBootstrap;

function watch(cbs: ClusterBootstrap[], lines: string[] = []) {
  const versions = new Map<string, string>();
  const enqueued: string[] = [];
  const mgmt = {
    get: async (_v: string, _k: string, ns: string, name: string) => ({
      metadata: { resourceVersion: versions.get(`${ns}/${name}`) ?? '1' },
    }),
  } as unknown as KubeClient;
  const w = new SecretWatch({
    mgmt,
    list: () => cbs,
    enqueue: (namespace, name) => enqueued.push(`${namespace}/${name}`),
    log: pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) }),
    periodMs: 60_000,
  });
  return { w, versions, enqueued };
}

test('the first look only records what the first reconciles read: nothing is enqueued', async () => {
  const { w, enqueued } = watch([cb('a', 'push')]);
  await w.tick();
  assert.deepEqual(enqueued, []);
});

test('a Secret changed after the first look reconciles every ClusterBootstrap naming it, once per change', async () => {
  const { w, versions, enqueued } = watch([cb('a', 'push'), cb('b', 'push'), cb('c', 'other')]);
  await w.tick();
  versions.set('team/push', '2');
  await w.tick();
  await w.tick();
  assert.deepEqual(enqueued, ['team/a', 'team/b']);
});

test('a Secret first seen after the first look (a new ClusterBootstrap) is reconciled once more, then only on change', async () => {
  const cbs = [cb('a', 'push')];
  const { w, enqueued } = watch(cbs);
  await w.tick();
  cbs.push(cb('new', 'fresh'));
  await w.tick();
  await w.tick();
  assert.deepEqual(enqueued, ['team/new']);
});

test('every line it logs names the ClusterBootstrap it reconciles, namespace and name', async () => {
  const lines: string[] = [];
  const { w, versions } = watch([cb('a', 'push')], lines);
  await w.tick();
  versions.set('team/push', '2');
  await w.tick();
  assert.equal(lines.length, 1);
  assert.deepEqual((({ namespace, name, secretName }) => ({ namespace, name, secretName }))(JSON.parse(lines[0])), {
    namespace: 'team',
    name: 'a',
    secretName: 'push',
  });
});
