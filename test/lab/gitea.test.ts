/**
 * Tests of Gitea in the lab (gitea.ts): one lab with Gitea for the whole file, in its own temp dir, started through
 * the command line (`LAB_GITEA=1 node test/lab/cli.ts up`, as `LAB_GITEA=1 npm run lab:up` does) and taken down by
 * the last test. Needs root and the lab binaries plus Gitea (built on first use: minutes when the Go cache is cold).
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
  createGiteaRepo,
  giteaRequest,
  gitSshCommand,
  labDown,
  labPids,
  labUp,
  readLabEnv,
  type LabEnv,
} from './lab.ts';
import { httpRequest } from './kube.ts';
import { stopProcesses } from './process.ts';

const execFileP = promisify(execFile);
const CLI = path.join(import.meta.dirname, 'cli.ts');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-gitea-test-'));
fs.chmodSync(work, 0o755); // the lab's git user must traverse it
const dir = path.join(work, 'lab');
const log = process.env.LAB_TEST_VERBOSE ? (l: string) => console.error(`[lab] ${l}`) : undefined;
let env: LabEnv;

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
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
    ...extra,
  };
}

/** Runs a command; resolves to its exit code and output (never throws on a failed command). */
async function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
) {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? cleanEnv(),
      maxBuffer: 32 * 1024 * 1024,
      timeout: opts.timeoutMs ?? 120_000,
    });
    return { code: 0, out: `${stdout}${stderr}` };
  } catch (err: any) {
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      out: `${err.stdout ?? ''}${err.stderr ?? ''}${err.message}`,
    };
  }
}

async function ok(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  const r = await sh(cmd, args, opts);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed:\n${r.out}`);
  return r.out;
}

/** The git environment for ssh with `key` against `knownHosts` (strict host key checking). */
const sshEnv = (key: string, knownHosts = env.LAB_GITEA_KNOWN_HOSTS!) =>
  cleanEnv({ GIT_SSH_COMMAND: gitSshCommand(key, knownHosts) });

/** A commit on branch main in a new work tree `name` under the test's work dir; returns [path, commit]. */
async function commitIn(name: string, file: string, text: string): Promise<[string, string]> {
  const src = path.join(work, name);
  await ok('git', ['init', '-q', '-b', 'main', src]);
  fs.writeFileSync(path.join(src, file), text);
  await ok('git', ['add', '.'], { cwd: src });
  await ok('git', ['commit', '-q', '-m', `add ${file}`], { cwd: src });
  return [src, (await ok('git', ['rev-parse', 'HEAD'], { cwd: src })).trim()];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const gone = (pid: number) =>
  !fs.existsSync(`/proc/${pid}`) || /\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));

before(
  async () => {
    const t0 = Date.now();
    await ok(process.execPath, [CLI, 'up'], {
      env: { ...cleanEnv(), LAB_DIR: dir, LAB_GITEA: '1' },
      timeoutMs: 3_600_000,
    });
    env = readLabEnv(dir);
    log?.(`lab with Gitea up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  },
  { timeout: 3_600_000 },
);

after(async () => {
  await labDown({ dir }).catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
});

test('LAB_GITEA=1 lab:up starts Gitea and writes its API, token, owner, repo URLs and known_hosts to the env', async () => {
  const pids = labPids(dir);
  assert.ok(pids.gitea && pids['gitea-https'], `gitea and gitea-https run: ${JSON.stringify(pids)}`);
  assert.match(env.LAB_GITEA_API ?? '', /^http:\/\/127\.0\.0\.1:\d+\/api\/v1$/);
  assert.equal(env.LAB_GITEA_OWNER, GITEA_OWNER);
  const sshPort = /^ssh:\/\/git@127\.0\.0\.1:(\d+)\/labadmin\/fleet\.git$/.exec(env.LAB_GITEA_REPO_URL ?? '')?.[1];
  assert.ok(sshPort, `LAB_GITEA_REPO_URL = ${env.LAB_GITEA_REPO_URL}`);
  assert.notEqual(sshPort, env.LAB_GIT_PORT, 'Gitea has an SSH port of its own');
  assert.match(env.LAB_GITEA_HTTPS_URL ?? '', /^https:\/\/127\.0\.0\.1:\d+\/labadmin\/fleet\.git$/);
  const known = fs.readFileSync(env.LAB_GITEA_KNOWN_HOSTS!, 'utf8').trim().split('\n');
  assert.ok(known.length >= 1 && known.every((l) => l.startsWith(`[127.0.0.1]:${sshPort} `)), known.join('\n'));
  assert.ok(fs.existsSync(env.LAB_CA_FILE), 'the lab CA is there');

  const me = await giteaRequest('GET', '/user', undefined, { dir });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.login, GITEA_OWNER);
  assert.equal(me.json.is_admin, true);
  const anonymous = await httpRequest(`${env.LAB_GITEA_API}/repos/${GITEA_OWNER}/fleet`);
  assert.equal(anonymous.status, 404, 'fleet is private: not visible without the token');
  const fleet = await giteaRequest('GET', `/repos/${GITEA_OWNER}/fleet`, undefined, { dir });
  assert.equal(fleet.status, 200, fleet.text);
  assert.equal(fleet.json.empty, true, 'fleet starts empty');
});

