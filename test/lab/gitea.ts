/**
 * Gitea on demand (labs started with `gitea: true`): a real git host with an API, for tests of deploy-key
 * registration and of https remotes. Gitea 1.26 (built by build.ts with sqlite, only when asked for) runs detached
 * as `gitea` with its built-in SSH server on a port of its own; `gitea-https` (tls-proxy.ts) terminates TLS with a
 * certificate of the lab CA in front of Gitea's HTTP server. State in `<dir>/gitea/` (app.ini in
 * `custom/conf/`, sqlite and host keys in `data/`, repos in `repos/`).
 *
 * At start: the database is migrated, an admin user (GITEA_OWNER) is made with an API token of scope all, the
 * lab's writer key becomes that user's ssh key, the empty private repo `fleet` is created, and Gitea's host keys
 * are scanned into `<dir>/gitea/known_hosts`.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { giteaStaticRoot } from './build.ts';
import { labDir, readLabEnv, type LabEnv } from './env.ts';
import { httpRequest, type HttpResult } from './kube.ts';
import { makeServingCert } from './pki.ts';
import { childEnv, run, running, startDetached, startServer, stopProcesses, waitFor } from './process.ts';
import { gitSshCommand } from './git.ts';

/** GITEA_PROCESSES are the lab processes of Gitea. */
export const GITEA_PROCESSES = ['gitea', 'gitea-https'];
/** GITEA_OWNER is Gitea's admin user, owner of `fleet` (Gitea reserves the name `admin`). */
export const GITEA_OWNER = 'labadmin';
/** The user in Gitea's ssh URLs (its built-in server refuses other user names). */
const SSH_USER = 'git';

/** The LabEnv entries of a running Gitea. */
export type GiteaEnv = Required<
  Pick<
    LabEnv,
    | 'LAB_GITEA_URL'
    | 'LAB_GITEA_API'
    | 'LAB_GITEA_TOKEN'
    | 'LAB_GITEA_OWNER'
    | 'LAB_GITEA_PASSWORD'
    | 'LAB_GITEA_REPO_URL'
    | 'LAB_GITEA_HTTPS_URL'
    | 'LAB_GITEA_KNOWN_HOSTS'
  >
>;

interface Secrets {
  secretKey: string;
  internalToken: string;
}

function appIni(g: string, staticRoot: string, s: Secrets, http: number, ssh: number): string {
  return `; flux lab Gitea (test/lab/gitea.ts)
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
APP_NAME = flux lab
RUN_USER = root
RUN_MODE = prod
WORK_PATH = ${g}

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = ${http}
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:${http}/
LOCAL_ROOT_URL = http://127.0.0.1:${http}/
STATIC_ROOT_PATH = ${staticRoot}
APP_DATA_PATH = ${g}/data
OFFLINE_MODE = true
LFS_START_SERVER = false
DISABLE_SSH = false
START_SSH_SERVER = true
BUILTIN_SSH_SERVER_USER = ${SSH_USER}
SSH_DOMAIN = 127.0.0.1
SSH_LISTEN_HOST = 127.0.0.1
SSH_PORT = ${ssh}
SSH_LISTEN_PORT = ${ssh}
SSH_SERVER_HOST_KEYS = ssh/gitea.ed25519, ssh/gitea.ecdsa

[database]
DB_TYPE = sqlite3
PATH = ${g}/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = ${g}/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = ${s.secretKey}
INTERNAL_TOKEN = ${s.internalToken}
PASSWORD_HASH_ALGO = pbkdf2

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[actions]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[mailer]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = ${g}/log
`;
}

/** One Gitea API call (`apiPath` after /api/v1) with the lab's admin token; never throws on HTTP status. */
export async function giteaRequest(
  method: string,
  apiPath: string,
  body?: unknown,
  opts: { dir?: string } = {},
): Promise<HttpResult> {
  const env = readLabEnv(labDir(opts));
  if (!env.LAB_GITEA_API || !env.LAB_GITEA_TOKEN)
    throw new Error(`the lab in ${env.LAB_DIR} has no Gitea: start it with labUp({ gitea: true })`);
  return api(env.LAB_GITEA_API, env.LAB_GITEA_TOKEN, method, apiPath, body);
}

async function api(base: string, token: string, method: string, apiPath: string, body?: unknown): Promise<HttpResult> {
  const u = new URL(base + apiPath);
  // httpRequest sets no Authorization header: Gitea also takes the token as basic-auth password of its user
  u.username = GITEA_OWNER;
  u.password = token;
  return httpRequest(u.toString(), { method, body, timeoutMs: 30_000 });
}

