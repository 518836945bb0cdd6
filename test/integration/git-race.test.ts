import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repositories, GitError, type UpdateRequest } from '../../src/git/repository.ts';
import { gitPhaseError } from '../../src/phases/errors.ts';
import { Reasons } from '../../src/api/conditions.ts';

// Another writer on the operator's branch: a push that loses a race to it is retried at once from a fetch of
// the branch, and keeps the other writer's commits; a push the host refuses whatever the branch's state is
// not retried; a race lost every time ends as raceLost, a reason of its own.

const git = (dir: string, ...args: string[]) =>
  execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

function bareRepo(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'remote-')), 'repo.git');
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', dir]);
  return dir;
}

/** seed gives a bare repository a first commit on main. */
function seed(url: string): void {
  const dir = join(mkdtempSync(join(tmpdir(), 'seed-')), 'c');
  execFileSync('git', ['clone', '-q', url, dir], { stdio: 'ignore' });
  writeFileSync(join(dir, 'README.md'), 'fleet\n');
  git(dir, 'add', 'README.md');
  git(dir, '-c', 'user.name=Seed', '-c', 'user.email=seed@example.com', 'commit', '-q', '-m', 'seed');
  git(dir, 'push', '-q', 'origin', 'HEAD:main');
}

/** writer is another person's clone of the repository: each push() commits a file of its own and pushes it. */
function writer(url: string): { push: () => string; pushed: string[] } {
  const dir = join(mkdtempSync(join(tmpdir(), 'writer-')), 'c');
  execFileSync('git', ['clone', '-q', url, dir], { stdio: 'ignore' });
  const pushed: string[] = [];
  return {
    pushed,
    push() {
      git(dir, 'pull', '-q', '--rebase', 'origin', 'main');
      writeFileSync(join(dir, `apps-${pushed.length}.yaml`), `n: ${pushed.length}\n`);
      git(dir, 'add', '.');
      git(
        dir,
        '-c',
        'user.name=Other',
        '-c',
        'user.email=other@example.com',
        'commit',
        '-q',
        '-m',
        `apps ${pushed.length}`,
      );
      git(dir, 'push', '-q', 'origin', 'HEAD:main');
      const sha = git(dir, 'rev-parse', 'HEAD');
      pushed.push(sha);
      return sha;
    },
  };
}

const repos = () => new Repositories(mkdtempSync(join(tmpdir(), 'work-')), { protocols: ['file'] });

function request(url: string, path: string, render: () => string): UpdateRequest {
  return {
    url,
    branch: 'main',
    auth: { transport: 'ssh', privateKey: 'unused for a local path', knownHosts: '' },
    author: { name: 'Flux', email: 'flux@example.com' },
    message: `write ${path}`,
    files: [{ path, render }],
  };
}

const isAncestor = (url: string, sha: string) => {
  try {
    execFileSync('git', ['-C', url, 'merge-base', '--is-ancestor', sha, 'main']);
    return true;
  } catch {
    return false;
  }
};

test('a push that loses a race to another writer is retried at once and keeps the other writer’s commits', async () => {
  const url = bareRepo();
  seed(url);
  const other = writer(url);
  // The other writer pushes between the operator's fetch and its push — while the files render — three times.
  let renders = 0;
  const started = Date.now();
  const r = await repos().update(
    request(url, 'clusters/a/flux-system/gotk-sync.yaml', () => {
      if (++renders <= 3) other.push();
      return 'a\n';
    }),
  );
  const took = Date.now() - started;
  assert.equal(r.pushed, true);
  assert.equal(r.attempts, 4, 'three lost races, then a push that won');
  assert.equal(renders, 4);
  assert.equal(git(url, 'rev-parse', 'main'), r.head);
  assert.equal(git(url, 'show', 'main:clusters/a/flux-system/gotk-sync.yaml'), 'a');
  for (const sha of other.pushed) assert.ok(isAncestor(url, sha), `the other writer's ${sha} is kept`);
  assert.equal(git(url, 'rev-list', '--count', 'main'), '5', 'seed, three of the other writer, one of the operator');
  assert.equal(
    git(url, 'log', '--format=%H', 'main', '--', 'clusters/a/flux-system/gotk-sync.yaml').split('\n').length,
    1,
    'one commit of the operator',
  );
  assert.ok(took < 10_000, `took ${took} ms`);
});

test('a race lost on the server (the branch moved while the push was received) is retried too', async () => {
  const url = bareRepo();
  seed(url);
  // The pre-receive hook plays another writer: twice, it moves main to a new commit of its own, so the
  // server cannot update the ref from the value the push expected ("cannot lock ref").
  const hook = join(url, 'hooks', 'pre-receive');
  writeFileSync(
    hook,
    `#!/bin/sh
cd "$GIT_DIR" || exit 1
n=$(cat moved 2>/dev/null || echo 0)
[ "$n" -ge 2 ] && exit 0
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
c=$(GIT_AUTHOR_NAME=Hook GIT_AUTHOR_EMAIL=hook@example.com GIT_COMMITTER_NAME=Hook GIT_COMMITTER_EMAIL=hook@example.com git commit-tree -p main -m "moved $n" "main^{tree}")
git update-ref refs/heads/main "$c"
echo "$c" >> moved-commits
echo $((n + 1)) > moved
`,
  );
  chmodSync(hook, 0o755);
  const r = await repos().update(request(url, 'clusters/b/flux-system/gotk-sync.yaml', () => 'b\n'));
  assert.equal(r.pushed, true);
  assert.equal(r.attempts, 3);
  const moved = readFileSync(join(url, 'moved-commits'), 'utf8').trim().split('\n');
  assert.equal(moved.length, 2);
  for (const sha of moved) assert.ok(isAncestor(url, sha), `the hook's ${sha} is kept`);
  assert.equal(git(url, 'show', 'main:clusters/b/flux-system/gotk-sync.yaml'), 'b');
});

