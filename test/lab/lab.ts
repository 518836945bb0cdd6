/**
 * The lab: real components as local processes on 127.0.0.1, no Docker, no network.
 *
 * - one etcd serving two kube-apiservers with distinct `--etcd-prefix`: the *management* and the *target* cluster
 *   (secure serving, certificates made at run time with openssl, RBAC, admin client certificate in
 *   `.lab/mgmt.kubeconfig` / `.lab/target.kubeconfig`, TokenRequest enabled);
 * - one kube-controller-manager per cluster with only the namespace, garbage-collector and service-account
 *   controllers, so deleted namespaces finalize, owner references are collected and ServiceAccounts get tokens;
 * - an OpenSSH sshd (own config, host keys and port) serving bare repos under `.lab/git/` through the git-only
 *   system user `fluxlab` (shell git-shell). Each authorized key has a forced command (`lab-git rw|ro <git root>`,
 *   installed in `~fluxlab/git-shell-commands/`) that allows only git-upload-pack/-archive, plus git-receive-pack
 *   for `rw` keys, on repos inside that lab's `.lab/git/`;
 * - on demand (`fluxStart`), Flux's source-controller and kustomize-controller out-of-cluster against the target,
 *   and a small stand-in kubelet (kubelet.ts) that reports their Deployments available.
 *
 * Everything runs detached (it outlives the node process that started it); PIDs are in `.lab/pids/`, logs in
 * `.lab/logs/`, the environment in `.lab/env` (shell-sourceable). Ports are picked free, so labs in different
 * dirs run side by side. Needs root (creates the `fluxlab` user, runs sshd).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { httpRequest, kubeRequest, labCreds, sleep } from './kube.ts';

const execFileP = promisify(execFile);

/** The project root: two levels up from test/lab. */
export const PROJECT_ROOT = path.resolve(import.meta.dirname, '..', '..');
/** Where the lab lives unless told otherwise: `<project root>/.lab`. */
export const DEFAULT_LAB_DIR = path.join(PROJECT_ROOT, '.lab');
/** The git-only system account that owns the lab's repos and that ssh logs into. */
export const GIT_USER = 'fluxlab';
/** The binaries the lab runs; `LAB_BIN` holds a link to each. */
export const BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kubectl',
  'source-controller',
  'kustomize-controller',
] as const;
export type BinaryName = (typeof BINARIES)[number];

const SSHD = '/usr/sbin/sshd';
const GIT_SHELL = '/usr/bin/git-shell';
const FORCED_COMMAND = 'lab-git';
const CORE = ['etcd', 'mgmt-apiserver', 'target-apiserver', 'mgmt-controller-manager', 'target-controller-manager', 'sshd'];
const FLUX = ['source-controller', 'kustomize-controller', 'kubelet'];
/** Flux CRDs that must be established before the controllers can start. */
const FLUX_CRDS = [
  'buckets.source.toolkit.fluxcd.io',
  'externalartifacts.source.toolkit.fluxcd.io',
  'gitrepositories.source.toolkit.fluxcd.io',
  'helmcharts.source.toolkit.fluxcd.io',
  'helmrepositories.source.toolkit.fluxcd.io',
  'ocirepositories.source.toolkit.fluxcd.io',
  'kustomizations.kustomize.toolkit.fluxcd.io',
];