async function apiOk(base: string, token: string, method: string, apiPath: string, body?: unknown): Promise<any> {
  const r = await api(base, token, method, apiPath, body);
  if (r.status < 200 || r.status > 299)
    throw new Error(`Gitea ${method} ${apiPath}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

/**
 * createGiteaRepo creates an empty private repo `name` owned by the admin user on the lab's Gitea (labUp with
 * `gitea: true`) and returns its ssh:// URL (the writer key may push to it).
 */
export async function createGiteaRepo(name: string, opts: { dir?: string } = {}): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.endsWith('.git')) throw new Error(`bad repo name: ${name}`);
  const r = await giteaRequest(
    'POST',
    '/user/repos',
    { name, private: true, auto_init: false, default_branch: 'main' },
    opts,
  );
  if (r.status !== 201) throw new Error(`Gitea: creating repo ${name}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  return r.json.ssh_url as string;
}

/** GITEA_REVIEWER is a second user of the lab's Gitea, who approves and merges pull requests (giteaReviewer). */
export const GITEA_REVIEWER = 'labreviewer';

/** MergeStyle is how Gitea merges a pull request (the `Do` of its merge API). */
export type MergeStyle = 'merge' | 'rebase' | 'rebase-merge' | 'squash' | 'fast-forward-only';

/** LabPull is a pull request as listPulls reports it, Gitea's `merged` kept apart from its state. */
export interface LabPull {
  number: number;
  state: 'open' | 'closed';
  merged: boolean;
  head: string;
  base: string;
  title: string;
}

/** giteaOk is giteaRequest that throws unless the answer's status is one of `expect` (default: any 2xx). */
async function giteaOk(
  method: string,
  apiPath: string,
  body: unknown,
  opts: { dir?: string },
  expect?: number[],
): Promise<any> {
  const r = await giteaRequest(method, apiPath, body, opts);
  const good = expect ? expect.includes(r.status) : r.status >= 200 && r.status < 300;
  if (!good) throw new Error(`Gitea ${method} ${apiPath}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

/** repoPath is the API path of the admin user's repo `repo`. */
function repoPath(repo: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(repo)) throw new Error(`bad repo name: ${repo}`);
  return `/repos/${GITEA_OWNER}/${repo}`;
}

/**
 * protectBranch protects `branch` of the admin user's repo `repo` (Gitea's branch_protections API): nobody pushes to
 * it but the users in `pushWhitelist` (none: every change comes through a pull request), and a pull request into it
 * needs `requiredApprovals` approvals (default 0). Admins are held to the rule too (no force merge).
 */
export async function protectBranch(
  repo: string,
  branch: string,
  rule: { requiredApprovals?: number; pushWhitelist?: string[] } = {},
  opts: { dir?: string } = {},
): Promise<void> {
  const whitelist = rule.pushWhitelist ?? [];
  await giteaOk(
    'POST',
    `${repoPath(repo)}/branch_protections`,
    {
      rule_name: branch,
      enable_push: whitelist.length > 0,
      enable_push_whitelist: whitelist.length > 0,
      push_whitelist_usernames: whitelist,
      required_approvals: rule.requiredApprovals ?? 0,
      block_admin_merge_override: true,
    },
    opts,
    [201],
  );
}

/**
 * giteaReviewer makes GITEA_REVIEWER (once) and a collaborator with write access on `repo`, so that its approval
 * counts, and returns its name. It has no password or token of its own: the lab acts as it through the admin token's
 * `sudo`.
 */
export async function giteaReviewer(repo: string, opts: { dir?: string } = {}): Promise<string> {
  await giteaOk(
    'POST',
    '/admin/users',
    {
      username: GITEA_REVIEWER,
      email: `${GITEA_REVIEWER}@lab.invalid`,
      password: randomBytes(16).toString('hex'),
      must_change_password: false,
    },
    opts,
    [201, 422],
  );
  await giteaOk('PUT', `${repoPath(repo)}/collaborators/${GITEA_REVIEWER}`, { permission: 'write' }, opts, [204]);
  return GITEA_REVIEWER;
}

/** approvePull approves pull request `number` of `repo` as GITEA_REVIEWER (made if needed). */
export async function approvePull(repo: string, number: number, opts: { dir?: string } = {}): Promise<void> {
  await giteaReviewer(repo, opts);
  await giteaOk(
    'POST',
    `${repoPath(repo)}/pulls/${number}/reviews?sudo=${GITEA_REVIEWER}`,
    { event: 'APPROVED', body: 'Looks good to the lab.' },
    opts,
    [200],
  );
}

/**
 * mergePull merges pull request `number` of `repo` the way a reviewer does it in the web UI: GITEA_REVIEWER approves
 * it, then merges it with `style` (default a merge commit) through the API. Throws with Gitea's answer when Gitea
 * refuses (a required check, a conflict).
 */
export async function mergePull(
  repo: string,
  number: number,
  style: MergeStyle = 'merge',
  opts: { dir?: string } = {},
): Promise<void> {
  await approvePull(repo, number, opts);
  // Gitea checks a new pull request's mergeability in the background and refuses a merge (405) until it has.
  for (let i = 0; !(await giteaOk('GET', `${repoPath(repo)}/pulls/${number}`, undefined, opts)).mergeable; i++) {
    if (i >= 300) throw new Error(`Gitea: pull request #${number} of ${repo} never became mergeable`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await giteaOk('POST', `${repoPath(repo)}/pulls/${number}/merge?sudo=${GITEA_REVIEWER}`, { Do: style }, opts, [200]);
}

/** closePull closes pull request `number` of `repo` unmerged, as the admin user. */
export async function closePull(repo: string, number: number, opts: { dir?: string } = {}): Promise<void> {
  await giteaOk('PATCH', `${repoPath(repo)}/pulls/${number}`, { state: 'closed' }, opts, [201]);
}

/** listPulls lists every pull request of `repo`, open and closed, newest first. */
export async function listPulls(repo: string, opts: { dir?: string } = {}): Promise<LabPull[]> {
  const out: LabPull[] = [];
  for (let page = 1; page <= 100; page++) {
    const list: any[] = await giteaOk(
      'GET',
      `${repoPath(repo)}/pulls?state=all&limit=50&page=${page}`,
      undefined,
      opts,
    );
    out.push(
      ...list.map((p) => ({
        number: p.number,
        state: p.state,
        merged: p.merged === true,
        head: p.head?.ref,
        base: p.base?.ref,
        title: p.title,
      })),
    );
    if (list.length < 50) break;
  }
  return out;
}

/** giteaRunning tells whether the lab in `dir` runs Gitea (both its processes) and says so in its env. */
export function giteaRunning(dir: string, env: LabEnv): boolean {
  return env.LAB_GITEA_API !== undefined && GITEA_PROCESSES.every((n) => running(dir, n) !== undefined);
}

/**
 * startGitea starts Gitea for the lab in `dir` (pki made, writer key at `writer`): binary `gitea` (cached build),
 * `giteaBin`; see the module comment. Returns the env entries to add to the lab's env.
 */
export async function startGitea(
  dir: string,
  giteaBin: string,
  writer: string,
  log: (line: string) => void,
): Promise<GiteaEnv> {
  const t0 = Date.now();
  const g = path.join(dir, 'gitea');
  await stopProcesses(dir, GITEA_PROCESSES); // a half-started one from an earlier attempt
  fs.rmSync(g, { recursive: true, force: true });
  for (const sub of ['custom/conf', 'data/ssh', 'repos', 'log'])
    fs.mkdirSync(path.join(g, sub), { recursive: true, mode: 0o700 });
  const bin = path.join(dir, 'bin', 'gitea');
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  const tmpLink = `${bin}.${process.pid}.tmp`;
  fs.rmSync(tmpLink, { force: true });
  fs.symlinkSync(path.resolve(giteaBin), tmpLink);
  fs.renameSync(tmpLink, bin);
  const hostKeys = path.join(g, 'data', 'ssh');
  const pki = path.join(dir, 'pki');
  const [staticRoot] = await Promise.all([
    giteaStaticRoot(),
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-gitea', '-f', path.join(hostKeys, 'gitea.ed25519')]),
    run('ssh-keygen', [
      '-q',
      '-t',
      'ecdsa',
      '-b',
      '256',
      '-N',
      '',
      '-C',
      'lab-gitea',
      '-f',
      path.join(hostKeys, 'gitea.ecdsa'),
    ]),
    makeServingCert(pki, 'gitea', 'flux-lab-gitea'),
  ]);
  const secrets: Secrets = {
    secretKey: randomBytes(32).toString('hex'),
    internalToken: randomBytes(48).toString('hex'),
  };
  const ini = path.join(g, 'custom', 'conf', 'app.ini');
  const gitea = (args: string[]) =>
    run(bin, ['--config', ini, '--work-path', g, ...args], { cwd: g, timeoutMs: 120_000 });
  // database and admin user first, with the CLI (no ports needed yet)
  fs.writeFileSync(ini, appIni(g, staticRoot, secrets, 0, 0), { mode: 0o600 });
  await gitea(['migrate']);
  const password = randomBytes(12).toString('hex');
  const created = await gitea([
    'admin',
    'user',
    'create',
    '--admin',
    '--username',
    GITEA_OWNER,
    '--password',
    password,
    '--email',
    `${GITEA_OWNER}@lab.invalid`,
    '--must-change-password=false',
    '--access-token',
    '--access-token-name',
    'lab',
    '--access-token-scopes',
    'all',
  ]);
  const token = /Access token was successfully created\.*\s*([0-9a-f]{40})/.exec(created)?.[1];
  if (!token) throw new Error(`gitea admin user create printed no access token: ${created.slice(0, 300)}`);
  log(`gitea: database and admin user ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  const [http, ssh] = await startServer(dir, 'gitea', {
    ports: 2,
    start: ([h, s]) => {
      fs.writeFileSync(ini, appIni(g, staticRoot, secrets, h, s), { mode: 0o600 });
      startDetached(
        dir,
        'gitea',
        bin,
        ['--config', ini, '--work-path', g, 'web'],
        childEnv({ HOME: path.join(g, 'data') }),
      );
    },
    ready: async ([h]) =>
      (await httpRequest(`http://127.0.0.1:${h}/api/healthz`, { timeoutMs: 2000 }).catch(() => undefined))?.status ===
      200,
    timeoutMs: 120_000,
    intervalMs: 200,
    log,
  });
  const base = `http://127.0.0.1:${http}`;
  const apiBase = `${base}/api/v1`;
  log(`gitea: up at ${base}, ssh on ${ssh} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  const httpsCert = path.join(pki, 'gitea.crt');
  const ca = fs.readFileSync(path.join(pki, 'ca.crt'));
  const [[https]] = await Promise.all([
    startServer(dir, 'gitea-https', {
      ports: 1,
      start: ([p]) => {
        startDetached(dir, 'gitea-https', process.execPath, [
          path.join(import.meta.dirname, 'tls-proxy.ts'),
          '--listen',
          String(p),
          '--to',
          String(http),
          '--cert',
          httpsCert,
          '--key',
          path.join(pki, 'gitea.key'),
        ]);
      },
      ready: async ([p]) =>
        (await httpRequest(`https://127.0.0.1:${p}/api/healthz`, { ca, timeoutMs: 2000 }).catch(() => undefined))
          ?.status === 200,
      timeoutMs: 30_000,
      intervalMs: 100,
      log,
    }),
    apiOk(apiBase, token, 'POST', '/user/keys', {
      title: 'lab-writer',
      key: fs.readFileSync(`${writer}.pub`, 'utf8').trim(),
      read_only: false,
    }),
  ]);
  const repo = await apiOk(apiBase, token, 'POST', '/user/repos', {
    name: 'fleet',
    private: true,
    auto_init: false,
    default_branch: 'main',
  });
  const repoUrl = repo.ssh_url as string;
  const expected = `ssh://${SSH_USER}@127.0.0.1:${ssh}/${GITEA_OWNER}/fleet.git`;
  if (repoUrl !== expected) throw new Error(`Gitea gave fleet the ssh URL ${repoUrl}, not ${expected}`);

  // host keys as a client sees them; they must be the ones made above
  const knownHosts = path.join(g, 'known_hosts');
  const scanned = (await run('ssh-keyscan', ['-T', '10', '-t', 'ed25519,ecdsa', '-p', String(ssh), '127.0.0.1']))
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .sort();
  const ours = ['ed25519', 'ecdsa'].map((t) =>
    fs
      .readFileSync(path.join(hostKeys, `gitea.${t}.pub`), 'utf8')
      .trim()
      .split(/\s+/)
      .slice(0, 2)
      .join(' '),
  );
  if (scanned.length !== ours.length || !ours.every((k) => scanned.includes(`[127.0.0.1]:${ssh} ${k}`))) {
    throw new Error(`ssh-keyscan of Gitea found other host keys than its own:\n${scanned.join('\n')}`);
  }
  fs.writeFileSync(knownHosts, scanned.join('\n') + '\n');
  await waitFor(
    'git ls-remote of fleet over Gitea ssh',
    async () => {
      await run('git', ['ls-remote', repoUrl], {
        env: childEnv({ GIT_SSH_COMMAND: gitSshCommand(writer, knownHosts) }),
        timeoutMs: 15_000,
      });
      return true;
    },
    { timeoutMs: 30_000, dir, proc: 'gitea' },
  );
  log(`gitea: ready, fleet at ${repoUrl}, https on ${https} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return {
    LAB_GITEA_URL: base,
    LAB_GITEA_API: apiBase,
    LAB_GITEA_TOKEN: token,
    LAB_GITEA_OWNER: GITEA_OWNER,
    LAB_GITEA_PASSWORD: password,
    LAB_GITEA_REPO_URL: repoUrl,
    LAB_GITEA_HTTPS_URL: `https://127.0.0.1:${https}/${GITEA_OWNER}/fleet.git`,
    LAB_GITEA_KNOWN_HOSTS: knownHosts,
  };
}
