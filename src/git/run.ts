import { fileURLToPath } from 'node:url';
import { simpleGit } from 'simple-git';
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitError, classifyGitError, formatBytes, redact } from './errors.ts';
import type { GitAuth } from './types.ts';
import { reasonOf } from '../cancel.ts';

/** GitCommand is one git invocation with its limits. */
export interface GitCommand {
  args: string[];
  cwd?: string;
  env: Record<string, string>;
  /** timeoutMs is a hard deadline from start to end, however much output keeps arriving. */
  timeoutMs: number;
  /** maxOutputBytes caps stdout and stderr together; git is killed past it. */
  maxOutputBytes: number;
  /** action names the command in messages, e.g. `fetch from ssh://host/org/repo.git`. */
  action: string;
  /** remote is true when the command talks to the git host, so a timeout is the host's. */
  remote: boolean;
  /** signal kills the command's process group when it is aborted (a cancelled reconcile). */
  signal?: AbortSignal;
}

/** GitOutput is what a git command that ran to its end printed, and its exit code. */
export interface GitOutput {
  code: number;
  stdout: string;
  stderr: string;
}

const TRUSTED_SETTINGS = Object.fromEntries(
  [
    'CustomBinary',
    'SshCommand',
    'ConfigEnvCount',
    'HooksPath',
    'FsMonitor',
    'AskPass',
    'CredentialHelper',
    'ProtocolOverride',
    'TemplateDir',
    'ConfigPaths',
  ].map((k) => [`allowUnsafe${k}`, true]),
);

/** DEADLINE_WRAPPER runs git under coreutils `timeout` (see git-deadline.sh); simple-git runs it through `sh`. */
const DEADLINE_WRAPPER = fileURLToPath(new URL('./git-deadline.sh', import.meta.url));

/**
 * runGit runs git through simple-git, under coreutils `timeout`: that puts git in a process group of its own
 * and kills the whole group (git, its ssh or https helper, a local hook) at the deadline, so a server that
 * stalls or streams forever cannot hold the operator; past the output cap the run is aborted the same way.
 * It rejects only with a GitError for those limits or a failed start; a non-zero exit is returned for the
 * caller to judge (see mustRun).
 */
export async function runGit(cmd: GitCommand): Promise<GitOutput> {
  const seconds = Math.max(0.1, Math.round(cmd.timeoutMs / 100) / 10);
  const abort = new AbortController();
  let limit: GitError | undefined;
  let size = 0;
  let exit: { code: number; stderr: string } | undefined;
  const git = simpleGit({
    baseDir: cmd.cwd,
    binary: ['sh', DEADLINE_WRAPPER],
    abort: abort.signal,
    // simple-git guards against these because a caller's input could set them to run code; here every one is
    // set by this module alone, to switch that code off (no hooks, no fsmonitor, no askpass or credential
    // helper, only the allowed protocols, no template) — see SAFE_CONFIG and gitEnv.
    unsafe: TRUSTED_SETTINGS,
    allowEnvironment: Object.keys(cmd.env),
    // Every exit is an answer here: git's words are kept and judged by the caller, not thrown by simple-git.
    errors: (_error: unknown, result: { exitCode: number; stdErr: Buffer[] }) => {
      exit = {
        code: result.exitCode === 124 || result.exitCode === 137 ? TIMED_OUT : result.exitCode,
        stderr: Buffer.concat(result.stdErr).toString('utf8'),
      };
      return undefined;
    },
  } as any)
    .env({ ...cmd.env, FBO_GIT_DEADLINE: String(seconds) })
    .outputHandler((_command, stdout, stderr) => {
      const count = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= cmd.maxOutputBytes || limit) return;
        const who = cmd.remote ? 'the git host sent' : 'git printed';
        limit = new GitError(
          cmd.remote ? 'unreachable' : 'other',
          `${cmd.action}: ${who} more than ${formatBytes(cmd.maxOutputBytes)} of output`,
          new Error(`git ${cmd.args[0]} killed after ${size} bytes of output`),
        );
        abort.abort();
      };
      stdout.on('data', count);
      stderr.on('data', count);
    });
  // A last guard, should the wrapper itself hang: simple-git is abandoned shortly after the deadline.
  let guard: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    guard = setTimeout(() => (abort.abort(), reject(timedOut(cmd, seconds))), (seconds + 5) * 1000);
    guard.unref();
  });
  const { signal } = cmd;
  const onAbort = () => abort.abort();
  if (signal?.aborted) throw reasonOf(signal);
  signal?.addEventListener('abort', onAbort, { once: true });
  let stdout: string;
  try {
    stdout = await Promise.race([git.raw(cmd.args), late]);
  } catch (err) {
    if (signal?.aborted) throw reasonOf(signal);
    if (limit) throw limit;
    if (err instanceof GitError) throw err;
    throw new GitError('other', `${cmd.action}: cannot run git`, err);
  } finally {
    clearTimeout(guard);
    signal?.removeEventListener('abort', onAbort);
  }
  if (signal?.aborted) throw reasonOf(signal);
  if (limit) throw limit;
  if (exit?.code === TIMED_OUT) throw timedOut(cmd, seconds);
  return { code: exit?.code ?? 0, stdout, stderr: exit?.stderr ?? '' };
}

