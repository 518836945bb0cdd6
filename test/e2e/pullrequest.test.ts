/**
 * Protected branches, against the lab's real Gitea: with main protected (a review required, nobody may push), a
 * ClusterBootstrap with `pullRequest.when: Protected` opens one pull request, waits in it, and becomes Ready once a
 * reviewer merges it through Gitea's API, with no other action; a version bump opens a second one; a pull request
 * closed unmerged is reported and not reopened.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  closePull,
  createGiteaRepo,
  fluxStart,
  fluxStop,
  gitSshCommand,
  listPulls,
  mergePull,
  protectBranch,
} from '../lab/lab.ts';
import {
  applyCB,
  E2E_LAB_DIR,
  getCB,
  lab,
  mgmt,
  operatorSuite,
  secret,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
} from './harness.ts';

const name = 'guarded';
const fluxNs = 'flux-guarded';
let repoName: string;
const scratch = mkdtempSync(join(tmpdir(), 'e2e-pr-'));

const suite = operatorSuite('e2e-pr', async (ns) => {
  repoName = `guarded-${Math.random().toString(36).slice(2, 7)}`;
  const url = await createGiteaRepo(repoName, { dir: E2E_LAB_DIR });
  // A first commit on main, then main protected: one approval, no pushes.
  const env = {
    PATH: process.env.PATH,
    HOME: scratch,
    GIT_SSH_COMMAND: gitSshCommand(lab().LAB_GIT_WRITER_KEY, lab().LAB_GITEA_KNOWN_HOSTS!),
  };
  const work = join(scratch, 'seed');
  const git = (...args: string[]) => execFileSync('git', args, { cwd: work, env, stdio: 'pipe' });
  execFileSync('git', ['init', '-q', '-b', 'main', work]);
  writeFileSync(join(work, 'README.md'), '# fleet\n');
  git('add', '-A');
  git('-c', 'user.name=seed', '-c', 'user.email=seed@example.com', 'commit', '-q', '-m', 'seed');
  git('push', '-q', url, 'HEAD:main');
  await protectBranch(repoName, 'main', { requiredApprovals: 1, pushWhitelist: [] }, { dir: E2E_LAB_DIR });
  await secret(ns, 'gitea-token', { token: lab().LAB_GITEA_TOKEN! });
  await targetKubeconfigSecret(ns, name);
  await applyCB(ns, name, {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: {
      url,
      secretRef: { name: 'git-push' },
      provider: { type: 'gitea', url: lab().LAB_GITEA_API, secretRef: { name: 'gitea-token' } },
      pullRequest: { enabled: true, when: 'Protected' },
    },
    flux: { namespace: fluxNs, components: ['source-controller', 'kustomize-controller'], version: 'v2.9.4' },
  } as any);
});
after(async () => {
  await fluxStop({ dir: E2E_LAB_DIR });
  rmSync(scratch, { recursive: true, force: true });
});

/** waitForPull waits until the ClusterBootstrap waits in pull request number `n`, and returns how long that took. */
async function waitForPull(n: number): Promise<number> {
  const started = Date.now();
  const cb = await waitFor(
    `${name} to wait in pull request #${n}`,
    async () => {
      const cb = await getCB(suite.ns, name);
      return cb.status?.pullRequest?.number === n && cb.status.pullRequest.state === 'open' ? cb : false;
    },
    120_000,
  );
  const committed = cb.status!.conditions!.find((c) => c.type === 'Committed')!;
  assert.equal(committed.status, 'False');
  assert.equal(committed.reason, 'PullRequestOpen');
  assert.ok(committed.message.includes(cb.status!.pullRequest!.url), committed.message);
  return Date.now() - started;
}

async function setVersion(version: string): Promise<void> {
  await mgmt().mergePatch(API_VERSION, KIND, suite.ns, name, { spec: { flux: { version } } });
}

test('with main protected, one pull request is opened; merged by a reviewer, the ClusterBootstrap becomes Ready', async () => {
  const ms = await waitForPull(1);
  process.stderr.write(`\npull request #1 open ${(ms / 1000).toFixed(1)} s after the ClusterBootstrap was applied\n`);
  const pulls = await listPulls(repoName, { dir: E2E_LAB_DIR });
  assert.equal(pulls.length, 1);
  assert.equal(pulls[0].state, 'open');
  assert.equal(pulls[0].head, `flux-bootstrap/${suite.ns}-${name}`);
  await mergePull(repoName, 1, 'squash', { dir: E2E_LAB_DIR });
  await fluxStart({ dir: E2E_LAB_DIR });
  const cb = await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 240_000);
  assert.equal(cb.status!.pullRequest, undefined);
  assert.equal(cb.status!.fluxVersion, 'v2.9.4');
  assert.equal((await listPulls(repoName, { dir: E2E_LAB_DIR })).length, 1, 'no second pull request');
});

test('a version bump opens a second pull request, and the cluster follows once it is merged', async () => {
  await setVersion('v2.9.3');
  await waitForPull(2);
  await mergePull(repoName, 2, 'merge', { dir: E2E_LAB_DIR });
  await waitFor(
    'Flux v2.9.3 Ready',
    async () => {
      const cb = await getCB(suite.ns, name);
      return (
        cb.status?.fluxVersion === 'v2.9.3' &&
        cb.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
      );
    },
    240_000,
  );
});

test('a pull request closed unmerged is reported and not reopened', async () => {
  await setVersion('v2.9.4');
  await waitForPull(3);
  await closePull(repoName, 3, { dir: E2E_LAB_DIR });
  // The next look (PullRequestOpen looks again every 30 s) finds it closed: Stalled, and nothing new on Gitea.
  await waitCondition(suite.ns, name, 'Committed', 'False', 'PullRequestClosed', 120_000);
  const cb = await waitCondition(suite.ns, name, 'Stalled', 'True');
  assert.match(cb.status!.conditions!.find((c) => c.type === 'Committed')!.message, /closed without merging/);
  const pulls = await listPulls(repoName, { dir: E2E_LAB_DIR });
  assert.equal(pulls.length, 3);
  assert.equal(pulls.filter((p) => p.state === 'open').length, 0);
});
