import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repositories, GitError, type UpdateRequest } from '../../src/git/repository.ts';

// These tests use real git on local bare repositories; the lab's end-to-end tests do the same over SSH.
const git = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();

function bareRepo(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'remote-')), 'repo.git');
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', dir]);
  return dir;
}

function request(url: string, path: string, content: string, extra: Partial<UpdateRequest> = {}): UpdateRequest {
  return {
    url,
    branch: 'main',
    auth: { transport: 'ssh', privateKey: 'unused for a local path', knownHosts: '' },
    author: { name: 'Test', email: 'test@example.com' },
    message: `write ${path}`,
    files: [{ path, render: () => content }],
    ...extra,
  };
}

const repos = () => new Repositories(mkdtempSync(join(tmpdir(), 'work-')), { protocols: ['file'] });

test('an empty repository gets its first commit on the branch', async () => {
  const url = bareRepo();
  const r = await repos().update(request(url, 'clusters/a/flux-system/gotk-sync.yaml', 'a\n'));
  assert.equal(r.pushed, true);
  assert.equal(git(url, 'rev-parse', 'main'), r.head);
  assert.equal(git(url, 'show', 'main:clusters/a/flux-system/gotk-sync.yaml'), 'a');
  assert.equal(git(url, 'log', '--format=%an <%ae>', 'main'), 'Test <test@example.com>');
});

test('an update that changes nothing makes no commit', async () => {
  const url = bareRepo();
  const rs = repos();
  const first = await rs.update(request(url, 'f.yaml', 'same\n'));
  const second = await rs.update(request(url, 'f.yaml', 'same\n'));
  assert.equal(second.pushed, false);
  assert.equal(second.head, first.head);
  assert.equal(git(url, 'rev-list', '--count', 'main'), '1');
});

test('files the operator does not own are left as they are', async () => {
  const url = bareRepo();
  const rs = repos();
  await rs.update(request(url, 'clusters/a/flux-system/x.yaml', 'x\n'));
  const other = repos();
  await other.update(request(url, 'clusters/a/apps.yaml', 'user\n'));
  await rs.update(request(url, 'clusters/a/flux-system/x.yaml', 'x2\n'));
  assert.equal(git(url, 'show', 'main:clusters/a/apps.yaml'), 'user');
});

test('concurrent updates through one clone and through separate clones lose no commit', async () => {
  const url = bareRepo();
  const shared = repos();
  const updates = Array.from({ length: 6 }, (_, i) =>
    (i % 2 === 0 ? shared : repos()).update(request(url, `clusters/c${i}/f.yaml`, `${i}\n`)),
  );
  const results = await Promise.all(updates);
  assert.ok(results.every((r) => r.pushed));
  for (let i = 0; i < 6; i++) {
    assert.equal(git(url, 'show', `main:clusters/c${i}/f.yaml`), String(i));
    assert.equal(
      git(url, 'log', '--format=%H', 'main', '--', `clusters/c${i}/f.yaml`).split('\n').length,
      1,
      `c${i} is written by exactly one commit`,
    );
  }
});

test('updates that queue up behind a running one are batched into one commit', async () => {
  const url = bareRepo();
  const rs = repos();
  const results = await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      rs.update(request(url, `clusters/b${i}/f.yaml`, `${i}\n`, { message: `Bootstrap b${i}` })),
    ),
  );
  assert.equal(git(url, 'rev-list', '--count', 'main'), '2', 'the first update alone, then the four that waited');
  assert.match(
    git(url, 'log', '-1', '--format=%B', 'main'),
    /^Update flux-system of 4 clusters\n\n- Bootstrap b1\n- Bootstrap b2\n- Bootstrap b3\n- Bootstrap b4/,
  );
  assert.equal(new Set(results.slice(1).map((r) => r.head)).size, 1);
  assert.ok(results.every((r) => r.pushed));
});

