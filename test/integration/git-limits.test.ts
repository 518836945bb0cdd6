import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Repositories, GitError, type UpdateRequest } from '../../src/git/repository.ts';
import { CancelledError } from '../../src/cancel.ts';

// A git server may stall or talk forever. Every git command has a hard deadline and an output cap, and
// what git started (ssh, a hook of a local remote) dies with it.

// An "SSH server" that sends its banner and then nothing: ssh waits for the key exchange forever.
const sockets = new Set<Socket>();
const closed: number[] = [];
const stalled = createServer((s) => {
  sockets.add(s);
  s.on('error', () => {});
  s.resume();
  s.on('close', () => (sockets.delete(s), closed.push(Date.now())));
  s.write('SSH-2.0-OpenSSH_9.9\r\n');
});
await new Promise<void>((r) => stalled.listen(0, '127.0.0.1', r));
const stalledUrl = `ssh://git@127.0.0.1:${(stalled.address() as AddressInfo).port}/org/fleet.git`;
after(() => {
  for (const s of sockets) s.destroy();
  stalled.close();
});

const sshAuth = { transport: 'ssh' as const, privateKey: 'not a key', knownHosts: '' };
const work = () => mkdtempSync(join(tmpdir(), 'work-'));

function request(url: string, extra: Partial<UpdateRequest> = {}): UpdateRequest {
  return {
    url,
    branch: 'main',
    auth: sshAuth,
    author: { name: 'Test', email: 'test@example.com' },
    message: 'write',
    files: [{ path: 'clusters/a/flux-system/gotk-sync.yaml', render: () => 'a\n' }],
    ...extra,
  };
}

/** bareRepoWithHook makes a bare repository whose pre-receive hook runs `script`. */
function bareRepoWithHook(script: string): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'remote-')), 'repo.git');
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', dir]);
  writeFileSync(join(dir, 'hooks', 'pre-receive'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'hooks', 'pre-receive'), 0o755);
  return dir;
}

const timedOut = (seconds: number) => (err: unknown) =>
  err instanceof GitError &&
  err.kind === 'timeout' &&
  err.message.endsWith(`the git host did not finish within ${seconds} s`) &&
  err.cause instanceof Error;

/** gone waits a moment for a process to be dead: no longer there, or a zombie nobody has reaped yet. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    const stat = (() => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        return undefined;
      }
    })();
    if (!stat || / Z /.test(stat.slice(stat.lastIndexOf(')')))) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

test('a fetch from a server that stalls is killed at the deadline, ssh with it', async () => {
  const started = Date.now();
  const before = closed.length;
  await assert.rejects(new Repositories(work(), { transferTimeoutMs: 1000 }).update(request(stalledUrl)), timedOut(1));
  const took = Date.now() - started;
  assert.ok(took >= 1000 && took < 5000, `rejected after ${took} ms`);
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(closed.length > before, 'the ssh connection was closed: ssh was killed, not left waiting');
});

test('readHead of a server that stalls is killed at its own deadline', async () => {
  const started = Date.now();
  await assert.rejects(
    new Repositories(work(), { readTimeoutMs: 800, transferTimeoutMs: 60_000 }).readHead(stalledUrl, 'main', sshAuth),
    timedOut(0.8),
  );
  assert.ok(Date.now() - started < 4000);
});

test('a push to a server that streams progress forever is killed at the deadline, hook and all', async () => {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'hook-')), 'pid');
  // Each line restarts simple-git's old block timeout; only a total deadline stops this.
  const url = bareRepoWithHook(`echo $$ > ${pidFile}\nwhile :; do echo "still checking..." >&2; sleep 0.05; done`);
  const started = Date.now();
  await assert.rejects(
    new Repositories(work(), { protocols: ['file'], transferTimeoutMs: 1500 }).update(request(url)),
    timedOut(1.5),
  );
  assert.ok(Date.now() - started < 6000);
  assert.ok(await gone(Number(readFileSync(pidFile, 'utf8'))), 'the hook process was killed with git');
});

test('a server that floods output is cut off at the output cap', async () => {
  const url = bareRepoWithHook('yes "remote noise" >&2');
  const started = Date.now();
  await assert.rejects(
    new Repositories(work(), { protocols: ['file'], maxOutputBytes: 256 * 1024, transferTimeoutMs: 60_000 }).update(
      request(url),
    ),
    (err: unknown) =>
      err instanceof GitError &&
      err.kind === 'unreachable' &&
      /the git host sent more than 256 KiB of output$/.test(err.message),
  );
  assert.ok(Date.now() - started < 10_000);
});

test('a failed push from a hostile server is summarised without its control characters', async () => {
  const url = bareRepoWithHook(`printf '\\033[31mred\\033[0m \\007bell\\n' >&2\nexit 1`);
  await assert.rejects(new Repositories(work(), { protocols: ['file'] }).update(request(url)), (err: unknown) => {
    assert.ok(err instanceof GitError);
    assert.match(err.message, /red bell/);
    assert.doesNotMatch(err.message, /[\x00-\x1f]/);
    return true;
  });
});

/** until waits for a condition, yielding between looks; the test runner's timeout is the only bound. */
async function until(what: () => boolean): Promise<void> {
  while (!what()) await new Promise((r) => setTimeout(r, 20));
}

test('an update withdrawn during its push (a cancelled reconcile) kills git and its hook, and pushes nothing', async () => {
  const pidFile = join(mkdtempSync(join(tmpdir(), 'hook-')), 'pid');
  const url = bareRepoWithHook(`echo $$ > ${pidFile}\nwhile :; do sleep 0.05; done`);
  const cancel = new AbortController();
  const update = new Repositories(work(), { protocols: ['file'], transferTimeoutMs: 120_000 }).update(
    request(url, { signal: cancel.signal }),
  );
  await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
  cancel.abort(new CancelledError('the reconcile was cancelled'));
  await assert.rejects(update, (err: unknown) => err instanceof CancelledError);
  assert.ok(await gone(Number(readFileSync(pidFile, 'utf8'))), 'the hook process was killed with git');
  assert.throws(() =>
    execFileSync('git', ['--git-dir', url, 'rev-parse', '--verify', 'refs/heads/main'], { stdio: 'pipe' }),
  );
});

test('an update withdrawn before its batch starts is dropped without running git', async () => {
  const cancel = new AbortController();
  cancel.abort(new CancelledError('already cancelled'));
  await assert.rejects(
    new Repositories(work()).update(request(stalledUrl, { signal: cancel.signal })),
    (err: unknown) => err instanceof CancelledError,
  );
});

test('readHead whose every caller is cancelled kills its ls-remote: the connection closes', async () => {
  const before = closed.length;
  const repos = new Repositories(work(), { readTimeoutMs: 120_000 });
  const [a, b] = [new AbortController(), new AbortController()];
  const reads = [
    repos.readHead(stalledUrl, 'main', sshAuth, a.signal),
    repos.readHead(stalledUrl, 'main', sshAuth, b.signal),
  ];
  await until(() => sockets.size > 0);
  a.abort(new CancelledError('one caller'));
  await assert.rejects(reads[0], (err: unknown) => err instanceof CancelledError);
  assert.equal(closed.length, before, 'the shared read goes on while a caller still waits');
  b.abort(new CancelledError('the other'));
  await assert.rejects(reads[1], (err: unknown) => err instanceof CancelledError);
  await until(() => closed.length > before);
});
