import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repositories, GitError, type UpdateRequest } from '../../src/git/repository.ts';

// A ClusterBootstrap's author controls the gitops repository: these tests commit what a hostile author
// could, to real bare repositories on disk, and check the operator neither follows it nor trusts it.
const git = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();
const SYNC = 'clusters/x/flux-system/gotk-sync.yaml';
const KUSTOMIZATION = 'clusters/x/flux-system/kustomization.yaml';

/** seededRepo makes a bare repository whose main branch holds what `seed` puts in a work tree. */
function seededRepo(seed: (work: string) => void, index: (work: string) => void = () => {}): string {
  const base = mkdtempSync(join(tmpdir(), 'remote-'));
  const bare = join(base, 'repo.git');
  const work = join(base, 'seed');
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', bare]);
  execFileSync('git', ['init', '-q', '-b', 'main', work]);
  seed(work);
  git(work, 'add', '-A');
  index(work);
  git(work, '-c', 'user.name=Seed', '-c', 'user.email=seed@example.com', 'commit', '-q', '-m', 'seed');
  git(work, 'push', '-q', bare, 'main');
  return bare;
}

function put(work: string, path: string, content: string): void {
  mkdirSync(join(work, path, '..'), { recursive: true });
  writeFileSync(join(work, path), content);
}

function link(work: string, path: string, target: string): void {
  mkdirSync(join(work, path, '..'), { recursive: true });
  symlinkSync(target, join(work, path));
}

let renders = 0;
function request(url: string, path: string, content: string, extra: Partial<UpdateRequest> = {}): UpdateRequest {
  return {
    url,
    branch: 'main',
    auth: { transport: 'ssh', privateKey: 'unused for a local path', knownHosts: '' },
    author: { name: 'Test', email: 'test@example.com' },
    message: `write ${path}`,
    files: [{ path, render: () => (renders++, content) }],
    ...extra,
  };
}

const repos = () => new Repositories(mkdtempSync(join(tmpdir(), 'work-')), { protocols: ['file'] });
const unsafe = (message: RegExp) => (err: unknown) =>
  err instanceof GitError && err.kind === 'unsafeContent' && message.test(err.message);

test('a symlinked gotk-sync.yaml in the branch is refused and the file it points to is untouched', async () => {
  const outside = join(mkdtempSync(join(tmpdir(), 'outside-')), '.gitconfig');
  writeFileSync(outside, 'operator secret\n');
  const url = seededRepo((w) => link(w, SYNC, outside));
  const before = git(url, 'rev-parse', 'main');
  renders = 0;
  await assert.rejects(
    repos().update(request(url, SYNC, 'kind: GitRepository\n')),
    unsafe(
      /^clusters\/x\/flux-system\/gotk-sync\.yaml is a symbolic link in the repository: replace it with a regular file$/,
    ),
  );
  assert.equal(readFileSync(outside, 'utf8'), 'operator secret\n');
  assert.equal(renders, 0, 'nothing was read through the link to render from');
  assert.equal(git(url, 'rev-parse', 'main'), before, 'nothing was pushed');
});

