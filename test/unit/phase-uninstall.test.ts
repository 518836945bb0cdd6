import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeError } from '../../src/kube/client.ts';
import { uninstallFlux } from '../../src/phases/uninstall.ts';
import { condition, contextOf, NAME, NS, registerKey, world, type World } from './fakes.ts';

/**
 * ready bootstraps a ClusterBootstrap through the provider with deletionPolicy Uninstall, Flux running and a
 * GitRepository of the user's.
 */
async function ready(): Promise<World> {
  const w = await world({ deletionPolicy: 'Uninstall' } as any, { provider: true });
  w.flux.running = true;
  await w.reconcile();
  registerKey(w);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True', w.cb().status?.message);
  w.target.put({
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: { name: 'apps', namespace: 'apps', finalizers: ['finalizers.fluxcd.io'] },
    spec: {},
  });
  return w;
}

/** deleting marks the ClusterBootstrap deleted, as the API server does for an object with a finalizer. */
function deleting(w: World): void {
  const cb = w.cb();
  w.mgmt.put({ ...cb, metadata: { ...cb.metadata, deletionTimestamp: '2026-12-01T01:00:00Z' } });
}

const deletes = (w: World, from = 0) =>
  w.calls.list
    .slice(from)
    .filter(
      (c) => c.what.startsWith('https://target.example delete') || c.what.includes('patch GitRepository apps/apps'),
    )
    .map((c) => c.what.replace('https://target.example ', ''));

test(
  "Uninstall tears down in flux uninstall's order: finalizers, Flux objects, the Secret, the components, the " +
    'CRDs, the namespace; then the deploy keys',
  async () => {
    const w = await ready();
    deleting(w);
    assert.deepEqual(await w.reconcile(), { kind: 'done' });
    const order = deletes(w);
    const first = (re: RegExp) => order.findIndex((d) => re.test(d));
    const last = (re: RegExp) => order.findLastIndex((d) => re.test(d));
    assert.ok(
      first(/patch GitRepository apps\/apps/) >= 0,
      "a Flux object's finalizer is removed (its controller may be gone)",
    );
    assert.ok(
      first(/patch GitRepository apps\/apps/) < first(/delete GitRepository apps\/apps/),
      'before it is deleted',
    );
    assert.ok(last(/delete (GitRepository|Kustomization) /) < first(/delete Secret flux-system\/flux-system/));
    assert.ok(first(/delete Secret flux-system\/flux-system/) < first(/delete Deployment /));
    assert.ok(last(/delete Deployment /) < first(/delete CustomResourceDefinition /));
    assert.equal(last(/delete Namespace /), order.length - 1, 'the namespace goes last');
    assert.equal(w.target.of('Deployment').length, 0);
    assert.equal(w.target.of('CustomResourceDefinition').length, 0);
    assert.equal(w.provider.keys.size, 0, 'the deploy key is removed through the provider');
    assert.equal(w.cb(), undefined, 'the finalizer is removed and the ClusterBootstrap goes');
  },
);

test('a target that fails half-way keeps the ClusterBootstrap, says why, and the next pass finishes from where it is', async () => {
  const w = await ready();
  deleting(w);
  let failures = 0;
  w.calls.before = (what) => {
    if (what.includes('delete Deployment flux-system/helm-controller') && failures++ === 0)
      throw new KubeError(0, 'ConnectionError', 'the target went away');
  };
  const outcome = await w.reconcile();
  assert.equal(outcome.kind, 'retry');
  assert.equal(condition(w, 'Ready')?.reason, 'Deleting');
  assert.match(
    condition(w, 'Ready')!.message,
    /uninstalling Flux failed \(set spec.deletionPolicy to Orphan.*the target went away/,
  );
  assert.ok(w.target.of('CustomResourceDefinition').length > 0, 'nothing after the failure was deleted');
  assert.equal(w.provider.keys.size, 1, 'the deploy keys are kept until Flux is gone');
  const from = w.calls.list.length;
  assert.deepEqual(await w.reconcile(), { kind: 'done' });
  assert.equal(w.target.of('CustomResourceDefinition').length, 0);
  assert.ok(!deletes(w, from).includes('patch GitRepository apps/apps'), 'what was gone is not asked for again');
  assert.equal(w.provider.keys.size, 0);
  assert.equal(w.cb(), undefined);
});

test(
  'with the kubeconfig Secret gone (Cluster API deleted the cluster) there is nothing to uninstall from: said, ' +
    'and let go',
  async () => {
    const w = await ready();
    w.mgmt.objects.delete(`Secret|${NS}|prod-kubeconfig`);
    deleting(w);
    assert.deepEqual(await w.reconcile(), { kind: 'done' });
    assert.ok(w.events.some((e) => e.reason === 'UninstallSkipped'));
    assert.ok(w.target.of('Deployment').length > 0, 'the target was not touched');
    assert.equal(w.mgmt.read('ClusterBootstrap', NS, NAME), undefined);
  },
);

test('Orphan (the default) lets go without touching the target or the git host', async () => {
  const w = await world({}, { provider: true });
  w.flux.running = true;
  await w.reconcile();
  deleting(w);
  const from = w.calls.list.length;
  assert.deepEqual(await w.reconcile(), { kind: 'done' });
  assert.deepEqual(
    w.calls.list.slice(from).filter((c) => !c.what.startsWith('https://mgmt.example')),
    [],
  );
  assert.equal(w.provider.keys.size, 1);
});

test('uninstallFlux skips what is gone, so a second run (or one after a partial run) deletes nothing new', async () => {
  const w = await ready();
  await uninstallFlux(contextOf(w), w.target);
  const left = [...w.target.objects.keys()];
  const from = w.calls.list.length;
  await uninstallFlux(contextOf(w), w.target);
  assert.deepEqual([...w.target.objects.keys()], left);
  assert.ok(
    w.calls.list.slice(from).every((c) => !c.what.includes('patch')),
    'no finalizer left to remove',
  );
});