/** TIMED_OUT stands for the exit of a git that `timeout` ended (124, or 137 after --kill-after). */
const TIMED_OUT = -124;

function timedOut(cmd: GitCommand, seconds: number): GitError {
  const who = cmd.remote ? 'the git host' : 'git';
  return new GitError(
    cmd.remote ? 'timeout' : 'other',
    `${cmd.action}: ${who} did not finish within ${seconds} s`,
    new Error(`git ${cmd.args[0]} killed after ${seconds} s`),
  );
}

/** mustRun runs a git command and turns a non-zero exit into a GitError classified from git's output. */
export async function mustRun(cmd: GitCommand): Promise<string> {
  const out = await runGit(cmd);
  if (out.code !== 0) {
    const text = `${out.stderr}\n${out.stdout}`;
    throw classifyGitError(
      cmd.action,
      text,
      new Error(`git ${cmd.args[0]} exited with code ${out.code}: ${redact(text.trim())}`),
    );
  }
  return out.stdout;
}

/**
 * PASSED_ENV are the only ambient variables git gets: no GIT_*, no EDITOR or pager, nothing that changes what it runs.
 */
const PASSED_ENV =
  /^(PATH|HOME|USER|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$/;

/**
 * SAFE_CONFIG is configuration every git command gets, whatever a config file says: no hooks, no
 * fsmonitor, symbolic links checked out as plain files, no credential helper or askpass, no background
 * gc that would outlive the command's process group, and a stalled HTTP transfer given up.
 */
const SAFE_CONFIG: [string, string][] = [
  ['core.hooksPath', '/dev/null'],
  ['core.fsmonitor', 'false'],
  ['core.symlinks', 'false'],
  // Only the files in .git/info/sparse-checkout (the batch's) are checked out: see Repositories' #fetch.
  ['core.sparseCheckout', 'true'],
  ['core.sparseCheckoutCone', 'false'],
  // What a fetch brings stays one pack: never exploded into a file per object (inodes), and its size is known.
  ['fetch.unpackLimit', '1'],
  ['core.attributesFile', '/dev/null'],
  ['core.excludesFile', '/dev/null'],
  ['core.askPass', ''],
  ['credential.helper', ''],
  ['commit.gpgSign', 'false'],
  ['submodule.recurse', 'false'],
  ['fetch.recurseSubmodules', 'false'],
  ['gc.autoDetach', 'false'],
  ['maintenance.autoDetach', 'false'],
  ['http.lowSpeedLimit', '1'],
  ['http.lowSpeedTime', '60'],
];

/**
 * gitEnv is the environment of every git command. System and global config files are not read (a
 * broken or hostile ~/.gitconfig changes nothing), SAFE_CONFIG and `extra` are passed as GIT_CONFIG_*
 * variables (never on a command line), only the listed protocols are allowed (`protocol.allow=never`
 * otherwise, which also shuts `ext::` and local paths), messages are in English for classification,
 * and git never prompts.
 */
export function gitEnv(protocols: readonly string[], extra: [string, string][] = []): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && PASSED_ENV.test(k)) env[k] = v;
  const config: [string, string][] = [
    ...SAFE_CONFIG,
    ['protocol.allow', 'never'],
    ...protocols.map((p): [string, string] => [`protocol.${p}.allow`, 'always']),
    ...extra,
  ];
  Object.assign(env, {
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_LITERAL_PATHSPECS: '1',
    GIT_CONFIG_COUNT: String(config.length),
  });
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}

/** KEY_FOLDER_PREFIX names the private folders that hold an SSH key while git runs; the owner's pid follows it. */
const KEY_FOLDER_PREFIX = 'fbo-git-';

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * CONTROL_PERSIST is how long an idle shared SSH connection lives on: the bound on one a killed operator left behind.
 */
const CONTROL_PERSIST = '30s';

/** CONTROL_SOCKET is the name of the shared connection's socket in the private key folder. */
const CONTROL_SOCKET = 'cm';

/**
 * withAuth gives git an environment that carries the credentials without putting them on a command line:
 * the SSH key and known_hosts (or an https CA) in a private temporary folder, removed afterwards; HTTPS basic auth as
 * an
 * extra header through GIT_CONFIG_* variables.
 *
 * With `multiplex`, the git commands run inside fn share one SSH connection (OpenSSH ControlMaster, its
 * socket in the private folder): the first one connects, the rest open a session on it, with no handshake.
 * The master backgrounds itself into a session of its own, out of reach of the process group a git
 * command's deadline kills, so it is ended here when fn ends (see endMaster); a process killed before that
 * leaves it idle for at most CONTROL_PERSIST (and ServerAlive ends it sooner on a dead host). A mux client
 * stays in the git command's group and dies with it at the deadline, as a plain ssh would.
 */
