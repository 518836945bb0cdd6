import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';

/** GitAuth is how the operator reaches a repository: an SSH key with pinned host keys, or HTTPS basic auth. */
export type GitAuth =
  | { transport: 'ssh'; privateKey: string; knownHosts: string }
  | { transport: 'https'; username: string; password: string };

/** GitErrorKind classifies git's stderr into what a user can act on. */
export type GitErrorKind = 'hostKey' | 'auth' | 'notFound' | 'unreachable' | 'rejected' | 'protected' | 'other';

/** GitError is a failed git command, classified; its message never holds credentials. */
export class GitError extends Error {
  readonly kind: GitErrorKind;
  constructor(kind: GitErrorKind, message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'GitError';
    this.kind = kind;
  }
}

const PATTERNS: [GitErrorKind, RegExp][] = [
  ['hostKey', /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known/i],
  ['rejected', /cannot lock ref|failed to update ref|incorrect old value/i],
  ['protected', /pre-receive hook declined|protected branch|\[remote rejected\]/i],
  ['rejected', /\[rejected\].*(fetch first|non-fast-forward)|failed to push some refs.*(fetch first|non-fast-forward)|Updates were rejected/is],
  ['auth', /Permission denied|Authentication failed|could not read Username|invalid credentials|403/i],
  ['notFound', /does not appear to be a git repository|Repository not found|not found|could not be found|does not exist|no such repository|No such file or directory/i],
  ['unreachable', /Could not resolve hostname|Connection refused|Connection timed out|No route to host|Network is unreachable|Connection closed|Connection reset/i],
];

/** classifyGitError turns a git failure into a GitError of the kind its output shows. */
function classifyGitError(action: string, err: unknown): GitError {
  const text = err instanceof Error ? err.message : String(err);
  const kind = PATTERNS.find(([, re]) => re.test(text))?.[0] ?? 'other';
  const detail = text.split('\n').map((l) => l.trim()).filter((l) => l && !/^(hint|remote):\s*$/.test(l)).slice(-3).join('; ');
  return new GitError(kind, `${action}: ${detail}`, err);
}

/** FileUpdate is one file the operator owns: its path in the repository and how to render it from what is there. */
export interface FileUpdate {
  path: string;
  render: (existing: string | undefined) => string;
}

/** UpdateRequest asks for files to be committed and pushed to a branch, only when they change. */
export interface UpdateRequest {
  url: string;
  branch: string;
  auth: GitAuth;
  author: { name: string; email: string };
  message: string;
  files: FileUpdate[];
}

/** UpdateResult says what the branch holds after the update, and whether this update pushed a commit. */
export interface UpdateResult {
  head: string;
  pushed: boolean;
}

const MAX_PUSH_ATTEMPTS = 5;

interface Pending {
  req: UpdateRequest;
  resolve: (r: UpdateResult) => void;
  reject: (err: unknown) => void;
  settled: boolean;
}

function settle(p: Pending, err: unknown, result?: UpdateResult): void {
  if (p.settled) return;
  p.settled = true;
  if (result) p.resolve(result);
  else p.reject(err);
}

/** batchKey groups updates that can share a commit: same branch, same credentials. */
function batchKey(req: UpdateRequest): string {
  return createHash('sha256').update(JSON.stringify([req.branch, req.auth])).digest('hex');
}

/**
 * Repositories keeps one local clone per repository URL under a work directory, shared by every
 * ClusterBootstrap on that repository. Updates to one repository run one at a time; the updates that queue
 * up meanwhile for the same branch and credentials are batched into one commit, so a fleet on one
 * repository makes few commits, not one per cluster. An update fetches, resets to the remote branch,
 * renders the files, commits only on change and pushes; a push that loses a race is retried from a fresh
 * fetch, so nothing another writer pushed is lost and no commit is duplicated.
 */
export class Repositories {
  readonly #root: string;
  readonly #pending = new Map<string, Pending[]>();
  readonly #busy = new Set<string>();
  readonly #opened = new Set<string>();

  constructor(root: string) {
    this.#root = root;
  }

