import { createHash } from 'node:crypto';
import { abortable, CancelledError, checkSignal, reasonOf } from '../cancel.ts';
import { access, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { checkRepoPath, checkTree, parseLsTree, prefixes, readInside, writeInside } from './content.ts';
import { GitError, classifyGitError, formatBytes, redact } from './errors.ts';
import { mustRun, runGit, sweepKeyFolders, withAuth, type GitCommand } from './run.ts';
import type { FileUpdate, GitAuth, RepositoriesOptions, UpdateRequest, UpdateResult } from './types.ts';

export { GitError, redact, type GitErrorKind } from './errors.ts';
export type { FileUpdate, GitAuth, RepositoriesOptions, UpdateRequest, UpdateResult } from './types.ts';

/**
 * RACE_ATTEMPTS and RACE_BUDGET_MS bound the pushes of one batch that lose a race to another writer: each is
 * retried at once from a fresh fetch, until one wins, RACE_ATTEMPTS have lost, or RACE_BUDGET_MS (at most the
 * transfer deadline) has passed since the first.
 */
const RACE_ATTEMPTS = 20;
const RACE_BUDGET_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const DEFAULTS: Required<RepositoriesOptions> = {
  transferTimeoutMs: 120_000,
  readTimeoutMs: 30_000,
  localTimeoutMs: 120_000,
  maxOutputBytes: 4 * 1048576,
  maxFileBytes: 2 * 1048576,
  maxRepoBytes: 1024 * 1048576,
  protocols: ['ssh', 'https'],
};

/** SharedRead is one ls-remote and how many callers wait for it. */
interface SharedRead {
  head: Promise<string | undefined>;
  waiters: number;
  stop: AbortController;
}

interface Pending {
  req: UpdateRequest;
  resolve: (r: UpdateResult) => void;
  reject: (err: unknown) => void;
  settled: boolean;
}

/**
 * scan lists the files under a path of a tree that contain a fixed string (git grep over the objects: nothing is
 * checked out), the first MAX_FOUND of them; binary files are skipped.
 */
async function scan(
  local: (args: string[], action?: string) => GitCommand,
  tree: string,
  req: NonNullable<UpdateRequest['scan']>,
): Promise<string[]> {
  // Pathspecs are literal (GIT_LITERAL_PATHSPECS): no `:(exclude)` magic, so what is left out is filtered here.
  const out = await runGit(local(['grep', '-l', '-z', '-I', '-F', '-e', req.needle, tree, '--', `${req.path}/`]));
  if (out.code === 1) return [];
  if (out.code !== 0) throw new GitError('other', `git grep in ${req.path}: ${redact(out.stderr.trim())}`);
  const prefix = `${tree}:`;
  return out.stdout
    .split('\0')
    .filter(Boolean)
    .map((f) => (f.startsWith(prefix) ? f.slice(prefix.length) : f))
    .filter((f) => !req.exclude?.includes(f))
    .slice(0, MAX_FOUND);
}

const MAX_FOUND = 100;

/**
 * holdsNothingNew is true when every file a head branch changed (since it forked from the base) is on the base as the
 * head has it: its pull request was merged, squashed or rebased, or it never changed anything.
 */
async function holdsNothingNew(
  local: (args: string[], action?: string) => GitCommand,
  base: string,
  head: string,
): Promise<boolean> {
  const fork = await runGit(local(['merge-base', base, head]));
  if (fork.code !== 0) return false;
  const changed = (await mustRun(local(['diff', '--name-only', '-z', fork.stdout.trim(), head])))
    .split('\0')
    .filter(Boolean);
  if (changed.length > 1000) return false;
  return changed.length === 0 || (await runGit(local(['diff', '--quiet', base, head, '--', ...changed]))).code === 0;
}

function settle(p: Pending, err: unknown, result?: UpdateResult): void {
  if (p.settled) return;
  p.settled = true;
  if (result) p.resolve(result);
  else p.reject(err);
}

/** batchKey groups updates that can share a commit: same branch, same credentials, same author. */
function batchKey(req: UpdateRequest): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        req.branch,
        req.proposeTo ?? '',
        req.auth,
        req.author.name,
        req.author.email,
        req.signingKey ?? '',
      ]),
    )
    .digest('hex');
}

