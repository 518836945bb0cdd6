/**
 * Pull-request mode against a real Gitea (gitea.ts): a protected main refuses a direct push, and the Gitea
 * PullRequestProvider (src/providers/gitea-pulls.ts) opens, finds, updates and auto-merges pull requests from pushed
 * head branches while the lab's second user approves and merges them as a reviewer would. One lab with Gitea for the
 * whole file, in its own temp dir. Needs root and the lab binaries plus Gitea (built on first use: minutes).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  GITEA_OWNER,
  GITEA_REVIEWER,
  approvePull,
  closePull,
  createGiteaRepo,
  giteaRequest,
  giteaReviewer,
  gitSshCommand,
  labDown,
  labUp,
  listPulls,
  mergePull,
  protectBranch,
  type LabEnv,
} from './lab.ts';
import { pullsFor, type PullRequestProvider } from '../../src/providers/index.ts';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-gitea-pulls-'));
fs.chmodSync(work, 0o755); // the lab's git user must traverse it
const dir = path.join(work, 'lab');
const log = process.env.LAB_TEST_VERBOSE ? (l: string) => console.error(`[lab] ${l}`) : undefined;
const REPO = 'pulls';
const HEAD = 'flux-bootstrap/flux-system-prod';
let env: LabEnv;
let url: string;
let src: string;
let pulls: PullRequestProvider;

function gitEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('GIT_') && !k.startsWith('LAB_') && k !== 'KUBECONFIG') e[k] = v;
  return {
    ...e,
    GIT_AUTHOR_NAME: 'lab',
    GIT_AUTHOR_EMAIL: 'lab@example.com',
    GIT_COMMITTER_NAME: 'lab',
    GIT_COMMITTER_EMAIL: 'lab@example.com',
    GIT_TERMINAL_PROMPT: '0',
    GIT_SSH_COMMAND: gitSshCommand(env.LAB_GIT_WRITER_KEY, env.LAB_GITEA_KNOWN_HOSTS!),
  };
}

/** git runs git in the work tree; resolves to its exit code and output (never throws on a failed command). */
async function git(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileP('git', args, { cwd: src, env: gitEnv(), timeout: 120_000 });
    return { code: 0, out: `${stdout}${stderr}` };
  } catch (err: any) {
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

async function gitOk(...args: string[]): Promise<string> {
  const r = await git(...args);
  assert.equal(r.code, 0, `git ${args.join(' ')} failed:\n${r.out}`);
  return r.out.trim();
}

/** pushBranch commits a file on a new branch from main and pushes the branch; returns the commit. */
async function pushBranch(branch: string, file: string): Promise<string> {
  await gitOk('checkout', '-q', '-B', branch, 'main');
  fs.writeFileSync(path.join(src, file), `${branch}\n`);
  await gitOk('add', '.');
  await gitOk('commit', '-q', '-m', `add ${file}`);
  await gitOk('push', '-q', url, `HEAD:refs/heads/${branch}`);
  const commit = await gitOk('rev-parse', 'HEAD');
  await pushSeen(branch, commit);
  return commit;
}

/**
 * pushSeen waits until Gitea's API shows `commit` on `branch`: Gitea processes a push in a queue of its own, and
 * hides an empty repository's pull requests until then.
 */
async function pushSeen(branch: string, commit: string): Promise<void> {
  let seen: unknown;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(100)) {
    const r = await giteaRequest(
      'GET',
      `/repos/${GITEA_OWNER}/${REPO}/branches/${encodeURIComponent(branch)}`,
      undefined,
      {
        dir,
      },
    );
    seen = r.json?.commit?.id ?? `HTTP ${r.status}`;
    if (seen === commit) return;
  }
  assert.fail(`Gitea shows ${String(seen)} on ${branch}, not the pushed ${commit}`);
}

before(
  async () => {
    env = await labUp({ dir, gitea: true, log });
    url = await createGiteaRepo(REPO, { dir });
    src = path.join(work, 'src');
    await execFileP('git', ['init', '-q', '-b', 'main', src]);
    fs.writeFileSync(path.join(src, 'README.md'), 'fleet\n');
    await gitOk('add', '.');
    await gitOk('commit', '-q', '-m', 'first');
    await gitOk('push', '-q', url, 'main');
    await pushSeen('main', await gitOk('rev-parse', 'HEAD'));
    pulls = pullsFor({ type: 'gitea', apiUrl: env.LAB_GITEA_API, token: env.LAB_GITEA_TOKEN!, repoUrl: url });
  },
  { timeout: 3_600_000 },
);

after(async () => {
  await labDown({ dir }).catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
});

test('a protected main refuses a direct push, even from the repository owner', async () => {
  await protectBranch(REPO, 'main', { requiredApprovals: 1, pushWhitelist: [] }, { dir });
  const before = await gitOk('ls-remote', url, 'refs/heads/main');
  await gitOk('checkout', '-q', 'main');
  fs.writeFileSync(path.join(src, 'direct.txt'), 'no\n');
  await gitOk('add', '.');
  await gitOk('commit', '-q', '-m', 'straight to main');
  const push = await git('push', '-q', url, 'main');
  assert.notEqual(push.code, 0, 'the push is refused');
  assert.match(push.out, /Not allowed to push to protected branch main/, push.out);
  assert.equal(await gitOk('ls-remote', url, 'refs/heads/main'), before, 'main is unchanged');
  await gitOk('reset', '-q', '--hard', 'HEAD~1');
});

