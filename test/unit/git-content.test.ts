import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readInside, writeInside } from '../../src/git/content.ts';
import { GitError } from '../../src/git/errors.ts';

// The clone's work tree, checked on disk: the second line of defence after the tree check, for a work
// tree that holds a link anyway (one checked out before core.symlinks=false, say).

const FILE = 'clusters/x/flux-system/gotk-sync.yaml';

/** clone makes a work tree with `outside`, a folder beside it holding one secret file. */
function clone(): { root: string; outside: string } {
  const base = mkdtempSync(join(tmpdir(), 'content-'));
  const root = join(base, 'clone');
  const outside = join(base, 'outside');
  mkdirSync(join(root, 'clusters', 'x', 'flux-system'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'secret\n');
  return { root, outside };
}

const unsafe = (message: RegExp) => (err: unknown) =>
  err instanceof GitError && err.kind === 'unsafeContent' && message.test(err.message);

test('a symlinked file on disk is neither read nor written through', async () => {
  const { root, outside } = clone();
  symlinkSync(join(outside, 'secret'), join(root, FILE));
  await assert.rejects(
    readInside(root, FILE, 1024),
    unsafe(/gotk-sync\.yaml is a symbolic link in the repository: replace it with a regular file/),
  );
  await assert.rejects(writeInside(root, FILE, 'overwritten\n'), unsafe(/is a symbolic link/));
  assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), 'secret\n');
});

test('a symlinked folder on disk is neither read nor written through', async () => {
  const { root, outside } = clone();
  execFileSync('rm', ['-r', join(root, 'clusters', 'x', 'flux-system')]);
  symlinkSync(outside, join(root, 'clusters', 'x', 'flux-system'));
  await assert.rejects(
    readInside(root, 'clusters/x/flux-system/secret', 1024),
    unsafe(/^clusters\/x\/flux-system is a symbolic link in the repository: replace it with a folder$/),
  );
  await assert.rejects(writeInside(root, FILE, 'x\n'), unsafe(/^clusters\/x\/flux-system is a symbolic link/));
  assert.deepEqual(readdirSync(outside), ['secret']);
});

test('a FIFO is refused without blocking the reader', async () => {
  const { root } = clone();
  execFileSync('mkfifo', [join(root, FILE)]);
  await assert.rejects(readInside(root, FILE, 1024), unsafe(/is not a regular file/));
  await assert.rejects(writeInside(root, FILE, 'x\n'), unsafe(/is not a regular file/));
});

test('a file bigger than the cap is refused; one at the cap is read', async () => {
  const { root } = clone();
  writeFileSync(join(root, FILE), 'x'.repeat(1025));
  await assert.rejects(
    readInside(root, FILE, 1024),
    unsafe(/is 2 KiB in the repository, more than the 1 KiB the operator reads/),
  );
  writeFileSync(join(root, FILE), 'x'.repeat(1024));
  assert.equal((await readInside(root, FILE, 1024))?.length, 1024);
});

test('a missing file or folder reads as nothing, and is made on write', async () => {
  const { root } = clone();
  assert.equal(await readInside(root, 'clusters/y/flux-system/gotk-sync.yaml', 1024), undefined);
  await writeInside(root, 'clusters/y/flux-system/gotk-sync.yaml', 'y\n');
  assert.equal(await readInside(root, 'clusters/y/flux-system/gotk-sync.yaml', 1024), 'y\n');
});