/** Options shared by the lab functions. */
export interface LabOptions {
  /** The lab's state folder; default `<project root>/.lab`. Must be an absolute-able path without spaces. */
  dir?: string;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

/** The contents of `.lab/env`. */
export interface LabEnv {
  /** The lab's state folder (absolute). */
  LAB_DIR: string;
  /** Folder with links to all six binaries (etcd, kube-apiserver, kube-controller-manager, kubectl, source-controller, kustomize-controller). */
  LAB_BIN: string;
  /** Folder with every component's log. */
  LAB_LOGS: string;
  /** Admin kubeconfig of the management cluster. */
  LAB_MGMT_KUBECONFIG: string;
  /** Admin kubeconfig of the target cluster. */
  LAB_TARGET_KUBECONFIG: string;
  /** https://127.0.0.1:PORT of the management API server. */
  LAB_MGMT_SERVER: string;
  /** https://127.0.0.1:PORT of the target API server. */
  LAB_TARGET_SERVER: string;
  /** CA that signed both API servers' serving certificates. */
  LAB_CA_FILE: string;
  /** http://127.0.0.1:PORT of etcd. */
  LAB_ETCD_URL: string;
  /** ssh:// URL of the (initially empty) gitops repo, e.g. ssh://fluxlab@127.0.0.1:PORT/gitops.git. */
  LAB_GIT_URL: string;
  /** ssh://fluxlab@127.0.0.1:PORT — append `/<name>.git` for repos made with createRepo. */
  LAB_GIT_BASE_URL: string;
  LAB_GIT_HOST: string;
  LAB_GIT_PORT: string;
  LAB_GIT_USER: string;
  /** Folder holding the bare repos. */
  LAB_GIT_ROOT: string;
  /** Private key with read-write access to every lab repo. */
  LAB_GIT_WRITER_KEY: string;
  LAB_GIT_WRITER_PUBKEY: string;
  /** known_hosts with the lab sshd's host keys (`[127.0.0.1]:PORT type key`). */
  LAB_GIT_KNOWN_HOSTS: string;
  /** A GIT_SSH_COMMAND that uses the writer key and checks the host key strictly. */
  LAB_GIT_SSH_COMMAND: string;
}

const ENV_KEYS: (keyof LabEnv)[] = [
  'LAB_DIR',
  'LAB_BIN',
  'LAB_LOGS',
  'LAB_MGMT_KUBECONFIG',
  'LAB_TARGET_KUBECONFIG',
  'LAB_MGMT_SERVER',
  'LAB_TARGET_SERVER',
  'LAB_CA_FILE',
  'LAB_ETCD_URL',
  'LAB_GIT_URL',
  'LAB_GIT_BASE_URL',
  'LAB_GIT_HOST',
  'LAB_GIT_PORT',
  'LAB_GIT_USER',
  'LAB_GIT_ROOT',
  'LAB_GIT_WRITER_KEY',
  'LAB_GIT_WRITER_PUBKEY',
  'LAB_GIT_KNOWN_HOSTS',
  'LAB_GIT_SSH_COMMAND',
];

/** What `fluxStart` started. */
export interface FluxInfo {
  /** host:port where source-controller serves artifacts. */
  storageAddr: string;
  sourceControllerHealth: string;
  kustomizeControllerHealth: string;
}

// ---------------------------------------------------------------------------------------------------------------
// small helpers

function labDir(opts?: { dir?: string }): string {
  const dir = path.resolve(opts?.dir ?? DEFAULT_LAB_DIR);
  if (!/^[A-Za-z0-9._\/+@-]+$/.test(dir)) throw new Error(`lab dir must be a plain path (no spaces or quotes): ${dir}`);
  return dir;
}

function logger(opts?: LabOptions): (line: string) => void {
  return opts?.log ?? (() => {});
}

/** The environment for child processes: ours minus ambient git and kube settings that would redirect them. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('GIT_') || k === 'KUBECONFIG' || k.startsWith('SSH_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? childEnv(),
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err: any) {
    const detail = `${err.stderr ?? ''}${err.stdout ?? ''}`.trim().split('\n').slice(-5).join(' | ');
    throw new Error(`${cmd} ${args.join(' ')} failed: ${detail || err.message}`);
  }
}

/** Free TCP ports on 127.0.0.1 (bound together so they differ, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise<void>((res, rej) => {
        s.once('error', rej);
        s.listen(0, '127.0.0.1', () => res());
      });
      servers.push(s);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Whether the command line mentions the lab dir as a path (`<dir>/…` or `<dir>` alone). */
function mentions(line: string, dir: string): boolean {
  return line.includes(dir + '/') || line.split(/[\s=]/).includes(dir);
}

/** A live process of this lab (its command line mentions the lab dir: guards against PID reuse). */
function ours(pid: number, dir: string): boolean {
  return alive(pid) && mentions(cmdline(pid), dir);
}

function readPid(dir: string, name: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'pids', name), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function running(dir: string, name: string): number | undefined {
  const pid = readPid(dir, name);
  return pid !== undefined && ours(pid, dir) ? pid : undefined;
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Start a detached process (own session, stdio to `.lab/logs/<name>.log`), PID in `.lab/pids/<name>`. */
function startDetached(dir: string, name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = childEnv()): number {
  const logFile = path.join(dir, 'logs', `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  try {
    fs.writeSync(fd, `--- ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env, cwd: dir });
    child.on('error', (err) => fs.appendFileSync(logFile, `spawn failed: ${err.message}\n`));
    child.unref();
    if (!child.pid) throw new Error(`could not start ${name} (${cmd}); see ${logFile}`);
    fs.writeFileSync(path.join(dir, 'pids', name), `${child.pid}\n`);
    return child.pid;
  } finally {
    fs.closeSync(fd);
  }
}

