/**
 * Hands-off, against a real git host API (the lab's Gitea): a ClusterBootstrap with `provider: gitea` goes
 * from apply to Ready with no person acting — its key registered read-only through the API; the key is
 * rotated without a moment where the target holds a key Gitea refuses, also across an operator killed
 * mid-rotation; and Uninstall removes the deploy key from Gitea.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { API_VERSION, KIND, ROTATE_IDENTITY_AT } from '../../src/api/types.ts';
import { fingerprint } from '../../src/ssh/keys.ts';
import { createGiteaRepo, fluxStart, fluxStop, giteaRequest, gitSshCommand } from '../lab/lab.ts';
import {
  applyCB,
  E2E_LAB_DIR,
  getCB,
  lab,
  mgmt,
  operatorSuite,
  secret,
  startOperator,
  target,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
} from './harness.ts';

const name = 'handsoff';
const fluxNs = 'flux-handsoff';
let url: string;
let repoName: string;
const scratch = mkdtempSync(join(tmpdir(), 'e2e-handsoff-'));

const suite = operatorSuite('e2e-handsoff', async (ns) => {
  repoName = `handsoff-${Math.random().toString(36).slice(2, 7)}`;
  url = await createGiteaRepo(repoName, { dir: E2E_LAB_DIR });
  await secret(ns, 'gitea-token', { token: lab().LAB_GITEA_TOKEN! });
  await targetKubeconfigSecret(ns, name);
});
after(async () => {
  await fluxStop({ dir: E2E_LAB_DIR });
  rmSync(scratch, { recursive: true, force: true });
});

/** deployKeys lists the deploy keys of the repository on Gitea. */
async function deployKeys(): Promise<{ title: string; key: string; read_only: boolean }[]> {
  const r = await giteaRequest('GET', `/repos/${lab().LAB_GITEA_OWNER}/${repoName}/keys`, undefined, {
    dir: E2E_LAB_DIR,
  });
  assert.equal(r.status, 200);
  return r.json;
}

/** giteaAccepts is true when Gitea lets the key in the target's Flux Secret read the repository. */
async function giteaAccepts(): Promise<boolean> {
  const s = await target().get<any>('v1', 'Secret', fluxNs, 'flux-system');
  if (!s) return false;
  const key = join(scratch, `key-${Date.now()}`);
  writeFileSync(key, Buffer.from(s.data.identity, 'base64'), { mode: 0o600 });
  try {
    await promisify(execFile)('git', ['ls-remote', url], {
      env: { PATH: process.env.PATH, HOME: scratch, GIT_SSH_COMMAND: gitSshCommand(key, lab().LAB_GITEA_KNOWN_HOSTS!) },
      timeout: 10_000,
    });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(key, { force: true });
  }
}

/**
 * watchTargetKey checks every second, until stopped, that Gitea accepts the target's key; it returns the refusals seen.
 */
function watchTargetKey(): { stop: () => Promise<{ checks: number; refused: number }> } {
  let running = true;
  let checks = 0;
  let refused = 0;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      checks++;
      if (!(await giteaAccepts())) refused++;
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { checks, refused };
    },
  };
}

async function rotate(): Promise<string> {
  const at = new Date().toISOString();
  await mgmt().mergePatch(API_VERSION, KIND, suite.ns, name, {
    metadata: { annotations: { [ROTATE_IDENTITY_AT]: at } },
  });
  return at;
}

test(
  'with provider gitea, a ClusterBootstrap goes from apply to Ready with no person acting, its key registered ' +
    'read-only',
  async () => {
    await applyCB(suite.ns, name, {
      target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
      git: {
        url,
        secretRef: { name: 'git-push' },
        provider: { type: 'gitea', url: lab().LAB_GITEA_API, secretRef: { name: 'gitea-token' } },
      },
      flux: { namespace: fluxNs },
      deletionPolicy: 'Uninstall',
    });
    // Nobody registers a key here: the operator does, through Gitea's API, and goes on to apply Flux.
    await waitCondition(suite.ns, name, 'Applied', 'True', undefined, 120_000);
    await fluxStart({ dir: E2E_LAB_DIR });
    const cb = await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 240_000);
    const keys = await deployKeys();
    assert.equal(keys.length, 1);
    assert.equal(keys[0].title, `flux-${suite.ns}-${name}`);
    assert.equal(keys[0].read_only, true);
    assert.equal(fingerprint(keys[0].key), cb.status!.identity!.fingerprint);
    assert.ok(await giteaAccepts());
  },
);

test(
  "a rotation asked for by annotation switches Flux to a new key with no moment where Gitea refuses the target's " +
    'key',
  async () => {
    const before = (await getCB(suite.ns, name)).status!.identity!.fingerprint;
    const watch = watchTargetKey();
    const at = await rotate();
    const cb = await waitFor(
      'the rotation to finish',
      async () => {
        const c = await getCB(suite.ns, name);
        return c.status?.lastHandledRotateAt === at ? c : false;
      },
      180_000,
    );
    const { checks, refused } = await watch.stop();
    assert.equal(refused, 0, `every one of ${checks} checks found a key Gitea accepts`);
    assert.notEqual(cb.status!.identity!.fingerprint, before);
    const keys = await deployKeys();
    assert.deepEqual(
      keys.map((k) => fingerprint(k.key)),
      [cb.status!.identity!.fingerprint],
      'the old key is gone from Gitea',
    );
    await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 60_000);
  },
);

test('an operator killed mid-rotation resumes it on restart and ends with exactly one new key', async () => {
  const before = (await getCB(suite.ns, name)).status!.identity!.fingerprint;
  const at = await rotate();
  const next = await waitFor(
    'the next key to be made',
    async () => (await getCB(suite.ns, name)).status?.identity?.rotatingTo,
    60_000,
  );
  await suite.operator.kill();
  suite.operator = await startOperator({ namespaces: [suite.ns] });
  const cb = await waitFor(
    'the rotation to finish',
    async () => {
      const c = await getCB(suite.ns, name);
      return c.status?.lastHandledRotateAt === at ? c : false;
    },
    180_000,
  );
  assert.equal(cb.status!.identity!.fingerprint, next, 'the key made before the kill is the one Flux reads with');
  assert.notEqual(next, before);
  assert.deepEqual(
    (await deployKeys()).map((k) => fingerprint(k.key)),
    [next],
    'exactly one key on Gitea: no second new key',
  );
  assert.ok(await giteaAccepts());
});

test('deleting the ClusterBootstrap with Uninstall removes its deploy key from Gitea', async () => {
  await mgmt().delete(API_VERSION, KIND, suite.ns, name);
  await waitFor(
    'the ClusterBootstrap to be gone',
    async () => !(await mgmt().get(API_VERSION, KIND, suite.ns, name)),
    120_000,
  );
  assert.deepEqual(await deployKeys(), []);
});
