/**
 * Deletion policies: Orphan leaves Flux running on the target, Uninstall removes it in order; either way
 * the ClusterBootstrap goes, and its identity Secret with it (owner reference, collected by the lab's
 * garbage collector). Each uses a Flux namespace of its own on the shared target cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  applyCB,
  authorizeWhenPublished,
  mgmt,
  namespace,
  operatorSuite,
  repo,
  target,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
} from './harness.ts';

const suite = operatorSuite('e2e-deletion', (ns) => targetKubeconfigSecret(ns, 'target').then(() => undefined));

async function bootstrapped(name: string, fluxNamespace: string, deletionPolicy: 'Orphan' | 'Uninstall') {
  await applyCB(suite.ns, name, {
    target: { kubeconfigSecretRef: { name: 'target-kubeconfig' } },
    git: { url: await repo(name), secretRef: { name: 'git-push' } },
    flux: { namespace: fluxNamespace, components: ['source-controller', 'kustomize-controller'] },
    deletionPolicy,
  });
  await authorizeWhenPublished(suite.ns, name);
  await waitCondition(suite.ns, name, 'Applied', 'True');
}

async function deleted(name: string) {
  await mgmt().delete(API_VERSION, KIND, suite.ns, name);
  await waitFor(
    `${suite.ns}/${name} to be gone`,
    async () => (await mgmt().get(API_VERSION, KIND, suite.ns, name)) === undefined,
    60_000,
  );
  await waitFor(
    `the identity Secret of ${name} to be collected`,
    async () => (await mgmt().get('v1', 'Secret', suite.ns, `${name}-flux-identity`)) === undefined,
    60_000,
  );
}

test('deleting with deletionPolicy Orphan leaves Flux running on the target', async () => {
  await bootstrapped('orphan', 'flux-orphan', 'Orphan');
  await deleted('orphan');
  const t = target();
  assert.ok(await t.get('apps/v1', 'Deployment', 'flux-orphan', 'source-controller'));
  assert.ok(await t.get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-orphan', 'flux-orphan'));
  assert.ok(await t.get('v1', 'Secret', 'flux-orphan', 'flux-system'));
});

test('deleting with deletionPolicy Uninstall removes Flux from the target: objects, controllers and namespace', async () => {
  await bootstrapped('uninstall', 'flux-uninstall', 'Uninstall');
  await deleted('uninstall');
  const t = target();
  assert.equal(await t.get('apps/v1', 'Deployment', 'flux-uninstall', 'kustomize-controller'), undefined);
  assert.equal(await t.get('v1', 'Secret', 'flux-uninstall', 'flux-system'), undefined);
  await waitFor(
    'namespace flux-uninstall to be gone',
    async () => (await t.get('v1', 'Namespace', undefined, 'flux-uninstall')) === undefined,
    60_000,
  );
  assert.equal(
    await t.get(
      'apiextensions.k8s.io/v1',
      'CustomResourceDefinition',
      undefined,
      'gitrepositories.source.toolkit.fluxcd.io',
    ),
    undefined,
  );
});