/** Poll `probe` until it returns true; fail early when the watched process died, with its log's tail. */
async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; dir: string; proc?: string; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (opts.proc) {
      const pid = readPid(opts.dir, opts.proc);
      if (pid === undefined || !alive(pid)) {
        throw new Error(`${opts.proc} exited while waiting for ${what}; log ${path.join(opts.dir, 'logs', opts.proc + '.log')}:\n${tail(path.join(opts.dir, 'logs', opts.proc + '.log'))}`);
      }
    }
    if (Date.now() > deadline) {
      const logHint = opts.proc ? `\n${tail(path.join(opts.dir, 'logs', opts.proc + '.log'))}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}${logHint}`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/** Stop named lab processes: SIGTERM (to the process and its group), SIGKILL after `graceMs`, wait for exit. */
async function stopProcesses(dir: string, names: string[], graceMs = 5000): Promise<void> {
  const pids: { name: string; pid: number }[] = [];
  for (const name of names) {
    const pid = running(dir, name);
    if (pid !== undefined) pids.push({ name, pid });
  }
  const signal = (pid: number, sig: NodeJS.Signals) => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, sig);
      } catch {
        /* gone already, or no group */
      }
    }
  };
  for (const { pid } of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some((p) => alive(p.pid)) && Date.now() < deadline) await sleep(50);
  for (const { pid } of pids) if (alive(pid)) signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (pids.some((p) => alive(p.pid)) && Date.now() < killDeadline) await sleep(50);
  const left = pids.filter((p) => alive(p.pid));
  if (left.length) throw new Error(`lab processes did not exit: ${left.map((p) => `${p.name}=${p.pid}`).join(', ')}`);
  for (const name of names) fs.rmSync(path.join(dir, 'pids', name), { force: true });
}

/** Processes not recorded in `.lab/pids` whose command line still mentions the lab dir (strays). */
function strays(dir: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid === process.ppid) continue;
    if (ours(pid, dir)) out.push(pid);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// env file

function quoteEnv(v: string): string {
  return /^[A-Za-z0-9_.\/:@+,=-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

function writeLabEnv(dir: string, env: LabEnv): void {
  const lines = ['# flux lab environment (test/lab/lab.ts); shell-sourceable'];
  for (const k of ENV_KEYS) lines.push(`${k}=${quoteEnv(env[k])}`);
  const tmp = path.join(dir, 'env.tmp');
  fs.writeFileSync(tmp, lines.join('\n') + '\n');
  fs.renameSync(tmp, path.join(dir, 'env'));
}

/** Read `<dir>/env` (default dir `<project root>/.lab`); throws when the lab is not up. */
export function readLabEnv(dir?: string): LabEnv {
  const d = labDir({ dir });
  const file = path.join(d, 'env');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new Error(`no lab environment at ${file}: run \`npm run lab:up\` (or labUp()) first`);
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2];
    if (v.startsWith("'")) v = v.slice(1, -1).replace(/'\\''/g, "'");
    env[m[1]] = v;
  }
  return env as unknown as LabEnv;
}

// ---------------------------------------------------------------------------------------------------------------
// binaries

/** Build (or find in the cache) the six binaries and link them into `<dir>/bin`. Returns that folder. */
export async function ensureBinaries(opts: LabOptions = {}): Promise<string> {
  const dir = labDir(opts);
  const log = logger(opts);
  const mod = await import('./build.ts');
  const paths: Record<string, string> = await mod.ensureLabBinaries({ log });
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const name of BINARIES) {
    const target = paths[name];
    if (!target || !fs.existsSync(target)) throw new Error(`ensureLabBinaries gave no ${name} (${target})`);
    const link = path.join(bin, name);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.resolve(target), link);
  }
  return bin;
}

// ---------------------------------------------------------------------------------------------------------------
// certificates and kubeconfigs

async function makePki(pki: string): Promise<void> {
  fs.mkdirSync(pki, { recursive: true, mode: 0o700 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const o = { cwd: pki };
  await run('openssl', ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=flux-lab-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], o);
  const leaves: [string, string, string][] = [
    ['serving', '/CN=flux-lab-apiserver',
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n'],
    ['admin', '/O=system:masters/CN=lab-admin',
      'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n'],
  ];
  await Promise.all(leaves.map(async ([name, subj, ext]) => {
    await run('openssl', ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj], o);
    fs.writeFileSync(path.join(pki, `${name}.ext`), ext);
    await run('openssl', ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial',
      '0x' + Math.floor(Math.random() * 2 ** 48).toString(16), '-days', '3650', '-extfile', `${name}.ext`, '-out', `${name}.crt`], o);
  }));
  // one service-account key pair per cluster, so tokens of one cluster are worthless in the other
  await Promise.all(['mgmt', 'target'].map(async (c) => {
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', `${c}-sa.key`], o);
    await run('openssl', ['pkey', '-in', `${c}-sa.key`, '-pubout', '-out', `${c}-sa.pub`], o);
  }));
  for (const f of fs.readdirSync(pki)) if (f.endsWith('.key')) fs.chmodSync(path.join(pki, f), 0o600);
}