export async function withAuth<T>(
  auth: GitAuth,
  protocols: readonly string[],
  fn: (env: Record<string, string>) => Promise<T>,
  opts: { multiplex?: boolean; signingKey?: string } = {},
): Promise<T> {
  const tmp = await mkdtemp(join(tmpdir(), `${KEY_FOLDER_PREFIX}${process.pid}-`));
  const control = join(tmp, CONTROL_SOCKET);
  // A unix socket's path has room for about 100 bytes: a deep TMPDIR goes without sharing rather than fail.
  const multiplex = opts.multiplex === true && auth.transport === 'ssh' && Buffer.byteLength(control) < 100;
  try {
    // Commits are signed with an SSH key (gpg.format=ssh) kept, like the transport key, in this private folder only.
    const signing: [string, string][] = [];
    if (opts.signingKey) {
      const file = join(tmp, 'signing');
      await writeFile(file, opts.signingKey.endsWith('\n') ? opts.signingKey : `${opts.signingKey}\n`, { mode: 0o600 });
      signing.push(['gpg.format', 'ssh'], ['user.signingKey', file], ['commit.gpgSign', 'true']);
    }
    if (auth.transport === 'https') {
      const basic = Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
      const extra: [string, string][] = [['http.extraHeader', `Authorization: Basic ${basic}`]];
      if (auth.ca) {
        await writeFile(join(tmp, 'ca.crt'), auth.ca, { mode: 0o600 });
        extra.push(['http.sslCAInfo', join(tmp, 'ca.crt')]);
      }
      return await fn(gitEnv(protocols, [...extra, ...signing]));
    }
    const key = join(tmp, 'identity');
    const knownHosts = join(tmp, 'known_hosts');
    await writeFile(key, auth.privateKey.endsWith('\n') ? auth.privateKey : `${auth.privateKey}\n`, { mode: 0o600 });
    await writeFile(knownHosts, auth.knownHosts, { mode: 0o600 });
    const env = gitEnv(protocols, signing);
    env.GIT_SSH_COMMAND = [
      'ssh -F /dev/null',
      `-i ${shellQuote(key)}`,
      '-o IdentitiesOnly=yes',
      `-o UserKnownHostsFile=${shellQuote(knownHosts)}`,
      '-o GlobalKnownHostsFile=/dev/null',
      '-o StrictHostKeyChecking=yes',
      '-o BatchMode=yes',
      '-o ConnectTimeout=15',
      '-o ServerAliveInterval=15',
      '-o ServerAliveCountMax=2',
      ...(multiplex
        ? ['-o ControlMaster=auto', `-o ControlPath=${shellQuote(control)}`, `-o ControlPersist=${CONTROL_PERSIST}`]
        : []),
    ].join(' ');
    return await fn(env);
  } finally {
    if (multiplex) await endMaster(control).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  }
}

/** sshControl runs an ssh control command (-O check, -O exit) against a control socket, with a deadline of its own. */
function sshControl(control: string, op: 'check' | 'exit'): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(
      'ssh',
      ['-F', '/dev/null', '-o', `ControlPath=${control}`, '-O', op, 'fbo-control'],
      {
        timeout: 5_000,
        killSignal: 'SIGKILL',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', LC_ALL: 'C' },
      },
      (err, stdout, stderr) => resolve({ ok: !err, text: `${stdout}\n${stderr}` }),
    );
  });
}

/**
 * endMaster ends the shared SSH connection of a control socket, if one is running: it asks the master to
 * exit, and kills it when it is still there a second later (it is checked to be that socket's master, by its
 * process title, before any signal is sent).
 */
export async function endMaster(control: string): Promise<void> {
  if (
    !(await lstat(control).then(
      (st) => st.isSocket(),
      () => false,
    ))
  )
    return;
  const pid = Number(/pid=(\d+)/.exec((await sshControl(control, 'check')).text)?.[1] ?? NaN);
  await sshControl(control, 'exit');
  if (!Number.isInteger(pid) || pid <= 1) return;
  const ours = async () => (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(control);
  for (let waited = 0; waited < 1000 && (await ours()); waited += 50) await new Promise((r) => setTimeout(r, 50));
  if (await ours()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

/** STALE_AFTER_MS is how old a key folder of another live process must be before it is removed anyway. */
const STALE_AFTER_MS = 24 * 3600_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * sweepKeyFolders removes the SSH key folders a killed process left in the temporary directory: those
 * made before this process started by a process that is gone (or by an earlier process with this pid,
 * as after a container restart), and any older than a day. Folders of live processes — tests running in
 * parallel, say — are left alone. It returns how many it removed.
 */
export async function sweepKeyFolders(): Promise<number> {
  const started = performance.timeOrigin;
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(KEY_FOLDER_PREFIX)) continue;
    const path = join(tmpdir(), name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    const pid = Number(/^fbo-git-(\d+)-/.exec(name)?.[1] ?? NaN);
    const before = st.mtimeMs < started;
    const stale =
      Date.now() - st.mtimeMs > STALE_AFTER_MS || (before && (Number.isNaN(pid) || pid === process.pid || !alive(pid)));
    if (!stale) continue;
    await endMaster(join(path, CONTROL_SOCKET)).catch(() => undefined);
    await rm(path, { recursive: true, force: true });
    removed++;
  }
  return removed;
}
