/**
 * The product, end to end: one ClusterBootstrap in the management cluster bootstraps Flux onto the target
 * cluster from an empty repository, and Flux itself (the lab's source- and kustomize-controller) then syncs
 * what is committed under the cluster's path.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import yaml from 'js-yaml';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fluxStart, fluxStop, PROJECT_ROOT } from '../lab/lab.ts';
import {
  applyCB,
  authorize,
  clone,
  condition,
  E2E_LAB_DIR,
  getCB,
  git,
  kubectl,
  lab,
  mgmt,
  namespace,
  operatorSuite,
  repo,
  target,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
  writeFile,
} from './harness.ts';

const name = 'prod-eu';
let url: string;
const suite = operatorSuite('e2e-bootstrap', async (ns) => {
  url = await repo('fleet');
  await targetKubeconfigSecret(ns, name);
  await applyCB(ns, name, {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: { url, secretRef: { name: 'git-push' } },
    flux: { version: 'v2.9.3' },
    sync: { interval: '10s' },
  });
});

after(async () => {
  await fluxStop({ dir: E2E_LAB_DIR });
});

let publicKey: string;

test('the status publishes the public key and waits for it to be registered as a deploy key', async () => {
  const cb = await waitCondition(suite.ns, name, 'DeployKeyAuthorized', 'False', 'DeployKeyNotAuthorized');
  publicKey = cb.status!.identity!.publicKey;
  assert.match(publicKey, /^ssh-ed25519 AAAA/);
  assert.ok(
    condition(cb, 'DeployKeyAuthorized')!.message.includes(publicKey),
    'the condition carries the key to register',
  );
  assert.equal(condition(cb, 'Ready')!.status, 'False');
  assert.ok(cb.status!.hostKeys!.fingerprints.length > 0, 'host key fingerprints are recorded');
  assert.equal(git(['ls-remote', url]), '', 'nothing is committed before the deploy key can read');
});

test('once the deploy key is registered, the flux-system files land in one commit on the empty repository', async () => {
  authorize(publicKey);
  const cb = await waitCondition(suite.ns, name, 'Committed', 'True');
  const dir = clone(url);
  assert.equal(git(['rev-list', '--count', 'HEAD'], dir), '1');
  assert.equal(git(['rev-parse', 'HEAD'], dir), cb.status!.lastPushedCommit);
  assert.deepEqual(git(['ls-files'], dir).split('\n'), [
    `clusters/${name}/flux-system/gotk-components.yaml`,
    `clusters/${name}/flux-system/gotk-sync.yaml`,
    `clusters/${name}/flux-system/kustomization.yaml`,
  ]);
  const sync = readFileSync(join(dir, `clusters/${name}/flux-system/gotk-sync.yaml`), 'utf8');
  assert.ok(sync.includes(`url: ${url}`) && sync.includes(`path: ./clusters/${name}`));
});

test('the target cluster gets the CRDs, the namespace, the controllers, the identity Secret and the sync objects', async () => {
  await waitCondition(suite.ns, name, 'Applied', 'True');
  const t = target();
  assert.ok(
    await t.get(
      'apiextensions.k8s.io/v1',
      'CustomResourceDefinition',
      undefined,
      'kustomizations.kustomize.toolkit.fluxcd.io',
    ),
  );
  assert.ok(await t.get('v1', 'Namespace', undefined, 'flux-system'));
  for (const d of ['source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller'])
    assert.ok(await t.get('apps/v1', 'Deployment', 'flux-system', d), `Deployment ${d}`);
  const secret = await t.get('v1', 'Secret', 'flux-system', 'flux-system');
  assert.deepEqual(Object.keys(secret.data).sort(), ['identity', 'identity.pub', 'known_hosts']);
  assert.equal(Buffer.from(secret.data['identity.pub'], 'base64').toString().trim(), publicKey);
  assert.match(
    Buffer.from(secret.data.known_hosts, 'base64').toString(),
    new RegExp(`^\\[127\\.0\\.0\\.1\\]:${lab().LAB_GIT_PORT} `, 'm'),
  );
  assert.ok(await t.get('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-system', 'flux-system'));
  assert.ok(await t.get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-system', 'flux-system'));
});

test('with Flux running, the ClusterBootstrap becomes Ready at the pushed revision', async () => {
  await fluxStart({ dir: E2E_LAB_DIR });
  const cb = await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 180_000);
  const ks = await target().get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-system', 'flux-system');
  assert.equal(ks.status.lastAppliedRevision, cb.status!.lastPushedRevision);
  assert.equal(cb.status!.lastPushedRevision, `main@sha1:${cb.status!.lastPushedCommit}`);
  assert.equal(cb.status!.fluxVersion, 'v2.9.3');
  assert.equal(cb.status!.observedGeneration, cb.metadata.generation);
  kubectl(['wait', '--for=condition=Ready', `clusterbootstrap/${name}`, '-n', suite.ns, '--timeout=10s']);
  const table = kubectl(['get', 'clusterbootstrap', '-n', suite.ns]);
  assert.match(table, /NAME\s+CLUSTER\s+FLUX\s+READY\s+STATUS\s+AGE/);
  assert.match(
    table,
    new RegExp(`${name}\\s+${name}-kubeconfig\\s+v2\\.9\\.3\\s+True\\s+Flux v2\\.9\\.3 is in sync at main@sha1:`),
  );
  const wide = kubectl(['get', 'cb', '-n', suite.ns, '-o', 'wide']);
  assert.match(wide, /REASON\s+REVISION/);
  assert.match(wide, /Succeeded\s+main@sha1:/);
  process.stderr.write(`\n$ kubectl get clusterbootstrap -n ${suite.ns}\n${table}\n`);
});

test(
  "once Flux manages itself, the operator's field manager owns no field of any component object: Flux's own " +
    'apply does',
  async () => {
    const objects = yaml.loadAll(
      readFileSync(join(PROJECT_ROOT, 'src/manifests/flux/v2.9.3/gotk-components.yaml'), 'utf8'),
    ) as any[];
    const owners = async (o: any) => {
      const live = await target().get<any>(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
      return (live?.metadata?.managedFields ?? []).map((f: any) => f.manager);
    };
    const components = objects.filter(
      (o) =>
        o?.kind &&
        ['Deployment', 'CustomResourceDefinition', 'Service'].includes(o.kind) &&
        ['source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller'].includes(
          o.metadata.labels?.['app.kubernetes.io/component'],
        ),
    );
    await waitFor(
      'the operator to hand the components over',
      async () => {
        for (const o of components) if ((await owners(o)).includes('flux-bootstrap-operator')) return false;
        return true;
      },
      60_000,
    );
    assert.ok(
      (await owners(components.find((o) => o.kind === 'Deployment'))).includes('kustomize-controller'),
      "kustomize-controller owns the Deployment's fields",
    );
  },
);

test('a manifest committed under the cluster path appears in the target cluster', async () => {
  const dir = clone(url);
  const cmName = `hello-${Date.now()}`;
  writeFile(
    join(dir, `clusters/${name}/hello.yaml`),
    `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${cmName}\n  namespace: default\ndata:\n  from: git\n`,
  );
  git(['add', '.'], dir);
  git(['-c', 'user.name=user', '-c', 'user.email=user@example.com', 'commit', '-q', '-m', 'Add hello'], dir);
  git(['push', '-q', 'origin', 'HEAD:main'], dir);
  const cm = await waitFor(
    `ConfigMap default/${cmName} in the target`,
    () => target().get<any>('v1', 'ConfigMap', 'default', cmName),
    120_000,
  );
  assert.equal(cm.data.from, 'git');
});

test('bumping spec.flux.version upgrades Flux through git: one new commit, Ready at its revision', async () => {
  const before = await getCB(suite.ns, name);
  await applyCB(suite.ns, name, {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: { url, secretRef: { name: 'git-push' } },
    flux: { version: 'v2.9.4' },
    sync: { interval: '10s' },
  });
  const cb = await waitFor(
    'Ready at the upgrade commit',
    async () => {
      const cb = await getCB(suite.ns, name);
      const ready = condition(cb, 'Ready');
      return ready?.status === 'True' &&
        cb.status!.lastPushedCommit !== before.status!.lastPushedCommit &&
        cb.status!.fluxVersion === 'v2.9.4'
        ? cb
        : false;
    },
    180_000,
  );
  const dir = clone(url);
  assert.equal(
    git(['log', '-1', '--format=%s', cb.status!.lastPushedCommit!], dir),
    `Bootstrap Flux v2.9.4 on ${suite.ns}/${name}`,
  );
  assert.deepEqual(git(['show', '--name-only', '--format=', cb.status!.lastPushedCommit!], dir).split('\n'), [
    `clusters/${name}/flux-system/gotk-components.yaml`,
  ]);
  const ks = await target().get<any>('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-system', 'flux-system');
  assert.equal(ks.status.lastAppliedRevision, cb.status!.lastPushedRevision);
  const source = await target().get<any>('apps/v1', 'Deployment', 'flux-system', 'source-controller');
  assert.equal(source.metadata.labels['app.kubernetes.io/version'], 'v2.9.4', 'Flux applied its own new manifests');
});

test("a controller deleted behind Flux's back is put back on request (reconcile.fluxcd.io/requestedAt)", async () => {
  const t = target();
  await t.delete('apps/v1', 'Deployment', 'flux-system', 'kustomize-controller');
  const requestedAt = new Date().toISOString();
  await mgmt().mergePatch('fluxbootstrap.dev/v1alpha1', 'ClusterBootstrap', suite.ns, name, {
    metadata: { annotations: { 'reconcile.fluxcd.io/requestedAt': requestedAt } },
  });
  await waitFor(
    'the kustomize-controller Deployment to be back',
    () => t.get<any>('apps/v1', 'Deployment', 'flux-system', 'kustomize-controller'),
    60_000,
  );
  const cb = await waitFor('the request to be handled', async () =>
    (await getCB(suite.ns, name)).status?.lastHandledReconcileAt === requestedAt ? getCB(suite.ns, name) : false,
  );
  assert.equal(condition(cb, 'Applied')!.status, 'True');
});

test('no commit of the repository holds private key material, and no log line does', async () => {
  const dir = clone(url);
  const history = git(['log', '-p', '--all'], dir);
  assert.ok(!/PRIVATE KEY/.test(history));
  assert.ok(suite.operator.logs.length > 0);
  let aboutIt = 0;
  for (const line of suite.operator.logs) {
    assert.ok(!line.includes('PRIVATE KEY'), 'a log line holds key material');
    const entry = JSON.parse(line);
    assert.ok(entry.level && entry.time && entry.msg !== undefined, `not a pino line: ${line}`);
    if (line.includes(`"${name}"`) || line.includes(`${suite.ns}/${name}`)) {
      aboutIt++;
      assert.equal(entry.namespace, suite.ns, `a line about the resource without its namespace: ${line}`);
      assert.equal(entry.name, name, `a line about the resource without its name: ${line}`);
    }
  }
  assert.ok(aboutIt > 3, 'the reconciles of the resource are logged');
});

test('Events on the ClusterBootstrap tell the story: waiting for the deploy key, the push, Ready', async () => {
  const cb = await getCB(suite.ns, name);
  const events = await mgmt().list<any>('v1', 'Event', suite.ns);
  const mine = events.filter((e) => e.involvedObject.uid === cb.metadata.uid).map((e) => `${e.type} ${e.reason}`);
  assert.ok(mine.includes('Warning DeployKeyNotAuthorized'), mine.join(', '));
  assert.ok(mine.includes('Normal Pushed'), mine.join(', '));
  assert.ok(mine.includes('Normal Succeeded'), mine.join(', '));
});

test('the management cluster keeps the identity in a Secret owned by the ClusterBootstrap', async () => {
  const cb = await getCB(suite.ns, name);
  const secret = await mgmt().get('v1', 'Secret', suite.ns, `${name}-flux-identity`);
  assert.equal(secret.metadata.ownerReferences[0].uid, cb.metadata.uid);
  assert.equal(cb.status!.identity!.secretName, `${name}-flux-identity`);
});