test('a path through a symlinked, submodule or file component is refused and nothing is written through it', async (t) => {
  const cases: [string, (w: string, outside: string) => void, RegExp, ((w: string) => void)?][] = [
    [
      'a symlinked flux-system folder',
      (w, outside) => link(w, 'clusters/x/flux-system', outside),
      /^clusters\/x\/flux-system is a symbolic link in the repository: replace it with a folder$/,
    ],
    [
      'a relative symlink up the tree',
      (w) => link(w, 'clusters/x', '../..'),
      /^clusters\/x is a symbolic link in the repository/,
    ],
    [
      'a file where a folder belongs',
      (w) => put(w, 'clusters/x/flux-system', 'a file\n'),
      /^clusters\/x\/flux-system is a file in the repository: replace it with a folder$/,
    ],
    [
      'a folder where the file belongs',
      (w) => put(w, `${SYNC}/inner.yaml`, 'x\n'),
      /^clusters\/x\/flux-system\/gotk-sync\.yaml is a folder in the repository: replace it with a regular file$/,
    ],
    [
      'a submodule where a folder belongs',
      () => {},
      /^clusters\/x\/flux-system is a submodule in the repository/,
      (w) => git(w, 'update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},clusters/x/flux-system`),
    ],
  ];
  for (const [name, seed, message, index] of cases)
    await t.test(name, async () => {
      const outside = mkdtempSync(join(tmpdir(), 'outside-'));
      const url = seededRepo((w) => seed(w, outside), index);
      await assert.rejects(repos().update(request(url, SYNC, 'kind: GitRepository\n')), unsafe(message));
      assert.deepEqual(readdirSync(outside), [], 'nothing was written outside the clone');
    });
});

test('an unsafe path fails only its own update; the rest of the batch is committed', async () => {
  const url = seededRepo((w) => link(w, SYNC, '/etc/hostname'));
  const rs = repos();
  const first = rs.update(request(url, 'clusters/a/flux-system/gotk-sync.yaml', 'a\n'));
  const hostile = rs.update(request(url, SYNC, 'x\n'));
  const fine = rs.update(request(url, 'clusters/b/flux-system/gotk-sync.yaml', 'b\n'));
  await first;
  await assert.rejects(hostile, unsafe(/symbolic link/));
  assert.equal((await fine).pushed, true);
  assert.equal(git(url, 'show', 'main:clusters/b/flux-system/gotk-sync.yaml'), 'b');
  assert.equal(
    git(url, 'ls-tree', 'main', SYNC).split(/\s/)[0],
    '120000',
    'the link is left as the author committed it',
  );
});

test('a kustomization.yaml bigger than the cap is refused before it is read', async () => {
  const url = seededRepo((w) => put(w, KUSTOMIZATION, `# ${'x'.repeat(3 * 1048576)}\n`));
  renders = 0;
  await assert.rejects(
    repos().update(request(url, KUSTOMIZATION, 'resources: []\n')),
    unsafe(
      /^clusters\/x\/flux-system\/kustomization\.yaml is 3 MiB in the repository, more than the 2 MiB the operator reads/,
    ),
  );
  assert.equal(renders, 0);
});

test('a file under the cap is read back and given to render', async () => {
  const url = seededRepo((w) => put(w, KUSTOMIZATION, 'resources:\n- apps.yaml\n'));
  let seen: string | undefined;
  const r = await repos().update({
    ...request(url, KUSTOMIZATION, ''),
    files: [{ path: KUSTOMIZATION, render: (existing) => ((seen = existing), `${existing}- gotk-sync.yaml\n`) }],
  });
  assert.equal(seen, 'resources:\n- apps.yaml\n');
  assert.equal(r.pushed, true);
});

test('a render that throws rejects its own update with that very error', async () => {
  const url = seededRepo((w) => put(w, 'README.md', 'hi\n'));
  const thrown = new Error('kustomization.yaml cannot be kept');
  const update = repos().update({
    ...request(url, KUSTOMIZATION, ''),
    files: [
      {
        path: KUSTOMIZATION,
        render: () => {
          throw thrown;
        },
      },
    ],
  });
  await assert.rejects(update, (err: unknown) => err === thrown);
});

test('a broken ~/.gitconfig does not reach the operator’s git', async () => {
  const home = mkdtempSync(join(tmpdir(), 'home-'));
  writeFileSync(join(home, '.gitconfig'), '[core\n\tthis is not git config = = =\n');
  mkdirSync(join(home, '.config', 'git'), { recursive: true });
  writeFileSync(join(home, '.config', 'git', 'config'), '[[[ garbage\n');
  const url = seededRepo((w) => put(w, 'README.md', 'hi\n'));
  assert.throws(
    () => execFileSync('git', ['-C', url, 'log'], { env: { ...process.env, HOME: home }, stdio: 'pipe' }),
    /bad config/,
    'git itself reads the file',
  );
  const saved = process.env.HOME;
  process.env.HOME = home;
  try {
    const r = await repos().update(request(url, SYNC, 'x\n'));
    assert.equal(r.pushed, true);
    assert.equal(
      await repos().readHead(url, 'main', { transport: 'ssh', privateKey: 'unused', knownHosts: '' }),
      r.head,
    );
  } finally {
    process.env.HOME = saved;
  }
});

test('a transport other than the allowed ones is refused and runs nothing', async (t) => {
  const marker = join(mkdtempSync(join(tmpdir(), 'ext-')), 'ran');
  const cases: [string, string][] = [
    ['an ext:: URL', `ext::sh -c touch% ${marker}`],
    ['a local path when only ssh and https are allowed', seededRepo((w) => put(w, 'README.md', 'hi\n'))],
  ];
  for (const [name, url] of cases)
    await t.test(name, async () => {
      const rs = new Repositories(mkdtempSync(join(tmpdir(), 'work-')));
      await assert.rejects(
        rs.update(request(url, SYNC, 'x\n')),
        (err: unknown) => err instanceof GitError && /not allowed/.test(err.message),
      );
      await assert.rejects(
        rs.readHead(url, 'main', { transport: 'ssh', privateKey: 'unused', knownHosts: '' }),
        /not allowed/,
      );
    });
  assert.throws(() => readFileSync(marker), /ENOENT/);
});

test('a URL or branch that git would read as an option is refused before git runs', async (t) => {
  const cases: [string, Partial<UpdateRequest>, RegExp][] = [
    ['a URL starting with a dash', { url: '--upload-pack=touch /tmp/pwned' }, /is not a repository URL/],
    ['a branch starting with a dash', { branch: '-f' }, /is not a valid branch name/],
    ['a branch with a space', { branch: 'main branch' }, /is not a valid branch name/],
    [
      'a file path that leaves the work tree',
      { files: [{ path: '../outside.yaml', render: () => '' }] },
      /is not a path inside the repository/,
    ],
    [
      'a file path into .git',
      { files: [{ path: '.git/config', render: () => '' }] },
      /is not a path inside the repository/,
    ],
  ];
  for (const [name, extra, message] of cases)
    await t.test(name, () =>
      assert.rejects(
        repos().update(request('/nonexistent', SYNC, 'x\n', extra)),
        (err: unknown) => err instanceof GitError && message.test(err.message),
      ),
    );
});

/** duOf is the bytes a folder takes on disk outside its .git, and how many files it holds there. */
function duOf(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true, encoding: 'utf8' })) {
    const path = join(entry.parentPath, entry.name);
    if (path.includes(`${join(dir, '.git')}`) || !entry.isFile()) continue;
    files++;
    bytes += statSync(path).size;
  }
  return { bytes, files };
}