function kubeconfig(name: string, server: string, pki: string): string {
  const b64 = (f: string) => fs.readFileSync(path.join(pki, f)).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64('ca.crt')}`,
    'users:',
    `- name: ${name}-admin`,
    '  user:',
    `    client-certificate-data: ${b64('admin.crt')}`,
    `    client-key-data: ${b64('admin.key')}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}-admin`,
    `current-context: ${name}`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// git over ssh

/** The forced command of every lab key, installed as `~fluxlab/git-shell-commands/lab-git` (git-shell runs only
 * commands from there). Arguments: `rw|ro` and the lab's git root; the client's request is in SSH_ORIGINAL_COMMAND. */
const WRAPPER = `#!/bin/sh
# Forced command of the flux lab's ssh keys (test/lab/lab.ts): lab-git rw|ro <git root>
# Allows only git-upload-pack / git-upload-archive, plus git-receive-pack for rw keys, on repos under <git root>.
set -u
access="\${1:-}"; root="\${2:-}"
deny() { echo "lab-git: $*" >&2; exit 128; }
case "$access" in rw|ro) ;; *) deny "bad access mode";; esac
case "$root" in /*) ;; *) deny "bad git root";; esac
cmd="\${SSH_ORIGINAL_COMMAND:-}"
case "$cmd" in
  "git-upload-pack "*|"git-upload-archive "*) ;;
  "git-receive-pack "*) [ "$access" = rw ] || deny "read-only key: push refused" ;;
  "") deny "no interactive login; git only" ;;
  *) deny "only git fetch/push/archive is allowed" ;;
esac
verb="\${cmd%% *}"
repo="\${cmd#* }"
case "$repo" in "'"*"'") repo="\${repo#\\'}"; repo="\${repo%\\'}" ;; esac
case "$repo" in *..*|"") deny "bad repository path" ;; esac
case "$repo" in *[!A-Za-z0-9._/-]*) deny "bad repository path" ;; esac
repo="\${repo#/}"
[ -d "$root/$repo" ] || deny "no such repository: /$repo"
exec git "\${verb#git-}" "$root/$repo"
`;

async function ensureGitUser(log: (l: string) => void): Promise<string> {
  let entry = (await run('getent', ['passwd', GIT_USER]).catch(() => '')).trim();
  if (!entry) {
    log(`creating system user ${GIT_USER} (shell ${GIT_SHELL})`);
    await run('useradd', ['--system', '--user-group', '--create-home', '--home-dir', `/var/lib/${GIT_USER}`, '--shell', GIT_SHELL, GIT_USER]);
    entry = (await run('getent', ['passwd', GIT_USER])).trim();
  }
  const fields = entry.split(':');
  const home = fields[5];
  if (fields[6] !== GIT_SHELL) await run('usermod', ['-s', GIT_SHELL, GIT_USER]);
  const shadow = (await run('getent', ['shadow', GIT_USER]).catch(() => '')).split(':')[1] ?? '';
  if (shadow.startsWith('!')) await run('usermod', ['-p', '*', GIT_USER]); // locked accounts cannot log in even by key
  const cmdDir = path.join(home, 'git-shell-commands');
  fs.mkdirSync(cmdDir, { recursive: true, mode: 0o755 });
  const wrapper = path.join(cmdDir, FORCED_COMMAND);
  let current = '';
  try {
    current = fs.readFileSync(wrapper, 'utf8');
  } catch {
    /* missing */
  }
  if (current !== WRAPPER) {
    fs.writeFileSync(wrapper + '.tmp', WRAPPER, { mode: 0o755 });
    fs.renameSync(wrapper + '.tmp', wrapper);
  }
  return home;
}

function chownR(p: string, uid: number, gid: number): void {
  fs.chownSync(p, uid, gid);
  if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chownR(path.join(p, e), uid, gid);
}

/** The key blob (`type base64`) of a public-key line, or throws. */
function parsePublicKey(text: string): { blob: string; line: string } {
  const line = text.trim().split('\n')[0].trim();
  const m = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-[A-Za-z0-9@._-]+)\s+([A-Za-z0-9+\/]+={0,3})(\s+.*)?$/.exec(line);
  if (!m) throw new Error(`not an OpenSSH public key: ${line.slice(0, 60)}`);
  return { blob: `${m[1]} ${m[2]}`, line: `${m[1]} ${m[2]}${(m[3] ?? '').replace(/[\r"]/g, '')}` };
}

/**
 * Authorize an ssh public key on the lab's git server, like registering a deploy key on a git host:
 * `ro` may fetch/clone any lab repo, `rw` may also push. `key` is a path to a `.pub` file or the key line itself.
 * Authorizing a key again replaces its earlier access.
 */
export function authorizeKey(key: string, opts: { access: 'ro' | 'rw'; dir?: string }): void {
  const dir = labDir(opts);
  if (opts.access !== 'ro' && opts.access !== 'rw') throw new Error(`access must be ro or rw, not ${opts.access}`);
  const text = /^(ssh-|ecdsa-|sk-)/.test(key.trim()) ? key : fs.readFileSync(key, 'utf8');
  const { blob, line } = parsePublicKey(text);
  const file = path.join(dir, 'ssh', 'authorized_keys');
  const gitRoot = path.join(dir, 'git');
  let existing: string[] = [];
  try {
    existing = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() && !l.includes(` ${blob}`));
  } catch {
    if (!fs.existsSync(path.join(dir, 'ssh'))) throw new Error(`no lab at ${dir}: run labUp first`);
  }
  existing.push(`restrict,command="${FORCED_COMMAND} ${opts.access} ${gitRoot}" ${line}`);
  fs.writeFileSync(file + '.tmp', existing.join('\n') + '\n', { mode: 0o644 });
  fs.renameSync(file + '.tmp', file);
}