  /** update renders the files onto the branch and pushes a commit if they changed. */
  update(req: UpdateRequest): Promise<UpdateResult> {
    return new Promise((resolve, reject) => {
      const queue = this.#pending.get(req.url) ?? [];
      queue.push({ req, resolve, reject, settled: false });
      this.#pending.set(req.url, queue);
      if (!this.#busy.has(req.url)) void this.#drain(req.url);
    });
  }

  /** readHead checks that a key can read the repository (git ls-remote) and returns the branch's head, if any. */
  async readHead(url: string, branch: string, auth: GitAuth): Promise<string | undefined> {
    return withAuth(auth, async (env) => {
      try {
        const out = await client(undefined, env).listRemote([url, `refs/heads/${branch}`]);
        return out.trim().split(/\s+/)[0] || undefined;
      } catch (err) {
        throw classifyGitError(`read ${redact(url)}`, err);
      }
    });
  }

  /** #drain works through the updates queued for one repository, a batch at a time. */
  async #drain(url: string): Promise<void> {
    this.#busy.add(url);
    try {
      for (let queue = this.#pending.get(url) ?? []; queue.length > 0; queue = this.#pending.get(url) ?? []) {
        const key = batchKey(queue[0].req);
        const batch = queue.filter((p) => batchKey(p.req) === key);
        this.#pending.set(url, queue.filter((p) => !batch.includes(p)));
        try {
          await this.#commit(url, batch);
        } catch (err) {
          for (const p of batch) settle(p, err);
        }
      }
    } finally {
      this.#pending.delete(url);
      this.#busy.delete(url);
    }
  }

  /** #commit makes one commit of a batch of updates to one branch, pushed with the batch's credentials. */
  async #commit(url: string, batch: Pending[]): Promise<void> {
    const { branch, auth, author } = batch[0].req;
    const dir = await this.#clone(url);
    await withAuth(auth, async (env) => {
      const git = client(dir, env);
      for (let attempt = 1; ; attempt++) {
        const remoteHead = await this.#fetch(git, branch);
        const live: Pending[] = [];
        for (const p of batch.filter((p) => !p.settled)) {
          try {
            await this.#write(dir, p.req.files);
            live.push(p);
          } catch (err) {
            settle(p, err); // one update that cannot render does not hold up the others
          }
        }
        if (live.length === 0) return;
        await git.add(live.flatMap((p) => p.req.files.map((f) => f.path)));
        const staged = new Set((await git.diff(['--cached', '--name-only'])).split('\n').filter(Boolean));
        if (staged.size === 0) {
          for (const p of live) settle(p, undefined, { head: remoteHead ?? '', pushed: false });
          return;
        }
        const message =
          live.length === 1 ? live[0].req.message : `Update flux-system of ${live.length} clusters\n\n${live.map((p) => `- ${p.req.message.split('\n')[0]}`).join('\n')}`;
        await git.raw(['-c', `user.name=${author.name}`, '-c', `user.email=${author.email}`, 'commit', '-q', '--no-verify', '-m', message]);
        const head = (await git.revparse(['HEAD'])).trim();
        try {
          await git.push('origin', `HEAD:refs/heads/${branch}`);
        } catch (err) {
          const e = classifyGitError(`push to ${branch}`, err);
          if (e.kind !== 'rejected' || attempt >= MAX_PUSH_ATTEMPTS) throw e;
          continue;
        }
        for (const p of live) settle(p, undefined, { head, pushed: p.req.files.some((f) => staged.has(f.path)) });
        return;
      }
    });
  }

  /**
   * #clone returns the clone of a repository, making it on first use. A clone left by an earlier process
   * may hold lock files of a git command that was killed; the first use in this process removes them
   * (nothing else runs git in it: the work dir is this process's, and each clone is used by one update at a time).
   */
  async #clone(url: string): Promise<string> {
    const dir = join(this.#root, createHash('sha256').update(url).digest('hex').slice(0, 16));
    await mkdir(dir, { recursive: true });
    if (!this.#opened.has(dir)) {
      for (const entry of await readdir(join(dir, '.git'), { recursive: true }).catch(() => [] as string[]))
        if (entry.endsWith('.lock')) await rm(join(dir, '.git', entry), { force: true });
      this.#opened.add(dir);
    }
    const git = client(dir, baseEnv());
    if (!(await git.checkIsRepo('root' as any).catch(() => false))) {
      await git.init();
      await git.addRemote('origin', url);
      await git.addConfig('commit.gpgsign', 'false');
    }
    return dir;
  }

  /** #fetch brings the branch to the remote's state, or to an empty orphan when the remote has no such branch. */
  async #fetch(git: SimpleGit, branch: string): Promise<string | undefined> {
    try {
      await git.fetch(['--prune', '--no-tags', 'origin']);
    } catch (err) {
      throw classifyGitError('fetch', err);
    }
    const head = (await git.raw(['rev-parse', '--verify', '-q', `refs/remotes/origin/${branch}`]).catch(() => '')).trim() || undefined;
    if (head) {
      await git.raw(['checkout', '-q', '-f', '-B', branch, head]);
    } else {
      // An unborn branch: drop any local commit a failed push left behind, so it is made again, not skipped.
      await git.raw(['symbolic-ref', 'HEAD', `refs/heads/${branch}`]);
      await git.raw(['update-ref', '-d', `refs/heads/${branch}`]).catch(() => undefined);
      await git.raw(['read-tree', '--empty']);
    }
    await git.raw(['clean', '-q', '-f', '-d', '-x']);
    return head;
  }

  /** #write renders every file first, so an update whose rendering fails writes nothing. */
  async #write(dir: string, files: FileUpdate[]): Promise<void> {
    const rendered: [string, string][] = [];
    for (const f of files) {
      const path = join(dir, f.path);
      const existing = await readFile(path, 'utf8').catch(() => undefined);
      const content = f.render(existing);
      if (content !== existing) rendered.push([path, content]);
    }
    for (const [path, content] of rendered) {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, content);
    }
  }
}