test('an update that cannot render fails alone; the rest of its batch is committed', async () => {
  const url = bareRepo();
  const rs = repos();
  const first = rs.update(request(url, 'a.yaml', 'a\n'));
  const broken = rs.update({
    ...request(url, 'b.yaml', ''),
    files: [
      {
        path: 'b.yaml',
        render: () => {
          throw new Error('cannot render');
        },
      },
    ],
  });
  const fine = rs.update(request(url, 'c.yaml', 'c\n'));
  await first;
  await assert.rejects(broken, /cannot render/);
  assert.equal((await fine).pushed, true);
  assert.equal(git(url, 'show', 'main:c.yaml'), 'c');
});

test('a push refused by a protected branch is a GitError of kind protected', async () => {
  const url = bareRepo();
  const hook = join(url, 'hooks', 'pre-receive');
  writeFileSync(hook, '#!/bin/sh\necho "main is a protected branch" >&2\nexit 1\n');
  chmodSync(hook, 0o755);
  await assert.rejects(
    repos().update(request(url, 'f.yaml', 'x\n')),
    (err: unknown) => err instanceof GitError && err.kind === 'protected',
  );
});

test('a repository that does not exist is a GitError of kind notFound', async () => {
  await assert.rejects(
    repos().update(request('/nonexistent/repo.git', 'f.yaml', 'x\n')),
    (err: unknown) => err instanceof GitError && err.kind === 'notFound',
  );
});

test('a commit whose push failed is made again once the push can succeed', async () => {
  const url = bareRepo();
  const hook = join(url, 'hooks', 'pre-receive');
  writeFileSync(hook, '#!/bin/sh\nexit 1\n');
  chmodSync(hook, 0o755);
  const rs = repos();
  await assert.rejects(rs.update(request(url, 'f.yaml', 'x\n')));
  writeFileSync(hook, '#!/bin/sh\nexit 0\n');
  const r = await rs.update(request(url, 'f.yaml', 'x\n'));
  assert.equal(r.pushed, true);
  assert.equal(git(url, 'rev-parse', 'main'), r.head);
});

test('a clone left with the lock files of a killed git command works again after a restart', async () => {
  const url = bareRepo();
  const work = mkdtempSync(join(tmpdir(), 'work-'));
  await new Repositories(work, { protocols: ['file'] }).update(request(url, 'a.yaml', 'a\n'));
  const [clone] = readdirSync(work);
  writeFileSync(join(work, clone, '.git', 'index.lock'), '');
  writeFileSync(join(work, clone, '.git', 'refs', 'heads', 'main.lock'), '');
  const r = await new Repositories(work, { protocols: ['file'] }).update(request(url, 'b.yaml', 'b\n'));
  assert.equal(r.pushed, true);
  assert.equal(git(url, 'show', 'main:b.yaml'), 'b');
});

test('a clone an earlier process left half-made is repaired, not reported as not found', async (t) => {
  const cases: [string, (clone: string) => void][] = [
    ['killed between git init and setting the remote', (clone) => git(clone, 'remote', 'remove', 'origin')],
    ['killed during git init', (clone) => rmSync(join(clone, '.git', 'HEAD'))],
    ['a remote that points elsewhere', (clone) => git(clone, 'remote', 'set-url', 'origin', '/somewhere/else.git')],
  ];
  for (const [name, breakClone] of cases)
    await t.test(name, async () => {
      const url = bareRepo();
      const work = mkdtempSync(join(tmpdir(), 'work-'));
      await new Repositories(work, { protocols: ['file'] }).update(request(url, 'a.yaml', 'a\n'));
      const [clone] = readdirSync(work);
      breakClone(join(work, clone));
      const r = await new Repositories(work, { protocols: ['file'] }).update(request(url, 'b.yaml', 'b\n'));
      assert.equal(r.pushed, true);
      assert.equal(git(url, 'show', 'main:b.yaml'), 'b');
      assert.equal(
        git(url, 'show', 'main:a.yaml'),
        'a',
        'the first commit is kept: the repaired clone fetched before committing',
      );
    });
});

