/**
 * SOPS, end to end: a ClusterBootstrap with spec.sops commits `.sops.yaml`; a Secret encrypted with the real sops
 * CLI (built from its Go module) using only that file is decrypted and applied by the lab's kustomize-controller;
 * a file encrypted for another cluster's key fails there and Flux says so; a rotation keeps files encrypted for the
 * old key decryptable until they are re-encrypted, then the target holds one key.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, KIND, ROTATE_SOPS_AT } from '../../src/api/types.ts';
import { decodeSecret } from '../../src/kube/objects.ts';
import { generateAgeKey } from '../../src/sops/keys.ts';
import { ensureSops } from '../lab/build.ts';
import { fluxStart, fluxStop } from '../lab/lab.ts';
import {
  applyCB,
  authorizeWhenPublished,
  clone,
  E2E_LAB_DIR,
  getCB,
  git,
  mgmt,
  operatorSuite,
  repo,
  target,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
  reconcileNow,
} from './harness.ts';

const name = 'sopsy';
const fluxNs = 'flux-sops';
const appNs = 'sops-apps';
let sops: string;
let work: string;
const scratch = mkdtempSync(join(tmpdir(), 'e2e-sops-'));

before(async () => {
  sops = await ensureSops();
});

const suite = operatorSuite('e2e-sops', async (ns) => {
  const url = await repo('sops');
  await targetKubeconfigSecret(ns, name);
  await target().apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: appNs } }, { fieldManager: 'e2e' });
  await applyCB(ns, name, {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: { url, secretRef: { name: 'git-push' } },
    flux: { namespace: fluxNs, components: ['source-controller', 'kustomize-controller'] },
    sync: { interval: '10s', kustomizationInterval: '10s' },
    sops: { enabled: true },
  } as any);
  await authorizeWhenPublished(ns, name);
  await waitCondition(ns, name, 'Applied', 'True', undefined, 120_000);
  await fluxStart({ dir: E2E_LAB_DIR });
  await waitCondition(ns, name, 'Ready', 'True', undefined, 240_000);
  work = clone(url);
});
after(async () => {
  await fluxStop({ dir: E2E_LAB_DIR });
  rmSync(scratch, { recursive: true, force: true });
});

const folder = () => join(work, 'clusters', name);

/** runSops runs the sops CLI in the cluster's folder, as a person does: it finds `.sops.yaml` there. */
function runSops(args: string[], keyFile?: string): string {
  const env = { PATH: process.env.PATH, HOME: scratch, ...(keyFile && { SOPS_AGE_KEY_FILE: keyFile }) };
  return execFileSync(sops, args, { cwd: folder(), env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** secretManifest writes a Secret manifest of the apps namespace into the cluster's folder. */
function secretManifest(file: string, secretName: string, value: string): void {
  writeFileSync(
    join(folder(), file),
    `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${secretName}\n  namespace: ${appNs}\n` +
      `stringData:\n  password: ${value}\n`,
  );
}

function push(message: string): void {
  git(['add', '-A'], work);
  git(['-c', 'user.name=e2e', '-c', 'user.email=e2e@example.com', 'commit', '-q', '-m', message], work);
  git(['push', '-q', 'origin', 'HEAD:main'], work);
}

/** pull brings the operator's commits into the work tree. */
function pull(): void {
  git(['pull', '-q', '--rebase', 'origin', 'main'], work);
}

/** clearValue waits for a Secret of the apps namespace to be applied with that value. */
async function clearValue(secretName: string, value: string): Promise<void> {
  await waitFor(
    `Secret ${appNs}/${secretName} applied by Flux with its cleartext value`,
    async () => {
      const s = await target().get('v1', 'Secret', appNs, secretName);
      return s && decodeSecret(s).password === value;
    },
    120_000,
  );
}

/** ageKeys reads the age keys the target's sops-age Secret holds. */
async function ageKeys(): Promise<Record<string, string>> {
  return decodeSecret(await target().get('v1', 'Secret', fluxNs, 'sops-age'));
}

test('a Secret encrypted by sops with only the committed .sops.yaml is decrypted and applied by Flux', async () => {
  const cb = await getCB(suite.ns, name);
  const recipient = cb.status!.sops!.recipient;
  assert.match(recipient, /^age1[0-9a-z]{58}$/);
  assert.match(readFileSync(join(folder(), '.sops.yaml'), 'utf8'), new RegExp(recipient));
  assert.doesNotMatch(JSON.stringify(cb.status), /AGE-SECRET-KEY/);
  secretManifest('db.yaml', 'db', 'hunter2');
  runSops(['--encrypt', '--in-place', 'db.yaml']);
  const encrypted = readFileSync(join(folder(), 'db.yaml'), 'utf8');
  assert.doesNotMatch(encrypted, /hunter2/);
  assert.match(encrypted, new RegExp(`recipient: ${recipient}`));
  push('an encrypted Secret');
  await clearValue('db', 'hunter2');
});

test("a file encrypted for another cluster's key fails to decrypt here, and Flux's Kustomization says so", async () => {
  const other = await generateAgeKey();
  secretManifest('foreign.yaml', 'foreign', 'not-for-you');
  runSops(['--encrypt', '--age', other.recipient, '--in-place', 'foreign.yaml']);
  push("a Secret for another cluster's key");
  const ks = await waitFor(
    'the Kustomization to report the file it cannot decrypt',
    async () => {
      const k = await target().get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', fluxNs, fluxNs);
      const ready = k?.status?.conditions?.find((c: any) => c.type === 'Ready');
      return ready?.status === 'False' && /decrypt/i.test(ready.message) ? ready : false;
    },
    120_000,
  );
  assert.match(ks.message, /foreign/);
  assert.equal(await target().get('v1', 'Secret', appNs, 'foreign'), undefined);
  git(['rm', '-q', join(folder(), 'foreign.yaml')], work);
  push('remove the foreign Secret');
  await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 180_000);
});

test(
  'a rotation keeps files encrypted for the old key decryptable until they are re-encrypted; then the target ' +
    'holds one key',
  async () => {
    const old = (await getCB(suite.ns, name)).status!.sops!.recipient;
    const oldKey = join(scratch, 'old.agekey');
    writeFileSync(oldKey, `${(await ageKeys())['age.agekey']}`, { mode: 0o600 });
    const at = new Date().toISOString();
    await mgmt().mergePatch(API_VERSION, KIND, suite.ns, name, { metadata: { annotations: { [ROTATE_SOPS_AT]: at } } });
    const rotating = await waitFor(
      'the rotation to begin, with db.yaml still encrypted for the old key',
      async () => {
        const cb = await getCB(suite.ns, name);
        return cb.status?.sops?.previousRecipient === old && cb.status.sops.pendingFiles?.length ? cb : false;
      },
      120_000,
    );
    const next = rotating.status!.sops!.recipient;
    assert.notEqual(next, old);
    assert.deepEqual(rotating.status!.sops!.pendingFiles, [`clusters/${name}/db.yaml`]);
    assert.deepEqual(Object.keys(await ageKeys()).sort(), ['age.agekey', 'previous.agekey']);
    // A file still encrypted for the old key is decrypted while the rotation is under way.
    pull();
    secretManifest('late.yaml', 'late', 'still-old');
    runSops(['--encrypt', '--age', old, '--in-place', 'late.yaml']);
    push('a Secret encrypted for the old key during the rotation');
    await clearValue('late', 'still-old');
    // Re-encrypted for the new key with `sops updatekeys`, as the README says; the old key then goes.
    for (const f of ['db.yaml', 'late.yaml']) runSops(['updatekeys', '--yes', f], oldKey);
    assert.doesNotMatch(readFileSync(join(folder(), 'db.yaml'), 'utf8'), new RegExp(old));
    push('re-encrypt for the new key');
    await reconcileNow(suite.ns, name);
    const done = await waitFor(
      'the rotation to finish',
      async () => {
        const cb = await getCB(suite.ns, name);
        return cb.status?.lastHandledSopsRotateAt === at ? cb : false;
      },
      120_000,
    );
    assert.equal(done.status!.sops!.previousRecipient, undefined);
    assert.deepEqual(Object.keys(await ageKeys()), ['age.agekey']);
    await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 180_000);
    await clearValue('db', 'hunter2');
    await clearValue('late', 'still-old');
  },
);