/** Create an empty bare repo `<name>.git` (branch main) in the lab's git server; returns its ssh:// URL. */
export function createRepo(name: string, opts: { dir?: string } = {}): string {
  const dir = labDir(opts);
  const base = name.endsWith('.git') ? name.slice(0, -4) : name;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(base) || base.includes('..')) throw new Error(`bad repo name: ${name}`);
  const repo = path.join(dir, 'git', `${base}.git`);
  if (fs.existsSync(repo)) throw new Error(`repo exists: ${repo}`);
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', repo], { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  const [, , uid, gid] = execFileSync('getent', ['passwd', GIT_USER], { encoding: 'utf8' }).trim().split(':');
  chownR(repo, Number(uid), Number(gid));
  const env = readLabEnvOrNull(dir);
  const port = env?.LAB_GIT_PORT ?? fs.readFileSync(path.join(dir, 'ssh', 'port'), 'utf8').trim();
  return `ssh://${GIT_USER}@127.0.0.1:${port}/${base}.git`;
}

function readLabEnvOrNull(dir: string): LabEnv | null {
  try {
    return readLabEnv(dir);
  } catch {
    return null;
  }
}

/** A GIT_SSH_COMMAND for `key` against the lab's known_hosts, strict host key checking, no agent, no config. */
export function gitSshCommand(key: string, knownHosts: string): string {
  return `ssh -F /dev/null -i ${key} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile=${knownHosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes`;
}

function sshdConfig(dir: string, port: number): string {
  const ssh = path.join(dir, 'ssh');
  return [
    '# flux lab sshd (test/lab/lab.ts): git only, key auth only',
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${ssh}/ssh_host_ed25519_key`,
    `HostKey ${ssh}/ssh_host_ecdsa_key`,
    `PidFile ${ssh}/sshd.pid`,
    `AuthorizedKeysFile ${ssh}/authorized_keys`,
    `AllowUsers ${GIT_USER}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'HostbasedAuthentication no',
    'PermitRootLogin no',
    'PermitEmptyPasswords no',
    'UsePAM no',
    'StrictModes no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PermitTunnel no',
    'PermitTTY no',
    'PrintMotd no',
    'AcceptEnv GIT_PROTOCOL',
    'MaxStartups 100:30:200',
    'LogLevel INFO',
    '',
  ].join('\n');
}

async function gitLsRemote(url: string, key: string, knownHosts: string): Promise<string> {
  return run('git', ['ls-remote', url], { env: childEnv({ GIT_SSH_COMMAND: gitSshCommand(key, knownHosts) }), timeoutMs: 15_000 });
}

// ---------------------------------------------------------------------------------------------------------------
// up / down

/** A lab's state dir (possibly half-made): has pids/, env or sshd config. */
function looksLikeLab(dir: string): boolean {
  return ['pids', 'env', 'ssh'].some((e) => fs.existsSync(path.join(dir, e)));
}

async function healthyLab(dir: string): Promise<LabEnv | null> {
  const env = readLabEnvOrNull(dir);
  if (!env) return null;
  if (CORE.some((n) => running(dir, n) === undefined)) return null;
  try {
    for (const server of [env.LAB_MGMT_SERVER, env.LAB_TARGET_SERVER]) {
      const r = await kubeRequest(labCreds(dir, server), 'GET', '/readyz');
      if (r.status !== 200) return null;
    }
  } catch {
    return null;
  }
  return env;
}

/**
 * Start the lab in `opts.dir` (default `<project root>/.lab`): builds missing binaries, makes certificates and
 * keys, starts etcd, both API servers, both controller managers and sshd detached, waits until each answers
 * (etcd /health, API server /readyz, controller manager /healthz, `git ls-remote` over ssh), then writes
 * `<dir>/env`. Returns the env. On a lab that is already up this is a no-op returning its env; a broken or
 * half-started lab in that dir is stopped and started afresh.
 */