test('updates by two authors queued together are each committed under their own name', async () => {
  const url = bareRepo();
  const rs = repos();
  const first = rs.update(request(url, 'first.yaml', '0\n'));
  const alice = rs.update(request(url, 'alice.yaml', 'a\n', { author: { name: 'Alice', email: 'alice@example.com' } }));
  const bob = rs.update(request(url, 'bob.yaml', 'b\n', { author: { name: 'Bob', email: 'bob@example.com' } }));
  const alice2 = rs.update(
    request(url, 'alice2.yaml', 'a2\n', { author: { name: 'Alice', email: 'alice@example.com' } }),
  );
  await Promise.all([first, alice, bob, alice2]);
  assert.equal(git(url, 'log', '-1', '--format=%an <%ae>', 'main', '--', 'alice.yaml'), 'Alice <alice@example.com>');
  assert.equal(git(url, 'log', '-1', '--format=%an <%ae>', 'main', '--', 'bob.yaml'), 'Bob <bob@example.com>');
  assert.equal(
    git(url, 'log', '-1', '--format=%H', 'main', '--', 'alice2.yaml'),
    git(url, 'log', '-1', '--format=%H', 'main', '--', 'alice.yaml'),
    "Alice's two updates share a commit",
  );
});

test('an update with an author git refuses fails alone; the other author is committed', async (t) => {
  for (const author of [
    { name: '<>', email: 'a@example.com' },
    { name: '  ', email: 'a@example.com' },
    { name: 'Eve', email: '<>' },
    { name: 'Eve', email: 'eve@example.com\nX: y' },
  ])
    await t.test(JSON.stringify(author), async () => {
      const url = bareRepo();
      const rs = repos();
      const first = rs.update(request(url, 'first.yaml', '0\n'));
      const bad = assert.rejects(
        rs.update(request(url, 'bad.yaml', 'x\n', { author })),
        (err: unknown) => err instanceof GitError && /is not a valid git identity/.test(err.message),
      );
      const good = rs.update(request(url, 'good.yaml', 'g\n', { author: { name: 'Good', email: 'good@example.com' } }));
      await first;
      await bad;
      assert.equal((await good).pushed, true);
      assert.equal(git(url, 'log', '-1', '--format=%an', 'main', '--', 'good.yaml'), 'Good');
      assert.throws(() => git(url, 'show', 'main:bad.yaml'));
    });
});

test('prune removes the clones of repositories no longer used and keeps the rest', async () => {
  const [kept, dropped] = [bareRepo(), bareRepo()];
  const work = mkdtempSync(join(tmpdir(), 'work-'));
  const rs = new Repositories(work, { protocols: ['file'] });
  await rs.update(request(kept, 'a.yaml', 'a\n'));
  await rs.update(request(dropped, 'a.yaml', 'a\n'));
  assert.equal(readdirSync(work).length, 2);
  assert.equal(await rs.prune(new Set([kept])), 1);
  assert.equal(readdirSync(work).length, 1);
  assert.equal((await rs.update(request(kept, 'b.yaml', 'b\n'))).pushed, true);
  assert.equal(
    (await rs.update(request(dropped, 'b.yaml', 'b\n'))).pushed,
    true,
    'a pruned repository is cloned again when used again',
  );
});

test('sweep removes the key folders of a killed process and leaves those of live processes', async () => {
  const dead = spawnSync('true').pid!;
  const old = new Date(Date.now() - 3600_000);
  const folder = (name: string, mtime?: Date) => {
    const path = join(tmpdir(), name);
    mkdirSync(path);
    writeFileSync(join(path, 'identity'), 'key');
    if (mtime) utimesSync(path, mtime, mtime);
    return path;
  };
  const ofDead = folder(`fbo-git-${dead}-sweeptest`, old);
  const ofThisProcess = folder(`fbo-git-${process.pid}-sweeptest`);
  const ofEarlierProcessWithThisPid = folder(`fbo-git-${process.pid}-sweeptest-old`, old);
  const ofLiveParent = folder(`fbo-git-${process.ppid}-sweeptest`, old);
  try {
    await Repositories.sweep();
    assert.equal(existsSync(ofDead), false);
    assert.equal(existsSync(ofEarlierProcessWithThisPid), false);
    assert.equal(existsSync(ofThisProcess), true);
    assert.equal(existsSync(ofLiveParent), true);
  } finally {
    for (const p of [ofDead, ofThisProcess, ofEarlierProcessWithThisPid, ofLiveParent])
      rmSync(p, { recursive: true, force: true });
  }
});