test('a push refused by a protected branch is not retried and stays PushRejected', async () => {
  const url = bareRepo();
  seed(url);
  const hook = join(url, 'hooks', 'pre-receive');
  writeFileSync(hook, `#!/bin/sh\necho x >> "$GIT_DIR/tries"\necho "main is a protected branch" >&2\nexit 1\n`);
  chmodSync(hook, 0o755);
  const before = git(url, 'rev-parse', 'main');
  const err = await repos()
    .update(request(url, 'f.yaml', () => 'x\n'))
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(err instanceof GitError && err.kind === 'protected', String(err));
  assert.equal(readFileSync(join(url, 'tries'), 'utf8'), 'x\n', 'one push, not retried');
  assert.equal(git(url, 'rev-parse', 'main'), before);
  const phase = gitPhaseError(err);
  assert.equal(phase.reason, Reasons.PushRejected);
  assert.match(phase.message, /protected branch/);
});

test(
  'a race that never ends is given up after the attempts’ budget as raceLost (PushRaceLost, retried within ' +
    'seconds)',
  async () => {
    const url = bareRepo();
    seed(url);
    const other = writer(url);
    let renders = 0;
    const started = Date.now();
    const err = await repos()
      .update(
        request(url, 'clusters/c/flux-system/gotk-sync.yaml', () => {
          renders++;
          other.push(); // between every fetch and push
          return 'c\n';
        }),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const took = Date.now() - started;
    assert.ok(err instanceof GitError && err.kind === 'raceLost', String(err));
    assert.match(err.message, /another writer kept pushing to the branch; each of 20 pushes in [\d.]+ s lost the race/);
    assert.equal(renders, 20);
    assert.ok(took < 30_000, `gave up after ${took} ms`);
    for (const sha of other.pushed) assert.ok(isAncestor(url, sha), 'every commit of the other writer is kept');
    assert.throws(
      () => git(url, 'show', 'main:clusters/c/flux-system/gotk-sync.yaml'),
      'nothing of the operator was pushed',
    );
    const phase = gitPhaseError(err);
    assert.equal(phase.reason, Reasons.PushRaceLost);
    assert.notEqual(phase.reason, Reasons.PushRejected);
    assert.ok(
      phase.retryAfterMs !== undefined && phase.retryAfterMs >= 1000 && phase.retryAfterMs <= 5_000,
      `retry after ${phase.retryAfterMs} ms`,
    );

    // Once the other writer pauses, the next update wins at once.
    const r = await repos().update(request(url, 'clusters/c/flux-system/gotk-sync.yaml', () => 'c\n'));
    assert.equal(r.attempts, 1);
    assert.equal(git(url, 'show', 'main:clusters/c/flux-system/gotk-sync.yaml'), 'c');
  },
);

test('a lost race fetches the branch alone: other branches are neither fetched nor pruned', async () => {
  const url = bareRepo();
  seed(url);
  const work = mkdtempSync(join(tmpdir(), 'work-'));
  const rs = new Repositories(work, { protocols: ['file'] });
  await rs.update(request(url, 'a.yaml', () => 'a\n'));
  git(url, 'branch', 'feature', 'main');
  const other = writer(url);
  let renders = 0;
  const r = await rs.update(
    request(url, 'b.yaml', () => {
      if (++renders === 1) other.push();
      return 'b\n';
    }),
  );
  assert.equal(r.attempts, 2);
  const clone = join(work, execFileSync('ls', [work], { encoding: 'utf8' }).trim());
  assert.equal(
    existsSync(join(clone, '.git', 'refs', 'remotes', 'origin', 'feature')),
    false,
    'no other branch fetched',
  );
  assert.throws(() => git(clone, 'rev-parse', '--verify', '-q', 'refs/remotes/origin/feature'));
});

test('a branch deleted on the remote is made again from nothing, not from the stale copy of the clone', async () => {
  const url = bareRepo();
  const work = mkdtempSync(join(tmpdir(), 'work-'));
  const rs = new Repositories(work, { protocols: ['file'] });
  await rs.update({ ...request(url, 'a.yaml', () => 'a\n'), branch: 'fleet' });
  seed(url);
  git(url, 'branch', '-D', 'fleet');
  const r = await rs.update({ ...request(url, 'b.yaml', () => 'b\n'), branch: 'fleet' });
  assert.equal(r.pushed, true);
  assert.equal(git(url, 'rev-list', '--count', 'fleet'), '1', 'a new root commit');
  assert.equal(git(url, 'ls-tree', '--name-only', 'fleet'), 'b.yaml');
});