/** redact drops credentials from a URL before it reaches a message. */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, (m) => (m.includes(':') ? '//***@' : m));
}

function client(dir: string | undefined, env: Record<string, string>): SimpleGit {
  return simpleGit({
    baseDir: dir,
    unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigEnvCount: true } as any,
    allowEnvironment: Object.keys(env),
    timeout: { block: 120_000 },
  }).env(env);
}

/** PASSED_ENV are the only ambient variables git gets: no GIT_*, no EDITOR or pager, nothing that changes what it runs. */
const PASSED_ENV = /^(PATH|HOME|USER|LANG|LC_[A-Z]+|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$/;

/** baseEnv is the environment of every git command: the passed variables, and git never prompts. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && PASSED_ENV.test(k)) env[k] = v;
  env.GIT_TERMINAL_PROMPT = '0';
  return env;
}

/**
 * withAuth gives git an environment that carries the credentials without putting them on a command line:
 * the SSH key and known_hosts in a private temporary folder, removed afterwards; HTTPS basic auth as an
 * extra header through GIT_CONFIG_* variables. Ambient GIT_* variables are dropped.
 */
async function withAuth<T>(auth: GitAuth, fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const env = baseEnv();
  const tmp = await mkdtemp(join(tmpdir(), 'fbo-git-'));
  try {
    if (auth.transport === 'ssh') {
      const key = join(tmp, 'identity');
      const knownHosts = join(tmp, 'known_hosts');
      await writeFile(key, auth.privateKey.endsWith('\n') ? auth.privateKey : `${auth.privateKey}\n`, { mode: 0o600 });
      await writeFile(knownHosts, auth.knownHosts, { mode: 0o600 });
      env.GIT_SSH_COMMAND = [
        'ssh -F /dev/null',
        `-i '${key}'`,
        '-o IdentitiesOnly=yes',
        `-o UserKnownHostsFile='${knownHosts}'`,
        '-o GlobalKnownHostsFile=/dev/null',
        '-o StrictHostKeyChecking=yes',
        '-o BatchMode=yes',
        '-o ConnectTimeout=15',
      ].join(' ');
    } else {
      const basic = Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
      Object.assign(env, { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}` });
    }
    return await fn(env);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