test("a repository whose tree checks out to gigabytes or to many files fills nothing: only the batch's files are checked out", async () => {
  const bare = seededRepo((work) => {
    // 256 MiB of one repeated byte packs to a few hundred KB: a full checkout would write all of it.
    execFileSync('sh', ['-c', `head -c 268435456 /dev/zero > ${join(work, 'bomb.bin')}`]);
    for (let i = 0; i < 2000; i++) put(work, `apps/many/${i}.yaml`, '');
    put(work, 'clusters/x/flux-system/gotk-sync.yaml', 'old\n');
  });
  const root = mkdtempSync(join(tmpdir(), 'work-'));
  const repos = new Repositories(root, { protocols: ['file'] });
  const result = await repos.update(request(bare, SYNC, 'new\n'));
  assert.equal(result.pushed, true);
  const [clone] = readdirSync(root).filter((n) => /^[0-9a-f]{16}$/.test(n));
  const { bytes, files } = duOf(join(root, clone));
  assert.ok(bytes < 1024 * 1024, `the work tree holds ${bytes} bytes`);
  assert.ok(files <= 3, `the work tree holds ${files} files`);
  assert.equal(git(bare, 'show', 'main:clusters/x/flux-system/gotk-sync.yaml'), 'new');
  assert.equal(
    git(bare, 'cat-file', '-s', 'main:bomb.bin'),
    '268435456',
    'what the operator did not check out is kept',
  );
  assert.equal(git(bare, 'ls-tree', '-r', '--name-only', 'main', 'apps/many').split('\n').length, 2000);
});

test('a repository whose packs outgrow the budget is removed from disk and refused with a message that says so', async () => {
  const bare = seededRepo((work) => {
    execFileSync('sh', ['-c', `head -c 2097152 /dev/urandom > ${join(work, 'noise.bin')}`]);
  });
  const root = mkdtempSync(join(tmpdir(), 'work-'));
  await assert.rejects(
    new Repositories(root, { protocols: ['file'], maxRepoBytes: 1024 * 1024 }).update(request(bare, SYNC, 'x\n')),
    (err: unknown) =>
      err instanceof GitError &&
      err.kind === 'unsafeContent' &&
      /the repository takes 2(\.\d)? MiB on disk, more than the 1 MiB the operator keeps for one repository/.test(
        err.message,
      ),
  );
  assert.deepEqual(
    readdirSync(root).filter((n) => /^[0-9a-f]{16}$/.test(n)),
    [],
    'the clone is gone',
  );
});
