import { constants } from 'node:fs';
import { lstat, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { GitError, formatBytes } from './errors.ts';

// The repository's content belongs to whoever can push to it. A path the operator reads or writes must
// not lead out of the clone: every component is checked, both in the tree git checked out and on disk.

/** TreeEntry is one line of `git ls-tree -l`: the mode and, for a blob, its size. */
export interface TreeEntry {
  mode: string;
  size: number | undefined;
}

const MODE_NAMES: Record<string, string> = {
  '120000': 'a symbolic link',
  '160000': 'a submodule',
  '040000': 'a folder',
};

function unsafe(path: string, what: string, wanted: 'a regular file' | 'a folder'): GitError {
  return new GitError('unsafeContent', `${path} is ${what} in the repository: replace it with ${wanted}`);
}

/** checkRepoPath refuses a path that is not a plain relative path inside the work tree (no `..`, no `.git`). */
export function checkRepoPath(path: string): void {
  const segments = path.split('/');
  if (
    path.startsWith('/') ||
    segments.some((s) => s === '' || s === '.' || s === '..' || s.toLowerCase() === '.git' || /[\x00-\x1f\\]/.test(s))
  )
    throw new GitError('other', `${JSON.stringify(path)} is not a path inside the repository`);
}

/** prefixes lists a path's components from the root down: a/b/c → a, a/b, a/b/c. */
export function prefixes(path: string): string[] {
  const segments = path.split('/');
  return segments.map((_, i) => segments.slice(0, i + 1).join('/'));
}

/** parseLsTree reads `git ls-tree -t -l -z` output into entries by path. */
export function parseLsTree(out: string): Map<string, TreeEntry> {
  const entries = new Map<string, TreeEntry>();
  for (const record of out.split('\0')) {
    const m = /^(\d{6}) \S+ \S+\s+(\d+|-)\t([\s\S]+)$/.exec(record);
    if (m) entries.set(m[3], { mode: m[1], size: m[2] === '-' ? undefined : Number(m[2]) });
  }
  return entries;
}

/**
 * checkTree refuses a file whose path in the checked-out tree runs through anything but folders, or that
 * is itself not a regular file, or is bigger than maxBytes. With core.symlinks=false git checks a symbolic
 * link out as a plain file but keeps it a link when the file is added, so the tree, not the disk, says what
 * a path is.
 */
export function checkTree(path: string, entries: Map<string, TreeEntry>, maxBytes: number): void {
  const parts = prefixes(path);
  for (const [i, p] of parts.entries()) {
    const entry = entries.get(p);
    if (!entry) return; // nothing there yet: the operator makes it
    const leaf = i === parts.length - 1;
    if (!leaf && entry.mode !== '040000') throw unsafe(p, MODE_NAMES[entry.mode] ?? 'a file', 'a folder');
    if (leaf && entry.mode !== '100644' && entry.mode !== '100755')
      throw unsafe(p, MODE_NAMES[entry.mode] ?? `of mode ${entry.mode}`, 'a regular file');
    if (leaf && entry.size !== undefined && entry.size > maxBytes) throw tooBig(p, entry.size, maxBytes);
  }
}

function tooBig(path: string, size: number, maxBytes: number): GitError {
  return new GitError(
    'unsafeContent',
    `${path} is ${formatBytes(size)} in the repository, more than the ${formatBytes(maxBytes)} the operator reads: ` +
      `make it smaller or remove it`,
  );
}

/**
 * checkFolders lstats every folder on the way to a file, from the clone's root down, and refuses a symbolic
 * link or anything that is not a folder. With create, missing folders are made; otherwise a missing one
 * means the file is not there and false comes back.
 */
async function checkFolders(root: string, path: string, create: boolean): Promise<boolean> {
  const parts = prefixes(path).slice(0, -1);
  for (const p of parts) {
    const st = await lstat(join(root, p)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!st) {
      if (!create) return false;
      await mkdir(join(root, p), { mode: 0o755 });
    } else if (st.isSymbolicLink()) throw unsafe(p, 'a symbolic link', 'a folder');
    else if (!st.isDirectory()) throw unsafe(p, 'not a folder', 'a folder');
  }
  return true;
}

/**
 * readInside reads a file of the clone, or undefined when there is none. Every component is checked first;
 * the file is opened without following a link and read no further than maxBytes.
 */
export async function readInside(root: string, path: string, maxBytes: number): Promise<string | undefined> {
  checkRepoPath(path);
  if (!(await checkFolders(root, path, false))) return undefined;
  const st = await lstat(join(root, path)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) return undefined;
  if (st.isSymbolicLink()) throw unsafe(path, 'a symbolic link', 'a regular file');
  if (!st.isFile()) throw unsafe(path, 'not a regular file', 'a regular file');
  if (st.size > maxBytes) throw tooBig(path, st.size, maxBytes);
  const fh = await open(join(root, path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const fst = await fh.stat();
    if (!fst.isFile()) throw unsafe(path, 'not a regular file', 'a regular file');
    const buf = Buffer.alloc(Math.min(fst.size, maxBytes) + 1);
    let length = 0;
    for (let n; length < buf.length && (n = (await fh.read(buf, length, buf.length - length, length)).bytesRead) > 0;)
      length += n;
    if (length > maxBytes) throw tooBig(path, Math.max(length, fst.size), maxBytes);
    return buf.subarray(0, length).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** writeInside writes a file of the clone, making its folders; no component may be a link or other odd file. */
export async function writeInside(root: string, path: string, content: string): Promise<void> {
  checkRepoPath(path);
  await checkFolders(root, path, true);
  const st = await lstat(join(root, path)).catch(() => undefined);
  if (st?.isSymbolicLink()) throw unsafe(path, 'a symbolic link', 'a regular file');
  if (st && !st.isFile()) throw unsafe(path, 'not a regular file', 'a regular file');
  const fh = await open(
    join(root, path),
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    0o644,
  );
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}