test('the Gitea provider opens a pull request from a pushed head branch, finds it, updates it; a review merges it', async () => {
  const head = await pushBranch(HEAD, 'flux-system.yaml');
  assert.equal(await pulls.find(HEAD, 'main'), undefined, 'none yet');
  await giteaRequest('POST', `/repos/${GITEA_OWNER}/${REPO}/labels`, { name: 'flux', color: '#326ce5' }, { dir });
  await giteaReviewer(REPO, { dir });

  const opened = await pulls.open({
    head: HEAD,
    base: 'main',
    title: 'Bootstrap Flux on flux-system/prod',
    body: 'Flux v2 components and sync for flux-system/prod.',
    labels: ['flux', 'not-a-label'],
    reviewers: [GITEA_REVIEWER],
  });
  assert.deepEqual(opened.warnings, [`Gitea has no label "not-a-label" in ${GITEA_OWNER}/${REPO}: create it there`]);
  assert.equal(opened.state, 'open');
  assert.equal(opened.headSha, head);
  assert.equal(opened.url, `${env.LAB_GITEA_URL}/${GITEA_OWNER}/${REPO}/pulls/${opened.number}`);
  const seen = await giteaRequest('GET', `/repos/${GITEA_OWNER}/${REPO}/pulls/${opened.number}`, undefined, { dir });
  assert.deepEqual(
    seen.json.labels.map((l: any) => l.name),
    ['flux'],
  );
  assert.deepEqual(
    seen.json.requested_reviewers.map((u: any) => u.login),
    [GITEA_REVIEWER],
  );

  const { warnings: _, ...pr } = opened;
  assert.deepEqual(await pulls.find(HEAD, 'main'), pr, 'find returns the open one');
  const conflict = await pulls.open({ head: HEAD, base: 'main', title: 'again', body: '' }).catch((e) => e);
  assert.equal(conflict.kind, 'conflict', conflict.message);

  const updated = await pulls.update(opened.number, { title: 'Bootstrap Flux v2 on flux-system/prod' });
  assert.equal(updated.title, 'Bootstrap Flux v2 on flux-system/prod');
  assert.equal((await pulls.find(HEAD, 'main'))?.title, 'Bootstrap Flux v2 on flux-system/prod');

  // main needs an approval: merging without one is refused
  const early = await giteaRequest(
    'POST',
    `/repos/${GITEA_OWNER}/${REPO}/pulls/${opened.number}/merge`,
    { Do: 'merge' },
    { dir },
  );
  assert.equal(early.status, 405, early.text);

  await mergePull(REPO, opened.number, 'merge', { dir });
  const merged = await pulls.find(HEAD, 'main');
  assert.equal(merged?.number, opened.number);
  assert.equal(merged?.state, 'merged');
  const main = (await gitOk('ls-remote', url, 'refs/heads/main')).split(/\s/)[0];
  await gitOk('fetch', '-q', url, 'main');
  assert.equal(await gitOk('rev-parse', 'FETCH_HEAD'), main);
  assert.equal((await git('merge-base', '--is-ancestor', head, main)).code, 0, 'main has the head branch');
  await gitOk('checkout', '-q', '-B', 'main', 'FETCH_HEAD');
});

test('a pull request closed unmerged is found closed, and a newer one from the same head before it', async () => {
  const other = 'flux-bootstrap/flux-system-staging';
  await pushBranch(other, 'staging.yaml');
  const first = await pulls.open({ head: other, base: 'main', title: 'Bootstrap staging', body: '' });
  await closePull(REPO, first.number, { dir });
  const closed = await pulls.find(other, 'main');
  assert.equal(closed?.number, first.number);
  assert.equal(closed?.state, 'closed');
  assert.equal((await pulls.find(HEAD, 'main'))?.state, 'merged', 'the other head branch is still merged');

  const second = await pulls.open({ head: other, base: 'main', title: 'Bootstrap staging again', body: '' });
  assert.equal((await pulls.find(other, 'main'))?.number, second.number, 'the open one comes first');
  await closePull(REPO, second.number, { dir });
  assert.equal((await pulls.find(other, 'main'))?.number, second.number, 'then the most recently closed');

  const listed = await listPulls(REPO, { dir });
  assert.deepEqual(
    listed.map((p) => [p.number, p.head, p.state, p.merged]),
    [
      [second.number, other, 'closed', false],
      [first.number, other, 'closed', false],
      [listed.at(-1)!.number, HEAD, 'closed', true],
    ],
  );
});

test('autoMerge schedules the merge, and Gitea merges once the required approval comes', async () => {
  const branch = 'flux-bootstrap/flux-system-dev';
  const head = await pushBranch(branch, 'dev.yaml');
  const pr = await pulls.open({ head: branch, base: 'main', title: 'Bootstrap dev', body: '' });
  await pulls.autoMerge!(pr.number);
  await pulls.autoMerge!(pr.number); // asking again is not an error
  assert.equal((await pulls.find(branch, 'main'))?.state, 'open', 'waiting for the approval');
  await approvePull(REPO, pr.number, { dir });
  let state: string | undefined;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(250)) {
    state = (await pulls.find(branch, 'main'))?.state;
    if (state === 'merged') break;
  }
  assert.equal(state, 'merged', 'Gitea merged it after the approval');
  const main = (await gitOk('ls-remote', url, 'refs/heads/main')).split(/\s/)[0];
  await gitOk('fetch', '-q', url, 'main');
  assert.equal((await git('merge-base', '--is-ancestor', head, main)).code, 0, 'main has the head branch');
});