export async function labUp(opts: LabOptions = {}): Promise<LabEnv> {
  const dir = labDir(opts);
  const log = logger(opts);
  const existing = await healthyLab(dir);
  if (existing) {
    log(`lab already up in ${dir}`);
    return existing;
  }
  if (looksLikeLab(dir)) {
    log(`cleaning a stale lab in ${dir}`);
    await labDown({ dir, log });
  }
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (it creates the fluxlab user and runs sshd)');
  for (const [file, pkg] of [[SSHD, 'openssh-server'], [GIT_SHELL, 'git'], ['/usr/bin/ssh-keygen', 'openssh-client'], ['/usr/bin/openssl', 'openssl']]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: apt-get install -y ${pkg}`);
  }
  const t0 = Date.now();
  for (const sub of ['pids', 'logs', 'pki', 'ssh', 'git', 'keys', 'flux', 'mgmt', 'target']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  // the git user reads authorized_keys and the repos under this dir: it must be able to traverse every parent
  fs.chmodSync(dir, 0o755);
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    if ((fs.statSync(p).mode & 0o001) === 0) throw new Error(`${p} is not traversable by the ${GIT_USER} user (needs o+x)`);
    if (p === path.dirname(p)) break;
  }
  fs.chmodSync(path.join(dir, 'pki'), 0o700);
  fs.chmodSync(path.join(dir, 'keys'), 0o700);

  try {
    // binaries, keys and certificates (independent, in parallel)
    log('binaries: ensuring (a cold build takes long)');
    const sshDir = path.join(dir, 'ssh');
    const writer = path.join(dir, 'keys', 'writer');
    const [bin] = await Promise.all([
      ensureBinaries({ dir, log }),
      makePki(path.join(dir, 'pki')),
      ensureGitUser(log),
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-host', '-f', path.join(sshDir, 'ssh_host_ed25519_key')]),
      run('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'lab-host', '-f', path.join(sshDir, 'ssh_host_ecdsa_key')]),
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-writer', '-f', writer]),
    ]);
    log(`binaries ready in ${bin} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    const pki = path.join(dir, 'pki');
    const [etcdClient, etcdPeer, mgmtPort, targetPort, mgmtKcm, targetKcm, sshPort] = await freePorts(7);

    // etcd
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    startDetached(dir, 'etcd', path.join(bin, 'etcd'), [
      '--name=lab',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=lab=http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster-state=new',
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);

    // git server (independent of the clusters)
    const knownHosts = path.join(sshDir, 'known_hosts');
    fs.writeFileSync(path.join(sshDir, 'port'), `${sshPort}\n`);
    fs.writeFileSync(path.join(sshDir, 'sshd_config'), sshdConfig(dir, sshPort));
    fs.writeFileSync(knownHosts, ['ed25519', 'ecdsa'].map((t) => {
      const [type, blob] = fs.readFileSync(path.join(sshDir, `ssh_host_${t}_key.pub`), 'utf8').trim().split(/\s+/);
      return `[127.0.0.1]:${sshPort} ${type} ${blob}\n`;
    }).join(''));
    fs.writeFileSync(path.join(sshDir, 'authorized_keys'), '', { mode: 0o644 });
    authorizeKey(`${writer}.pub`, { access: 'rw', dir });
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation dir
    await run(SSHD, ['-t', '-f', path.join(sshDir, 'sshd_config')]);
    startDetached(dir, 'sshd', SSHD, ['-D', '-e', '-f', path.join(sshDir, 'sshd_config')]);
    const gitUrl = createRepo('gitops', { dir });

    await waitFor('etcd /health', async () => {
      const r = await httpRequest(`${etcdUrl}/health`, { timeoutMs: 2000 });
      return r.status === 200 && r.json?.health === 'true';
    }, { timeoutMs: 30_000, dir, proc: 'etcd', intervalMs: 100 });
    log(`etcd up at ${etcdUrl}`);

    // API servers
    const clusters = [
      { name: 'mgmt', port: mgmtPort, kcmPort: mgmtKcm },
      { name: 'target', port: targetPort, kcmPort: targetKcm },
    ];
    for (const c of clusters) {
      const server = `https://127.0.0.1:${c.port}`;
      fs.writeFileSync(path.join(dir, `${c.name}.kubeconfig`), kubeconfig(`lab-${c.name}`, server, pki), { mode: 0o600 });
      startDetached(dir, `${c.name}-apiserver`, path.join(bin, 'kube-apiserver'), [
        `--etcd-servers=${etcdUrl}`,
        `--etcd-prefix=/lab-${c.name}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${c.port}`,
        `--cert-dir=${path.join(dir, c.name, 'apiserver-certs')}`,
        `--tls-cert-file=${path.join(pki, 'serving.crt')}`,
        `--tls-private-key-file=${path.join(pki, 'serving.key')}`,
        `--client-ca-file=${path.join(pki, 'ca.crt')}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${path.join(pki, `${c.name}-sa.pub`)}`,
        `--service-account-signing-key-file=${path.join(pki, `${c.name}-sa.key`)}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--endpoint-reconciler-type=none',
        '--allow-privileged=true',
        '--profiling=false',
        '--v=1',
      ]);
    }
    await Promise.all(clusters.map((c) => waitFor(`${c.name} API server /readyz`, async () => {
      const r = await kubeRequest(labCreds(dir, `https://127.0.0.1:${c.port}`), 'GET', '/readyz');
      return r.status === 200;
    }, { timeoutMs: 120_000, dir, proc: `${c.name}-apiserver` })));
    log(`API servers ready: mgmt https://127.0.0.1:${mgmtPort}, target https://127.0.0.1:${targetPort}`);

    // controller managers
    for (const c of clusters) {
      startDetached(dir, `${c.name}-controller-manager`, path.join(bin, 'kube-controller-manager'), [
        `--kubeconfig=${path.join(dir, `${c.name}.kubeconfig`)}`,
        '--controllers=namespace,garbagecollector,serviceaccount-token,serviceaccount',
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${c.kcmPort}`,
        `--cert-dir=${path.join(dir, c.name, 'controller-manager-certs')}`,
        `--service-account-private-key-file=${path.join(pki, `${c.name}-sa.key`)}`,
        `--root-ca-file=${path.join(pki, 'ca.crt')}`,
        '--use-service-account-credentials=false',
        '--profiling=false',
        '--v=1',
      ]);
    }
    await Promise.all(clusters.map((c) => waitFor(`${c.name} controller manager /healthz`, async () => {
      const r = await httpRequest(`https://127.0.0.1:${c.kcmPort}/healthz`, { insecure: true, timeoutMs: 2000 });
      return r.status === 200;
    }, { timeoutMs: 60_000, dir, proc: `${c.name}-controller-manager` })));
    log('controller managers healthy');

    await waitFor('git ls-remote over ssh', async () => {
      await gitLsRemote(gitUrl, writer, knownHosts);
      return true;
    }, { timeoutMs: 30_000, dir, proc: 'sshd' });
    log(`git server up: ${gitUrl}`);

    const env: LabEnv = {
      LAB_DIR: dir,
      LAB_BIN: bin,
      LAB_LOGS: path.join(dir, 'logs'),
      LAB_MGMT_KUBECONFIG: path.join(dir, 'mgmt.kubeconfig'),
      LAB_TARGET_KUBECONFIG: path.join(dir, 'target.kubeconfig'),
      LAB_MGMT_SERVER: `https://127.0.0.1:${mgmtPort}`,
      LAB_TARGET_SERVER: `https://127.0.0.1:${targetPort}`,
      LAB_CA_FILE: path.join(pki, 'ca.crt'),
      LAB_ETCD_URL: etcdUrl,
      LAB_GIT_URL: gitUrl,
      LAB_GIT_BASE_URL: `ssh://${GIT_USER}@127.0.0.1:${sshPort}`,
      LAB_GIT_HOST: '127.0.0.1',
      LAB_GIT_PORT: String(sshPort),
      LAB_GIT_USER: GIT_USER,
      LAB_GIT_ROOT: path.join(dir, 'git'),
      LAB_GIT_WRITER_KEY: writer,
      LAB_GIT_WRITER_PUBKEY: `${writer}.pub`,
      LAB_GIT_KNOWN_HOSTS: knownHosts,
      LAB_GIT_SSH_COMMAND: gitSshCommand(writer, knownHosts),
    };
    writeLabEnv(dir, env);
    log(`lab up in ${((Date.now() - t0) / 1000).toFixed(1)} s; env in ${path.join(dir, 'env')}`);
    return env;
  } catch (err) {
    log(`lab up failed, stopping what started (logs stay in ${path.join(dir, 'logs')})`);
    await stopProcesses(dir, [...FLUX, ...CORE]).catch(() => {});
    throw err;
  }
}