test('the writer key pushes to fleet over ssh with strict host key checking against LAB_GITEA_KNOWN_HOSTS', async () => {
  const url = env.LAB_GITEA_REPO_URL!;
  const [src, head] = await commitIn('push-ssh', 'README.md', 'fleet\n');
  await ok('git', ['push', '-q', url, 'main'], { cwd: src, env: sshEnv(env.LAB_GIT_WRITER_KEY) });
  assert.match(
    await ok('git', ['ls-remote', url, 'refs/heads/main'], { env: sshEnv(env.LAB_GIT_WRITER_KEY) }),
    new RegExp(`^${head}\\s`),
  );
  // Gitea records a push asynchronously (its post-receive queue)
  let seen: unknown;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(250)) {
    const branch = await giteaRequest('GET', `/repos/${GITEA_OWNER}/fleet/branches/main`, undefined, { dir });
    seen = branch.json?.commit?.id ?? `HTTP ${branch.status} ${branch.text.slice(0, 200)}`;
    if (seen === head) break;
  }
  assert.equal(seen, head, "Gitea's API shows the pushed commit on main");

  // the host key is really checked: against the lab sshd's known_hosts (other keys), ssh refuses
  const wrongHosts = await sh('git', ['ls-remote', url], {
    env: sshEnv(env.LAB_GIT_WRITER_KEY, env.LAB_GIT_KNOWN_HOSTS),
  });
  assert.notEqual(wrongHosts.code, 0);
  assert.match(wrongHosts.out, /Host key verification failed|host key .*(not known|changed)/i);
});