test('no key folder is left behind after updates and reads', async () => {
  const url = bareRepo();
  const mine = () => readdirSync(tmpdir()).filter((n) => n.startsWith(`fbo-git-${process.pid}-`));
  await repos().update(request(url, 'a.yaml', 'a\n'));
  await repos().readHead(url, 'main', { transport: 'ssh', privateKey: 'unused', knownHosts: '' });
  await assert.rejects(repos().update(request('/nonexistent/repo.git', 'a.yaml', 'a\n')));
  assert.deepEqual(mine(), []);
});

test('the same read asked for by many at once runs one git ls-remote; another key runs its own', async () => {
  const url = bareRepo();
  const rs = repos();
  const { head } = await rs.update(request(url, 'a.yaml', 'a\n'));
  // A git on PATH that notes each ls-remote, then runs the real one.
  const bin = mkdtempSync(join(tmpdir(), 'bin-'));
  const calls = join(bin, 'calls');
  writeFileSync(
    join(bin, 'git'),
    `#!/bin/sh\n[ "$1" = ls-remote ] && echo "$1" >> ${calls}\nexec ` +
      `${execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim()} "$@"\n`,
  );
  chmodSync(join(bin, 'git'), 0o755);
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path}`;
  try {
    const auth = (privateKey: string) => ({ transport: 'ssh' as const, privateKey, knownHosts: '' });
    const heads = await Promise.all(
      [...Array(10).fill(auth('push key')), auth('another key')].map((a) => rs.readHead(url, 'main', a)),
    );
    assert.deepEqual(new Set(heads), new Set([head]));
    assert.equal(readFileSync(calls, 'utf8').split('\n').filter(Boolean).length, 2);
    await rs.readHead(url, 'main', auth('push key'));
    assert.equal(
      readFileSync(calls, 'utf8').split('\n').filter(Boolean).length,
      3,
      'a read asked for after the first ended runs again',
    );
  } finally {
    process.env.PATH = path;
  }
});

test("a scan finds the files of a folder that hold a string, with real git's literal pathspecs", async () => {
  const url = bareRepo();
  const rs = repos();
  for (const [path, content] of [
    ['clusters/a/db.yaml', 'recipient: age1old\n'],
    ['clusters/a/.sops.yaml', 'age: age1old\n'],
    ['clusters/a/apps/x.yaml', 'recipient: age1new\n'],
    ['clusters/b/db.yaml', 'recipient: age1old\n'],
    ['clusters/a/bin.dat', 'age1old\0binary'],
  ])
    await rs.update(request(url, path, content));
  const scan = { path: 'clusters/a', needle: 'age1old', exclude: ['clusters/a/.sops.yaml'] };
  const r = await rs.update(request(url, 'clusters/a/flux-system/x.yaml', 'x\n', { scan }));
  assert.deepEqual(r.found, ['clusters/a/db.yaml']);
  const none = await rs.update(
    request(url, 'clusters/a/flux-system/x.yaml', 'x\n', { scan: { ...scan, needle: 'age1gone' } }),
  );
  assert.deepEqual(none.found, []);
  assert.equal(none.pushed, false);
});

test('pull-request mode: the change goes to the head branch, adds up there, and is judged merged by the base', async () => {
  const url = bareRepo();
  const rs = repos();
  await rs.update(request(url, 'README.md', 'hello\n'));
  const base = git(url, 'rev-parse', 'main');
  const a = await rs.update(request(url, 'clusters/a/f.yaml', 'a1\n', { proposeTo: 'flux/pr' }));
  assert.equal(a.head, base, 'the base is not touched');
  assert.equal(git(url, 'rev-parse', 'main'), base);
  assert.equal(a.proposal?.pushed, true);
  assert.equal(git(url, 'show', 'flux/pr:clusters/a/f.yaml'), 'a1');
  // Another cluster's change adds up on the same head branch: a fast-forward, nothing lost.
  const b = await rs.update(request(url, 'clusters/b/f.yaml', 'b1\n', { proposeTo: 'flux/pr' }));
  assert.equal(git(url, 'merge-base', '--is-ancestor', a.proposal!.commit, b.proposal!.commit) === '', true);
  assert.equal(git(url, 'show', 'flux/pr:clusters/a/f.yaml'), 'a1');
  const again = await repos().update(request(url, 'clusters/a/f.yaml', 'a1\n', { proposeTo: 'flux/pr' }));
  assert.equal(again.proposal?.pushed, false, 'a change the head branch holds is not pushed again');
  // Squash-merged by a reviewer, while someone else pushed to main too.
  const merge = join(mkdtempSync(join(tmpdir(), 'merge-')), 'r');
  execFileSync('git', ['clone', '-q', url, merge]);
  git(merge, 'merge', '-q', '--squash', 'origin/flux/pr');
  writeFileSync(join(merge, 'other.txt'), 'x\n');
  git(merge, 'add', '-A');
  git(merge, '-c', 'user.name=r', '-c', 'user.email=r@example.com', 'commit', '-q', '-m', 'squash');
  git(merge, 'push', '-q', 'origin', 'HEAD:main');
  const merged = await rs.update(request(url, 'clusters/a/f.yaml', 'a1\n', { proposeTo: 'flux/pr' }));
  assert.equal(merged.proposal, undefined, 'the change is on the base: no proposal');
  assert.equal(merged.head, git(url, 'rev-parse', 'main'));
  // The next change starts the spent head branch afresh from the base.
  const next = await rs.update(request(url, 'clusters/a/f.yaml', 'a2\n', { proposeTo: 'flux/pr' }));
  assert.equal(next.proposal?.pushed, true);
  assert.equal(git(url, 'rev-parse', 'flux/pr^'), git(url, 'rev-parse', 'main'), 'one commit on the base');
  // Someone commits on the head branch: the operator adds on top, never over it.
  git(merge, 'fetch', '-q', 'origin');
  git(merge, 'checkout', '-q', '-B', 'flux/pr', 'origin/flux/pr');
  writeFileSync(join(merge, 'clusters/a/note.txt'), 'reviewer\n');
  git(merge, 'add', '-A');
  git(merge, '-c', 'user.name=r', '-c', 'user.email=r@example.com', 'commit', '-q', '-m', 'note');
  git(merge, 'push', '-q', 'origin', 'HEAD:flux/pr');
  const theirs = git(url, 'rev-parse', 'flux/pr');
  const after = await rs.update(request(url, 'clusters/a/f.yaml', 'a3\n', { proposeTo: 'flux/pr' }));
  assert.equal(git(url, 'rev-parse', `${after.proposal!.commit}^`), theirs, "on top of the reviewer's commit");
  assert.equal(git(url, 'show', 'flux/pr:clusters/a/note.txt'), 'reviewer');
});

test('with a signing key every commit is SSH-signed, direct and on a pull-request branch; git verify-commit passes', async () => {
  const { generateKeyPair } = await import('../../src/ssh/keys.ts');
  const key = await generateKeyPair({ algorithm: 'ed25519', comment: 'signing' });
  const url = bareRepo();
  const rs = repos();
  const direct = await rs.update(request(url, 'a.yaml', 'a\n', { signingKey: key.privateKey }));
  const proposed = await rs.update(request(url, 'b.yaml', 'b\n', { signingKey: key.privateKey, proposeTo: 'pr' }));
  const allowed = join(mkdtempSync(join(tmpdir(), 'signers-')), 'allowed');
  writeFileSync(allowed, `test@example.com namespaces="git" ${key.publicKey.trim()}\n`);
  for (const commit of [direct.head, proposed.proposal!.commit])
    execFileSync('git', ['-C', url, '-c', `gpg.ssh.allowedSignersFile=${allowed}`, 'verify-commit', commit], {
      stdio: 'pipe',
    });
  const unsigned = await rs.update(request(url, 'c.yaml', 'c\n'));
  const r = spawnSync('git', [
    '-C',
    url,
    '-c',
    `gpg.ssh.allowedSignersFile=${allowed}`,
    'verify-commit',
    unsigned.head,
  ]);
  assert.notEqual(r.status, 0, 'an unsigned commit does not verify');
});