/** CRUD are the characters git strips from the ends of a name; a name of nothing else is refused. */
const CRUD = /^[\x00-\x20.,:;<>"\\']+|[\x00-\x20.,:;<>"\\']+$/g;

/**
 * checkRequest refuses, before any git command runs, what would make git misread its command line or refuse the commit.
 */
function checkRequest(req: UpdateRequest): void {
  checkUrl(req.url);
  checkBranch(req.branch);
  if (req.proposeTo !== undefined) checkBranch(req.proposeTo);
  const { name, email } = req.author;
  if (!name.replace(CRUD, '') || /[\x00-\x1f<>]/.test(name) || !email.trim() || /[\x00-\x20<>]/.test(email.trim()))
    throw new GitError(
      'other',
      `author ${JSON.stringify(name)} ${JSON.stringify(email)} is not a valid git identity: give a name and an ` +
        `email address such as flux@example.com`,
    );
  for (const f of req.files) checkRepoPath(f.path);
}

function checkUrl(url: string): void {
  if (!url || url.startsWith('-') || /[\x00-\x1f]/.test(url))
    throw new GitError('other', `${JSON.stringify(redact(url))} is not a repository URL`);
}

function checkBranch(branch: string): void {
  if (
    !branch ||
    branch.startsWith('-') ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.') ||
    /\.\.|@\{|\/\/|[\x00-\x20~^:?*[\\\x7f]/.test(branch)
  )
    throw new GitError('other', `${JSON.stringify(branch)} is not a valid branch name`);
}

/** swept is set once the first Repositories of this process has started sweeping stale key folders. */
let swept = false;

/**
 * Repositories keeps one local clone per repository URL under a work directory, shared by every
 * ClusterBootstrap on that repository. Updates to one repository run one at a time; the updates that queue
 * up meanwhile for the same branch, credentials and author are batched into one commit, so a fleet on one
 * repository makes few commits, not one per cluster. An update fetches, resets to the remote branch,
 * renders the files, commits only on change and pushes; a push that loses a race is retried from a fresh
 * fetch, so nothing another writer pushed is lost and no commit is duplicated.
 *
 * The repository and its server are the user's and may be hostile: every git command has a hard
 * deadline and an output cap, runs with no config file but the clone's own, no hooks and only the
 * allowed protocols, and a file is read or written only when no component of its path is a link, a
 * submodule or an oversized file.
 */
export class Repositories {
  readonly #root: string;
  readonly #opts: Required<RepositoriesOptions>;
  readonly #ceiling: string;
  /** #pending, #busy and #opened are keyed by clone folder; #busy holds the running drain (or prune) of one. */
  readonly #pending = new Map<string, Pending[]>();
  readonly #busy = new Map<string, Promise<void>>();
  readonly #opened = new Set<string>();
  /** #reads are the ls-remotes running, keyed by a digest of what they read with. */
  readonly #reads = new Map<string, SharedRead>();

  constructor(root: string, options: RepositoriesOptions = {}) {
    this.#root = resolve(root);
    this.#opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
    // git must never find a repository above the work directory, such as one the operator runs inside.
    this.#ceiling = `${this.#root}:${dirname(this.#root)}`;
    if (!swept) {
      swept = true;
      void Repositories.sweep().catch(() => undefined);
    }
  }

  /**
   * sweep removes the SSH key folders (`fbo-git-*` in the temporary directory) that a killed operator
   * process left behind; the first Repositories of a process starts it. It returns how many it removed.
   */
  static sweep(): Promise<number> {
    return sweepKeyFolders();
  }

  /** update renders the files onto the branch and pushes a commit if they changed. */
  update(req: UpdateRequest): Promise<UpdateResult> {
    try {
      checkRequest(req);
      checkSignal(req.signal);
    } catch (err) {
      return Promise.reject(err);
    }
    const dir = this.#dirOf(req.url);
    return new Promise((resolve, reject) => {
      const queue = this.#pending.get(dir) ?? [];
      const pending: Pending = { req, resolve, reject, settled: false };
      queue.push(pending);
      this.#pending.set(dir, queue);
      req.signal?.addEventListener(
        'abort',
        () => {
          settle(pending, reasonOf(req.signal!));
          const waiting = this.#pending.get(dir);
          if (waiting?.includes(pending))
            this.#pending.set(
              dir,
              waiting.filter((p) => p !== pending),
            );
        },
        { once: true },
      );
      if (!this.#busy.has(dir)) this.#startDrain(dir);
    });
  }

  /**
   * readHead checks that a key can read the repository (git ls-remote) and returns the branch's head, if any.
   * The same read asked for while one is running shares it: a fleet's clusters check one set of push
   * credentials at once, and each ls-remote over SSH costs the git host a connection.
   */
  readHead(url: string, branch: string, auth: GitAuth, signal?: AbortSignal): Promise<string | undefined> {
    const key = createHash('sha256')
      .update(JSON.stringify([url, branch, auth]))
      .digest('hex');
    let read = this.#reads.get(key);
    if (!read) {
      const stop = new AbortController();
      const shared: SharedRead = { waiters: 0, stop, head: undefined as never };
      shared.head = this.#lsRemote(url, branch, auth, stop.signal).finally(() => this.#reads.delete(key));
      this.#reads.set(key, (read = shared));
    }
    // The read is killed only when every caller waiting for it has been cancelled.
    const shared = read;
    shared.waiters++;
    const head = abortable(shared.head, signal);
    void head.catch(() => undefined).finally(() => --shared.waiters === 0 && signal?.aborted && shared.stop.abort());
    return head;
  }

  async #lsRemote(url: string, branch: string, auth: GitAuth, signal: AbortSignal): Promise<string | undefined> {
    checkUrl(url);
    checkBranch(branch);
    await mkdir(this.#root, { recursive: true });
    const ref = `refs/heads/${branch}`;
    const out = await withAuth(auth, this.#opts.protocols, (env) =>
      mustRun({
        args: ['ls-remote', '--', url, ref],
        cwd: this.#root,
        env: { ...env, GIT_CEILING_DIRECTORIES: this.#ceiling },
        timeoutMs: this.#opts.readTimeoutMs,
        maxOutputBytes: this.#opts.maxOutputBytes,
        action: `read ${redact(url)}`,
        remote: true,
        signal,
      }),
    );
    for (const line of out.split('\n')) {
      const [sha, name] = line.split('\t');
      if (name === ref && /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha)) return sha;
    }
    return undefined;
  }

  /**
   * prune removes the clones of repositories not in keepUrls — ones no ClusterBootstrap uses any more — and
   * returns how many it removed. It waits for a running update of such a clone to end; a clone that has
   * updates queued again meanwhile is in use after all and stays.
   */
  async prune(keepUrls: Set<string>): Promise<number> {
    const keep = new Set([...keepUrls].map((u) => this.#dirOf(u)));
    let removed = 0;
    for (const name of await readdir(this.#root).catch(() => [] as string[])) {
      const dir = join(this.#root, name);
      if (!/^[0-9a-f]{16}$/.test(name) || keep.has(dir)) continue;
      while (this.#busy.has(dir)) await this.#busy.get(dir);
      if (this.#pending.has(dir)) continue;
      const removal = rm(dir, { recursive: true, force: true });
      this.#busy.set(
        dir,
        removal.catch(() => undefined),
      );
      try {
        await removal;
        this.#opened.delete(dir);
        removed++;
      } finally {
        this.#busy.delete(dir);
        if (this.#pending.get(dir)?.length) this.#startDrain(dir);
      }
    }
    return removed;
  }

  #startDrain(dir: string): void {
    let ended!: () => void;
    this.#busy.set(dir, new Promise<void>((r) => (ended = r)));
    void this.#drain(dir).finally(ended);
  }

  #dirOf(url: string): string {
    return join(this.#root, createHash('sha256').update(url).digest('hex').slice(0, 16));
  }

  /** #drain works through the updates queued for one clone, a batch at a time; it never rejects. */
  async #drain(dir: string): Promise<void> {
    try {
      for (let queue = this.#pending.get(dir) ?? []; queue.length > 0; queue = this.#pending.get(dir) ?? []) {
        const key = batchKey(queue[0].req);
        const batch = queue.filter((p) => batchKey(p.req) === key);
        this.#pending.set(
          dir,
          queue.filter((p) => !batch.includes(p)),
        );
        try {
          await this.#commit(dir, batch);
        } catch (err) {
          for (const p of batch) settle(p, err);
        }
      }
    } finally {
      this.#pending.delete(dir);
      this.#busy.delete(dir);
    }
  }

  /**
   * #commit makes one commit of a batch of updates to one branch, by one author, pushed with the batch's
   * credentials. The fetch, the push and their retries share one SSH connection. Between the fetch and the push
   * only what must see the fetched branch runs (checkout, one ls-tree, render, add, commit), so another writer
   * has little time to move the branch in between; when it does, the push is retried at once from a fetch of
   * the branch alone — up to RACE_ATTEMPTS times within RACE_BUDGET_MS — and a race lost every time is a
   * GitError of kind raceLost. Nothing another writer pushed is ever overwritten: every push is a fast-forward.
   */
  async #commit(dir: string, batch: Pending[]): Promise<void> {
    const { url, branch, auth, author } = batch[0].req;
    // A batch every update of which was withdrawn stops at once: its git processes are killed, nothing is pushed.
    const stop = new AbortController();
    const withdrawn = () =>
      batch.every((p) => p.settled) && stop.abort(new CancelledError('every update was withdrawn'));
    for (const p of batch) p.req.signal?.addEventListener('abort', withdrawn, { once: true });
    withdrawn();
    await withAuth(
      auth,
      this.#opts.protocols,
      async (authEnv) => {
        const env = {
          ...authEnv,
          GIT_CEILING_DIRECTORIES: this.#ceiling,
          GIT_AUTHOR_NAME: author.name,
          GIT_AUTHOR_EMAIL: author.email,
          GIT_COMMITTER_NAME: author.name,
          GIT_COMMITTER_EMAIL: author.email,
        };
        const local = (args: string[], action = `git ${args[0]}`): GitCommand => ({
          args,
          cwd: dir,
          env,
          timeoutMs: this.#opts.localTimeoutMs,
          maxOutputBytes: this.#opts.maxOutputBytes,
          action,
          remote: false,
          signal: stop.signal,
        });
        const remote = (args: string[], action: string): GitCommand => ({
          ...local(args, action),
          timeoutMs: this.#opts.transferTimeoutMs,
          remote: true,
        });

        await this.#open(dir, url, local);
        const started = Date.now();
        const budget = Math.min(RACE_BUDGET_MS, this.#opts.transferTimeoutMs);
        for (let attempt = 1; ; attempt++) {
          // What a failed attempt left in the work tree goes before the fetch, not in the window after it.
          await mustRun(local(['clean', '-q', '-f', '-d', '-x']));
          const pending = batch.filter((p) => !p.settled);
          const tree = await this.#fetch(dir, url, branch, pending, local, remote);
          const hasHead = tree !== undefined;
          const found = new Map<Pending, string[]>();
          for (const p of pending.filter((p) => p.req.scan))
            found.set(p, hasHead ? await scan(local, `refs/remotes/origin/${branch}`, p.req.scan!) : []);
          const live = await this.#render(dir, pending, tree);
          if (live.length === 0) return;
          // An update withdrawn while rendering is left out: start again from the fetch without it.
          if (live.some((p) => p.settled)) continue;
          await mustRun(local(['add', '--', ...live.flatMap((p) => p.req.files.map((f) => f.path))]));
          const staged = new Set(
            (await mustRun(local(['diff', '--cached', '--name-only', '-z']))).split('\0').filter(Boolean),
          );
          if (staged.size === 0) {
            const head = hasHead ? (await mustRun(local(['rev-parse', 'HEAD']))).trim() : '';
            for (const p of live) settle(p, undefined, { head, pushed: false, attempts: attempt, found: found.get(p) });
            return;
          }
          const message =
            live.length === 1
              ? live[0].req.message
              : `Update flux-system of ${live.length} ` +
                `clusters\n\n${live.map((p) => `- ${p.req.message.split('\n')[0]}`).join('\n')}`;
          await mustRun(
            local(['commit', '-q', '--no-verify', '-m', message], `commit as ${author.name} <${author.email}>`),
          );
          if (live.some((p) => p.settled)) continue;
          const proposeTo = batch[0].req.proposeTo;
          if (proposeTo !== undefined) {
            const base = hasHead ? (await mustRun(local(['rev-parse', `refs/remotes/origin/${branch}`]))).trim() : '';
            const proposal = await this.#propose(dir, url, branch, proposeTo, live, message, local, remote);
            for (const p of live)
              settle(p, undefined, { head: base, pushed: false, attempts: attempt, found: found.get(p), proposal });
            return;
          }
          try {
            await mustRun(
              remote(
                ['push', '--no-verify', 'origin', `HEAD:refs/heads/${branch}`],
                `push to ${branch} of ${redact(url)}`,
              ),
            );
          } catch (err) {
            if (!(err instanceof GitError) || err.kind !== 'rejected') throw err;
            const spent = Date.now() - started;
            if (attempt >= RACE_ATTEMPTS || spent >= budget)
              throw new GitError(
                'raceLost',
                `push to ${branch} of ${redact(url)}: another writer kept pushing to the branch; each of ${attempt} ` +
                  `pushes in ${(spent / 1000).toFixed(1)} s lost the race`,
                err,
              );
            await sleep(10 + Math.random() * 40); // a little apart from a writer that pushes in step with this one
            continue;
          }
          const head = (await mustRun(local(['rev-parse', 'HEAD']))).trim();
          for (const p of live)
            settle(p, undefined, {
              head,
              pushed: p.req.files.some((f) => staged.has(f.path)),
              attempts: attempt,
              found: found.get(p),
            });
          return;
        }
      },
      { multiplex: true, signingKey: batch[0].req.signingKey },
    );
  }

  /**
   * #propose puts a change already committed on the base (HEAD) onto the head branch of a pull request. A head branch
   * that is absent, or holds nothing the base lacks (its pull request merged, squashed or rebased), gets that commit,
   * pushed with a lease on what it held; one that still carries changes gets the files rendered on top of it, a
   * fast-forward, so the changes of several updates (a set's clusters) add up and no one's commit is overwritten.
   */
  async #propose(
    dir: string,
    url: string,
    base: string,
    head: string,
    live: Pending[],
    message: string,
    local: (args: string[], action?: string) => GitCommand,
    remote: (args: string[], action: string) => GitCommand,
  ): Promise<NonNullable<UpdateResult['proposal']>> {
    const tracking = `refs/remotes/origin/${head}`;
    const fetched = await runGit(
      remote(
        ['fetch', '--no-tags', '--no-recurse-submodules', 'origin', `+refs/heads/${head}:${tracking}`],
        `fetch ${head}`,
      ),
    );
    const missing = fetched.code !== 0 && /couldn't find remote ref/i.test(`${fetched.stderr}\n${fetched.stdout}`);
    if (fetched.code !== 0 && !missing)
      throw classifyGitError(`fetch ${head} from ${redact(url)}`, `${fetched.stderr}\n${fetched.stdout}`);
    await this.#checkBudget(dir, url);
    const push = async (lease: string) => {
      await mustRun(
        remote(
          [
            'push',
            '--no-verify',
            `--force-with-lease=refs/heads/${head}:${lease}`,
            'origin',
            `HEAD:refs/heads/${head}`,
          ],
          `push to ${head} of ${redact(url)}`,
        ),
      );
      return (await mustRun(local(['rev-parse', 'HEAD']))).trim();
    };
    if (missing) return { branch: head, commit: await push(''), pushed: true };
    const held = (await mustRun(local(['rev-parse', tracking]))).trim();
    const baseRef = `refs/remotes/origin/${base}`;
    const spent = await holdsNothingNew(local, `refs/remotes/origin/${base}`, held);
    if (spent) return { branch: head, commit: await push(held), pushed: true };
    const files = live.flatMap((p) => p.req.files);
    const entries = parseLsTree(
      await mustRun(
        local(['ls-tree', '-t', '-l', '-z', tracking, '--', ...new Set(files.flatMap((f) => prefixes(f.path)))]),
      ),
    );
    await mustRun(local(['checkout', '-q', '-f', '-B', head, tracking]));
    await this.#write(dir, files, entries);
    await mustRun(local(['add', '--', ...files.map((f) => f.path)]));
    if ((await mustRun(local(['diff', '--cached', '--name-only', '-z']))).length === 0)
      return { branch: head, commit: held, pushed: false };
    await mustRun(local(['commit', '-q', '--no-verify', '-m', message]));
    return { branch: head, commit: await push(held), pushed: true };
  }

  /**
   * #open makes the clone's repository on first use and repairs one an earlier process left half-made: a
   * killed git command's lock files are removed once per process (nothing else runs git in the clone: the
   * work dir is this process's, and each clone is used by one batch at a time), a missing repository is
   * made, and the remote is set whenever it is missing or points elsewhere.
   */
  async #open(dir: string, url: string, local: (args: string[]) => GitCommand): Promise<void> {
    await mkdir(dir, { recursive: true });
    if (!this.#opened.has(dir)) {
      for (const entry of await readdir(join(dir, '.git'), { recursive: true }).catch(() => [] as string[]))
        if (entry.endsWith('.lock')) await rm(join(dir, '.git', entry), { force: true });
      this.#opened.add(dir);
    }
    if (
      !(await access(join(dir, '.git', 'HEAD')).then(
        () => true,
        () => false,
      ))
    )
      await mustRun(local(['init', '-q', '--template=']));
    const current = await runGit(local(['config', '--get', 'remote.origin.url']));
    if (current.code !== 0 || current.stdout.trim() !== url) {
      await mustRun(local(['config', 'remote.origin.url', url]));
      await mustRun(local(['config', 'remote.origin.fetch', '+refs/heads/*:refs/remotes/origin/*']));
    }
  }

  /**
   * #fetch fetches the branch alone and checks out only the batch's files (a sparse checkout): the operator
   * needs three files per cluster, and a repository whose tree checks out to gigabytes, or to a million files,
   * must not fill the operator's disk. The tree is read before anything is checked out, and a file too large to
   * read is not checked out at all (the render refuses it). A fetch that leaves the clone's packs over
   * maxRepoBytes removes the clone and fails. It returns the tree entries on the batch's paths, or undefined
   * when the remote has no such branch (then the work tree is an empty orphan). The work tree must be clean.
   */
  async #fetch(
    dir: string,
    url: string,
    branch: string,
    batch: Pending[],
    local: (args: string[]) => GitCommand,
    remote: (args: string[], action: string) => GitCommand,
  ): Promise<ReturnType<typeof parseLsTree> | undefined> {
    const tracking = `refs/remotes/origin/${branch}`;
    const fetch = remote(
      ['fetch', '--no-tags', '--no-recurse-submodules', 'origin', `+refs/heads/${branch}:${tracking}`],
      `fetch ${branch} from ${redact(url)}`,
    );
    const out = await runGit(fetch);
    if (out.code === 0) {
      await this.#checkBudget(dir, url);
      const files = [...new Set(batch.flatMap((p) => p.req.files.map((f) => f.path)))];
      const paths = [...new Set(files.flatMap((f) => prefixes(f)))];
      const entries = parseLsTree(await mustRun(local(['ls-tree', '-t', '-l', '-z', tracking, '--', ...paths])));
      const readable = files.filter((f) => (entries.get(f)?.size ?? 0) <= this.#opts.maxFileBytes);
      await mkdir(join(dir, '.git', 'info'), { recursive: true });
      await writeFile(join(dir, '.git', 'info', 'sparse-checkout'), readable.map((f) => `/${f}\n`).join(''));
      await mustRun(local(['checkout', '-q', '-f', '-B', branch, tracking]));
      return entries;
    }
    const text = `${out.stderr}\n${out.stdout}`;
    if (!/couldn't find remote ref/i.test(text))
      throw classifyGitError(
        fetch.action,
        text,
        new Error(`git fetch exited with code ${out.code}: ${redact(text.trim())}`),
      );
    // An unborn branch: drop any local commit a failed push left behind, so it is made again, not skipped.
    await runGit(local(['update-ref', '-d', tracking]));
    await mustRun(local(['symbolic-ref', 'HEAD', `refs/heads/${branch}`]));
    await runGit(local(['update-ref', '-d', `refs/heads/${branch}`]));
    await mustRun(local(['read-tree', '--empty']));
    await mustRun(local(['clean', '-q', '-f', '-d', '-x']));
    return undefined;
  }

  /** #checkBudget removes a clone whose packs outgrew maxRepoBytes, and says so. */
  async #checkBudget(dir: string, url: string): Promise<void> {
    const packs = join(dir, '.git', 'objects', 'pack');
    let bytes = 0;
    for (const name of await readdir(packs).catch(() => [] as string[]))
      bytes += await stat(join(packs, name)).then(
        (st) => st.size,
        () => 0,
      );
    if (bytes <= this.#opts.maxRepoBytes) return;
    await rm(dir, { recursive: true, force: true });
    this.#opened.delete(dir);
    throw new GitError(
      'unsafeContent',
      `fetch from ${redact(url)}: the repository takes ${formatBytes(bytes)} on disk, more than the ` +
        `${formatBytes(this.#opts.maxRepoBytes)} the operator keeps for one repository`,
    );
  }

  /**
   * #render writes the files of a batch's updates into the work tree, and returns the updates it wrote; one
   * that cannot render, or whose paths are unsafe, is settled with its error and does not hold up the others.
   * One ls-tree checks the paths of the whole batch.
   */
  async #render(
    dir: string,
    batch: Pending[],
    entries: ReturnType<typeof parseLsTree> | undefined,
  ): Promise<Pending[]> {
    const live: Pending[] = [];
    for (const p of batch) {
      try {
        await this.#write(dir, p.req.files, entries);
        live.push(p);
      } catch (err) {
        settle(p, err);
      }
    }
    return live;
  }

  /**
   * #write renders every file of one update first, so an update whose rendering fails writes nothing. A path
   * that runs through a link, a submodule or a file where a folder belongs, or a file bigger than
   * maxFileBytes, is refused with a GitError of kind unsafeContent; a render that throws rejects the update
   * with its own error, unchanged.
   */
  async #write(dir: string, files: FileUpdate[], entries: ReturnType<typeof parseLsTree> | undefined): Promise<void> {
    if (entries) for (const f of files) checkTree(f.path, entries, this.#opts.maxFileBytes);
    const rendered: [string, string][] = [];
    for (const f of files) {
      const existing = await readInside(dir, f.path, this.#opts.maxFileBytes);
      const content = f.render(existing);
      if (content !== existing) rendered.push([f.path, content]);
    }
    for (const [path, content] of rendered) await writeInside(dir, path, content);
  }
}