test('a read-only deploy key added through the API clones fleet but cannot push', async () => {
  const key = path.join(work, 'deploy');
  await ok('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'deploy', '-f', key]);
  const added = await giteaRequest(
    'POST',
    `/repos/${GITEA_OWNER}/fleet/keys`,
    { title: 'flux-deploy', key: fs.readFileSync(`${key}.pub`, 'utf8').trim(), read_only: true },
    { dir },
  );
  assert.equal(added.status, 201, added.text);
  assert.equal(added.json.read_only, true);

  const clone = path.join(work, 'deploy-clone');
  await ok('git', ['clone', '-q', env.LAB_GITEA_REPO_URL!, clone], { env: sshEnv(key) });
  assert.equal(fs.readFileSync(path.join(clone, 'README.md'), 'utf8'), 'fleet\n');
  const before = (await ok('git', ['rev-parse', 'HEAD'], { cwd: clone })).trim();

  fs.writeFileSync(path.join(clone, 'evil.txt'), 'no\n');
  await ok('git', ['add', '.'], { cwd: clone });
  await ok('git', ['commit', '-q', '-m', 'should not land'], { cwd: clone });
  const push = await sh('git', ['push', '-q', 'origin', 'main'], { cwd: clone, env: sshEnv(key) });
  assert.notEqual(push.code, 0, 'push with a read-only deploy key is refused');
  assert.match(push.out, /Deploy Key: .*flux-deploy is not authorized to write/, push.out);
  const remote = await ok('git', ['ls-remote', env.LAB_GITEA_REPO_URL!, 'refs/heads/main'], {
    env: sshEnv(env.LAB_GIT_WRITER_KEY),
  });
  assert.match(remote, new RegExp(`^${before}\\s`), 'main is unchanged');

  // and it is a key of fleet only
  const other = await createGiteaRepo('not-for-deploy', { dir });
  const elsewhere = await sh('git', ['ls-remote', other], { env: sshEnv(key) });
  assert.notEqual(elsewhere.code, 0, 'the deploy key reads no other repo');
});

test("an https clone with basic auth verifies Gitea's certificate against the lab CA", async () => {
  const https = new URL(env.LAB_GITEA_HTTPS_URL!);
  const withAuth = (user: string, password: string) => {
    const u = new URL(https);
    u.username = user;
    u.password = password;
    return u.toString();
  };
  const caEnv = cleanEnv({ GIT_SSL_CAINFO: env.LAB_CA_FILE });
  for (const [how, password] of [
    ['token', env.LAB_GITEA_TOKEN!],
    ['password', env.LAB_GITEA_PASSWORD!],
  ]) {
    const clone = path.join(work, `https-${how}`);
    await ok('git', ['clone', '-q', withAuth(GITEA_OWNER, password), clone], { env: caEnv });
    assert.equal(fs.readFileSync(path.join(clone, 'README.md'), 'utf8'), 'fleet\n', `cloned with the ${how}`);
  }
  // the certificate is checked: against the system's CAs only, git refuses it
  const untrusted = await sh('git', [
    'clone',
    '-q',
    withAuth(GITEA_OWNER, env.LAB_GITEA_TOKEN!),
    path.join(work, 'https-untrusted'),
  ]);
  assert.notEqual(untrusted.code, 0);
  assert.match(untrusted.out, /SSL certificate problem|certificate verif/i);
  // and the credentials are: fleet is private
  const noAuth = await sh('git', ['clone', '-q', https.toString(), path.join(work, 'https-anonymous')], { env: caEnv });
  assert.notEqual(noAuth.code, 0, 'an anonymous https clone of a private repo fails');
});

test('createGiteaRepo creates an empty repo the writer key pushes to, and returns its ssh URL', async () => {
  const url = await createGiteaRepo('made-by-test', { dir });
  assert.equal(url, env.LAB_GITEA_REPO_URL!.replace(/fleet\.git$/, 'made-by-test.git'));
  assert.equal((await ok('git', ['ls-remote', url], { env: sshEnv(env.LAB_GIT_WRITER_KEY) })).trim(), '', 'empty');
  const [src, head] = await commitIn('push-new', 'a.txt', 'a\n');
  await ok('git', ['push', '-q', url, 'main'], { cwd: src, env: sshEnv(env.LAB_GIT_WRITER_KEY) });
  assert.match(
    await ok('git', ['ls-remote', url, 'refs/heads/main'], { env: sshEnv(env.LAB_GIT_WRITER_KEY) }),
    new RegExp(`^${head}\\s`),
  );
  await assert.rejects(createGiteaRepo('made-by-test', { dir }), /HTTP 409/, 'a second repo of that name is refused');
});

test('labUp({ gitea: true }) on a lab that is up starts only Gitea again when it is gone, and is a no-op when it runs', async () => {
  const core = labPids(dir);
  const first = await labUp({ dir, gitea: true });
  assert.deepEqual(labPids(dir), core, 'nothing restarted');
  assert.equal(first.LAB_GITEA_TOKEN, env.LAB_GITEA_TOKEN);

  await stopProcesses(dir, ['gitea', 'gitea-https']);
  const again = await labUp({ dir, gitea: true, log });
  const now = labPids(dir);
  for (const n of ['etcd', 'mgmt-apiserver', 'target-apiserver', 'sshd'])
    assert.equal(now[n], core[n], `${n} kept running`);
  assert.ok(now.gitea && now.gitea !== core.gitea, 'a new Gitea runs');
  assert.deepEqual(readLabEnv(dir), again);
  assert.notEqual(again.LAB_GITEA_TOKEN, env.LAB_GITEA_TOKEN, 'a fresh Gitea, with a fresh token');
  assert.equal(again.LAB_GIT_URL, env.LAB_GIT_URL, 'the rest of the env is unchanged');
  const url = again.LAB_GITEA_REPO_URL!;
  assert.equal(
    (await ok('git', ['ls-remote', url], { env: sshEnv(env.LAB_GIT_WRITER_KEY, again.LAB_GITEA_KNOWN_HOSTS) })).trim(),
    '',
    'fleet is there, empty',
  );
  env = again;
});

test('lab:down stops Gitea and leaves no process of the lab behind', async () => {
  const pids = labPids(dir);
  assert.ok(pids.gitea && pids['gitea-https'], `Gitea runs: ${JSON.stringify(pids)}`);
  await ok(process.execPath, [CLI, 'down'], { env: { ...cleanEnv(), LAB_DIR: dir } });
  assert.equal(fs.existsSync(dir), false, 'lab dir removed');
  for (const [name, pid] of Object.entries(pids)) assert.ok(gone(pid), `${name} (${pid}) is gone`);
  const pgrep = await sh('pgrep', ['-af', dir]);
  assert.equal(pgrep.code, 1, `no process mentions ${dir}: ${pgrep.out}`);
});
