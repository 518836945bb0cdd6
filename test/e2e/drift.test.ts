/**
 * Drift: once Flux is bootstrapped, what the operator keeps — the Flux Secret, the namespace and the sync
 * objects in the target, the flux-system files in the repository, the identity Secret in the management
 * cluster — is put back when someone deletes or changes it, with a DriftRepaired Event that names it. A
 * user's own patch in kustomization.yaml is kept; Flux's components, once applied, are only looked at until
 * something is missing. Changed push credentials are picked up without a resync.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  applyCB,
  authorizeWhenPublished,
  clone,
  git,
  mgmt,
  operatorSuite,
  repo,
  secret,
  target,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
  writeFile,
  reconcileNow,
} from './harness.ts';
import { readLabEnv } from '../lab/lab.ts';
import { E2E_LAB_DIR } from './harness.ts';

const name = 'drifty';
let url: string;
const suite = operatorSuite('e2e-drift', async (ns) => {
  url = await repo('drift');
  await targetKubeconfigSecret(ns, name);
  await applyCB(ns, name, {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: { url, secretRef: { name: 'git-push' } },
    sync: { secretName: 'flux-drift', interval: '1m' },
    flux: { namespace: 'flux-drift' },
  });
  await authorizeWhenPublished(ns, name);
  await waitCondition(ns, name, 'Applied', 'True', undefined, 120_000);
});

/** driftEvent waits for a DriftRepaired Event whose message matches. */
async function driftEvent(re: RegExp): Promise<string> {
  return waitFor(`a DriftRepaired Event matching ${re}`, async () => {
    const events = await mgmt().list<any>('v1', 'Event', suite.ns);
    return events.find((e) => e.reason === 'DriftRepaired' && e.involvedObject.name === name && re.test(e.message))
      ?.message;
  });
}

test("Flux's git Secret deleted from the target is put back, and said", async () => {
  await target().delete('v1', 'Secret', 'flux-drift', 'flux-drift');
  await reconcileNow(suite.ns, name);
  await driftEvent(/Secret flux-drift\/flux-drift \(missing\)/);
  assert.ok(await target().get('v1', 'Secret', 'flux-drift', 'flux-drift'));
});

test('a GitRepository changed and a Kustomization deleted in the target are put back, and said', async () => {
  await target().mergePatch('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-drift', 'flux-drift', {
    spec: { url: 'ssh://git@evil.example/elsewhere.git' },
  });
  await target().delete('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-drift', 'flux-drift');
  await reconcileNow(suite.ns, name);
  const message = await driftEvent(/GitRepository flux-drift\/flux-drift \(changed\)/);
  assert.match(message, /Kustomization flux-drift\/flux-drift \(missing\)/);
  assert.equal(
    (await target().get<any>('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-drift', 'flux-drift')).spec.url,
    url,
  );
  assert.ok(await target().get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-drift', 'flux-drift'));
});

test(
  'until Flux manages itself, a controller deleted is put back, and said; a pass that finds them all there ' +
    'applies none again',
  async () => {
    const applied = async () => (await mgmt().get<any>(API_VERSION, KIND, suite.ns, name)).status.appliedComponents;
    const before = await applied();
    await target().delete('apps/v1', 'Deployment', 'flux-drift', 'source-controller');
    await reconcileNow(suite.ns, name);
    await driftEvent(/Deployment flux-drift\/source-controller \(missing\)/);
    assert.ok(await target().get('apps/v1', 'Deployment', 'flux-drift', 'source-controller'));
    const repaired = await applied();
    assert.match(repaired.digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(Date.parse(repaired.appliedAt) > Date.parse(before.appliedAt), 'the components were applied again');
    await reconcileNow(suite.ns, name);
    assert.deepEqual(await applied(), repaired, 'the next pass found them all there and applied none');
  },
);

test("Flux's namespace deleted from the target comes back with what the operator keeps in it, and said", async () => {
  await target().delete('v1', 'Namespace', undefined, 'flux-drift');
  await waitFor(
    'the namespace to be gone',
    async () => !(await target().get('v1', 'Namespace', undefined, 'flux-drift')),
    90_000,
  );
  await reconcileNow(suite.ns, name);
  const message = await driftEvent(/Namespace flux-drift \(missing\)/);
  assert.match(message, /Secret flux-drift\/flux-drift \(missing\)/);
  assert.ok(await target().get('v1', 'Secret', 'flux-drift', 'flux-drift'));
  assert.ok(await target().get('apps/v1', 'Deployment', 'flux-drift', 'source-controller'));
});

test(
  "the flux-system files edited or deleted in git are restored, and said; the user's patch in kustomization.yaml " +
    'is kept',
  async () => {
    const dir = clone(url);
    const fs = join(dir, 'clusters', name, 'flux-system');
    writeFile(join(fs, 'gotk-components.yaml'), '# edited by hand\n');
    git(['rm', '-q', join(fs, 'gotk-sync.yaml')], dir);
    const patched =
      readFileSync(join(fs, 'kustomization.yaml'), 'utf8') +
      'patches:\n- patch: |\n    - op: add\n      path: /metadata/labels/team\n      value: platform\n  target:\n    ' +
      'kind: Deployment\n';
    writeFile(join(fs, 'kustomization.yaml'), patched);
    git(['add', '-A'], dir);
    git(['-c', 'user.name=someone', '-c', 'user.email=someone@example.com', 'commit', '-qm', 'hand edits'], dir);
    git(['push', '-q', 'origin', 'HEAD:main'], dir);
    await reconcileNow(suite.ns, name);
    await driftEvent(/restored clusters\/drifty\/flux-system in the repository/);
    git(['pull', '-q', 'origin', 'main'], dir);
    assert.match(readFileSync(join(fs, 'gotk-components.yaml'), 'utf8'), /kind: CustomResourceDefinition/);
    assert.ok(existsSync(join(fs, 'gotk-sync.yaml')));
    assert.match(readFileSync(join(fs, 'kustomization.yaml'), 'utf8'), /value: platform/, "the user's patch is kept");
  },
);

test('a deleted identity Secret in the management cluster gets a new key, and says which', async () => {
  const before = (await mgmt().get<any>(API_VERSION, KIND, suite.ns, name)).status.identity.fingerprint;
  await mgmt().delete('v1', 'Secret', suite.ns, `${name}-flux-identity`);
  await waitFor(
    'the Secret to be gone',
    async () => !(await mgmt().get('v1', 'Secret', suite.ns, `${name}-flux-identity`)),
  );
  await reconcileNow(suite.ns, name);
  const message = await driftEvent(/was missing: made a new key/);
  const after = (await mgmt().get<any>(API_VERSION, KIND, suite.ns, name)).status.identity.fingerprint;
  assert.notEqual(after, before);
  assert.ok(message.includes(after));
});

test('new push credentials in their Secret are picked up without waiting for the resync', async () => {
  // A push Secret with a key that cannot write makes the next reconcile fail; putting the good key back heals it.
  await secret(suite.ns, 'git-push', { identity: 'not a key' });
  await reconcileNow(suite.ns, name);
  await waitCondition(suite.ns, name, 'HostKeyTrusted', 'False', 'GitCredentialsInvalid');
  await secret(suite.ns, 'git-push', { identity: readFileSync(readLabEnv(E2E_LAB_DIR).LAB_GIT_WRITER_KEY, 'utf8') });
  await waitCondition(suite.ns, name, 'HostKeyTrusted', 'True', undefined, 45_000);
});