/**
 * Stop every process of the lab in `opts.dir` by its recorded PID (SIGTERM, SIGKILL after a few seconds), wait
 * until they are gone, and remove the dir. Stray processes whose command line still names the lab dir are
 * stopped too. A lab that is not there is fine.
 */
export async function labDown(opts: LabOptions = {}): Promise<void> {
  const dir = labDir(opts);
  const log = logger(opts);
  if (!fs.existsSync(dir)) {
    log(`no lab in ${dir}`);
    return;
  }
  if (!looksLikeLab(dir) && fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not a lab dir (no pids/ or env): not removing it`);
  const t0 = Date.now();
  let recorded: string[] = [];
  try {
    recorded = fs.readdirSync(path.join(dir, 'pids'));
  } catch {
    /* none */
  }
  const known = [...FLUX, ...CORE];
  const extra = recorded.filter((n) => !known.includes(n));
  // clients first, etcd last
  await stopProcesses(dir, [...FLUX, ...extra]);
  await stopProcesses(dir, CORE.filter((n) => n !== 'etcd'));
  await stopProcesses(dir, ['etcd']);
  const left = strays(dir);
  if (left.length) {
    log(`stopping stray processes of this lab: ${left.join(' ')}`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const deadline = Date.now() + 5000;
    while (left.some(alive) && Date.now() < deadline) await sleep(50);
  }
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  log(`lab down in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------------------------------------------------------
// Flux

/**
 * Start Flux's source-controller and kustomize-controller out-of-cluster against the target cluster
 * (`RUNTIME_NAMESPACE=flux-system`, artifacts served on 127.0.0.1), plus the stand-in kubelet that reports their
 * Deployments in flux-system available. Waits (up to `timeoutMs`, default 5 min) for the Flux CRDs to be
 * established in the target first, then for both controllers' health endpoints. No-op when already running.
 */
export async function fluxStart(opts: LabOptions & { timeoutMs?: number } = {}): Promise<FluxInfo> {
  const dir = labDir(opts);
  const log = logger(opts);
  const env = readLabEnv(dir);
  const infoFile = path.join(dir, 'flux', 'ports.json');
  if (FLUX.every((n) => running(dir, n) !== undefined) && fs.existsSync(infoFile)) {
    return JSON.parse(fs.readFileSync(infoFile, 'utf8')) as FluxInfo;
  }
  await stopProcesses(dir, FLUX);
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const target = labCreds(dir, env.LAB_TARGET_SERVER);
  log('flux: waiting for the Flux CRDs in the target cluster');
  await waitFor('Flux CRDs established in the target cluster', async () => {
    const r = await kubeRequest(target, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
    if (r.status !== 200) return false;
    const established = new Set<string>(
      (r.json.items ?? [])
        .filter((crd: any) => (crd.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True'))
        .map((crd: any) => crd.metadata.name),
    );
    return FLUX_CRDS.every((n) => established.has(n));
  }, { timeoutMs, dir, intervalMs: 1000 });

  const [storage, scMetrics, scHealth, kcMetrics, kcHealth] = await freePorts(5);
  const storageAddr = `127.0.0.1:${storage}`;
  const storagePath = path.join(dir, 'flux', 'storage');
  fs.mkdirSync(storagePath, { recursive: true });
  const fluxEnv = childEnv({ KUBECONFIG: env.LAB_TARGET_KUBECONFIG, RUNTIME_NAMESPACE: 'flux-system' });
  startDetached(dir, 'source-controller', path.join(env.LAB_BIN, 'source-controller'), [
    `--storage-path=${storagePath}`,
    `--storage-addr=${storageAddr}`,
    `--storage-adv-addr=${storageAddr}`,
    `--metrics-addr=127.0.0.1:${scMetrics}`,
    `--health-addr=127.0.0.1:${scHealth}`,
    '--events-addr=',
    '--enable-leader-election=false',
    '--watch-all-namespaces=true',
    '--log-level=info',
  ], fluxEnv);
  startDetached(dir, 'kustomize-controller', path.join(env.LAB_BIN, 'kustomize-controller'), [
    `--metrics-addr=127.0.0.1:${kcMetrics}`,
    `--health-addr=127.0.0.1:${kcHealth}`,
    '--events-addr=',
    '--enable-leader-election=false',
    '--watch-all-namespaces=true',
    '--log-level=info',
  ], { ...fluxEnv, SOURCE_CONTROLLER_LOCALHOST: storageAddr });
  startDetached(dir, 'kubelet', process.execPath, [path.join(import.meta.dirname, 'kubelet.ts'), '--dir', dir]);
  const info: FluxInfo = {
    storageAddr,
    sourceControllerHealth: `http://127.0.0.1:${scHealth}`,
    kustomizeControllerHealth: `http://127.0.0.1:${kcHealth}`,
  };
  try {
    await Promise.all([
      waitFor('source-controller /readyz', async () => (await httpRequest(`${info.sourceControllerHealth}/readyz`, { timeoutMs: 2000 })).status === 200,
        { timeoutMs: 60_000, dir, proc: 'source-controller' }),
      waitFor('kustomize-controller /readyz', async () => (await httpRequest(`${info.kustomizeControllerHealth}/readyz`, { timeoutMs: 2000 })).status === 200,
        { timeoutMs: 60_000, dir, proc: 'kustomize-controller' }),
    ]);
  } catch (err) {
    await stopProcesses(dir, FLUX).catch(() => {});
    throw err;
  }
  fs.writeFileSync(infoFile, JSON.stringify(info, null, 2) + '\n');
  log(`flux: source-controller (artifacts at http://${storageAddr}) and kustomize-controller running`);
  return info;
}

/** Stop the Flux controllers and the stand-in kubelet (the Flux objects in the target stay). */
export async function fluxStop(opts: LabOptions = {}): Promise<void> {
  const dir = labDir(opts);
  await stopProcesses(dir, FLUX);
  fs.rmSync(path.join(dir, 'flux', 'ports.json'), { force: true });
  logger(opts)('flux: stopped');
}

/** Whether the Flux controllers of the lab in `dir` are running. */
export function fluxRunning(dir?: string): boolean {
  const d = labDir({ dir });
  return FLUX.every((n) => running(d, n) !== undefined);
}

/** PIDs of the lab's processes that are alive, by name (from `.lab/pids/`). */
export function labPids(dir?: string): Record<string, number> {
  const d = labDir({ dir });
  const out: Record<string, number> = {};
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(d, 'pids'));
  } catch {
    return out;
  }
  for (const n of names) {
    const pid = running(d, n);
    if (pid !== undefined) out[n] = pid;
  }
  return out;
}
