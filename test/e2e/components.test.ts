/**
 * Flux's components as the operator renders them, every extra one included — source-watcher with its
 * ArtifactGenerator CRD too — are accepted by the lab's real target API server: a server-side apply with
 * --dry-run=server for each shipped Flux version, into a namespace of this file's own, so nothing of it stays.
 * The lab runs no source-watcher (only source-controller and kustomize-controller run, out of cluster): what is
 * shown here is that its objects are valid, not that it runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  componentsFor,
  shippedVersions,
  DEFAULT_COMPONENTS,
  EXTRA_COMPONENTS,
} from '../../src/manifests/components.ts';
import { kubectl, lab } from './harness.ts';

const ns = `fbo-components-${Math.random().toString(36).slice(2, 7)}`;
const all = [...DEFAULT_COMPONENTS, ...EXTRA_COMPONENTS];

before(() => {
  kubectl(['create', 'namespace', ns], lab().LAB_TARGET_KUBECONFIG);
});

after(() => {
  kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found'], lab().LAB_TARGET_KUBECONFIG);
});

for (const version of shippedVersions()) {
  test(
    `all ${all.length} components of Flux ${version}, source-watcher among them, pass the target API server's ` +
      `dry run`,
    () => {
      const text = componentsFor({
        version,
        components: all,
        namespace: ns,
        registry: 'registry.internal/fluxcd',
        imagePullSecret: 'regcred',
        networkPolicy: true,
        watchAllNamespaces: true,
        clusterDomain: 'cluster.local',
        tolerationKeys: ['CriticalAddonsOnly'],
        logLevel: 'info',
      });
      const args = [
        '--kubeconfig',
        lab().LAB_TARGET_KUBECONFIG,
        'apply',
        '--server-side',
        '--force-conflicts',
        '--field-manager=fbo-dry-run',
        '--dry-run=server',
        '-f',
        '-',
      ];
      const r = spawnSync(join(lab().LAB_BIN, 'kubectl'), args, { input: text, encoding: 'utf8', maxBuffer: 64 << 20 });
      assert.equal(r.status, 0, `kubectl apply --dry-run=server: ${r.stderr}`);
      assert.equal(r.stderr.trim(), '', 'no warnings');
      for (const line of [
        'customresourcedefinition.apiextensions.k8s.io/artifactgenerators.source.extensions.fluxcd.io ' +
          'serverside-applied (server dry run)',
        `serviceaccount/source-watcher serverside-applied (server dry run)`,
        `service/source-watcher serverside-applied (server dry run)`,
        `deployment.apps/source-watcher serverside-applied (server dry run)`,
      ])
        assert.ok(r.stdout.split('\n').includes(line), `${line} in:\n${r.stdout}`);
      for (const c of all) assert.ok(r.stdout.includes(`deployment.apps/${c} serverside-applied (server dry run)`), c);
    },
  );
}
