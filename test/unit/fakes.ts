/**
 * In-memory adapters for the phases' narrow interfaces (src/phases/context.ts), so that the decisions of the
 * phases and reconcilers run in milliseconds. They keep only what the phases rely on — resourceVersions and
 * 409s, merge-patch nulls, stringData turned into data, discovery of applied CRDs — and record every call.
 * The lab (test/e2e/) proves the real adapters against real API servers, git and Flux.
 */
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import pino from 'pino';
import ssh2 from 'ssh2';
import { API_VERSION, KIND, type ClusterBootstrap, type ClusterBootstrapSpec } from '../../src/api/types.ts';
import { validate, type BootstrapOptions } from '../../src/api/validate.ts';
import { SecretIdentityStore } from '../../src/kube/identity.ts';
import { GitError } from '../../src/git/errors.ts';
import type { GitAuth, UpdateRequest, UpdateResult } from '../../src/git/types.ts';
import { KubeError, type KubeObject } from '../../src/kube/client.ts';
import { decodeSecret } from '../../src/kube/objects.ts';
import type { Clock, Context, GitRemote, KubeApi, ProviderKeys, ProviderPulls } from '../../src/phases/context.ts';
import {
  ProviderError,
  type OpenPullRequest,
  type OpenedPullRequest,
  type PullRequest,
  type PullRequestChange,
} from '../../src/providers/types.ts';
import { Reconciler } from '../../src/controller/reconciler.ts';
import type { EventRecorder } from '../../src/controller/events.ts';
import type { HostKey } from '../../src/ssh/hostkeys.ts';
import { generateKeyPair, type KeyPair } from '../../src/ssh/keys.ts';

/** Call is one call an adapter received, and whether its reconcile had been cancelled by then. */
export interface Call {
  what: string;
  aborted: boolean;
}

/** Calls is the log the adapters of one world share, in order, with the signal of the run being watched. */
export class Calls {
  readonly list: Call[] = [];
  signal?: AbortSignal;
  /** before runs before each call: a test throws from it to fail the call, or aborts a run. */
  before?: (what: string, index: number) => void | Promise<void>;
  async note(what: string): Promise<void> {
    this.list.push({ what, aborted: this.signal?.aborted ?? false });
    await this.before?.(what, this.list.length - 1);
  }
  afterAbort(): Call[] {
    return this.list.filter((c) => c.aborted);
  }
}

const clone = <T>(v: T): T => (v === undefined ? v : structuredClone(v));
const isObject = (v: unknown): v is Record<string, any> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** mergePatch applies an RFC 7386 merge patch. */
function merge(target: any, patch: any): any {
  if (!isObject(patch)) return clone(patch);
  const out: Record<string, any> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(out[k], v);
  }
  return out;
}

/** secretData turns a Secret's stringData into base64 data, as the API server does. */
function secretData(obj: any): any {
  if (obj.kind !== 'Secret' && !obj.stringData) return obj;
  const { stringData, ...rest } = obj;
  const data = { ...rest.data };
  for (const [k, v] of Object.entries(stringData ?? {})) data[k] = Buffer.from(String(v)).toString('base64');
  return { ...rest, data };
}

/**
 * FakeKube is an in-memory API server for the kinds the phases use: objects by kind, namespace and name,
 * resourceVersions (a stale one in a merge patch is a 409), create conflicts, server-side apply as a
 * replacement of the fields given, and discovery of the CRDs applied.
 */
export class FakeKube implements KubeApi {
  readonly server: string;
  readonly fieldManager = 'flux-bootstrap-operator';
  readonly objects = new Map<string, any>();
  readonly calls: Calls;
  /** decorate changes what a get or list returns: a test plays Flux's controllers with it. */
  decorate?: (obj: any) => any;
  /** establishes is false for a server that never serves the CRDs applied to it. */
  establishes = true;
  #rv = 0;

  constructor(calls = new Calls(), server = 'https://fake.example') {
    this.calls = calls;
    this.server = server;
  }

  static key(kind: string, namespace: string | undefined, name: string): string {
    return `${kind}|${namespace ?? ''}|${name}`;
  }

  /** put stores an object as a test sets it up, without recording a call. */
  put(obj: any): any {
    const stored = this.#store(secretData(clone(obj)));
    return clone(stored);
  }

  /** read returns a stored object as it is, without recording a call. */
  read(kind: string, namespace: string | undefined, name: string): any {
    return clone(this.objects.get(FakeKube.key(kind, namespace, name)));
  }

  /** of lists the stored objects of a kind, without recording a call. */
  of(kind: string): any[] {
    return [...this.objects.values()].filter((o) => o.kind === kind).map(clone);
  }

  #store(obj: any): any {
    const key = FakeKube.key(obj.kind, obj.metadata.namespace, obj.metadata.name);
    const before = this.objects.get(key);
    obj.metadata = {
      uid: before?.metadata.uid ?? `uid-${obj.kind}-${obj.metadata.name}`,
      creationTimestamp: before?.metadata.creationTimestamp ?? '2026-01-01T00:00:00Z',
      generation: before?.metadata.generation ?? 1,
      ...obj.metadata,
      resourceVersion: String(++this.#rv),
    };
    this.objects.set(key, obj);
    return obj;
  }

  #view(obj: any): any {
    return obj === undefined ? undefined : clone(this.decorate ? this.decorate(clone(obj)) : obj);
  }

  async get<T = any>(_apiVersion: string, kind: string, namespace: string | undefined, name: string) {
    await this.calls.note(`${this.server} get ${kind} ${namespace ?? ''}/${name}`);
    return this.#view(this.objects.get(FakeKube.key(kind, namespace, name))) as T | undefined;
  }

  async list<T = any>(_apiVersion: string, kind: string, namespace?: string, query = ''): Promise<T[]> {
    await this.calls.note(`${this.server} list ${kind} ${namespace ?? ''}${query}`);
    const selector = decodeURIComponent(/labelSelector=([^&]*)/.exec(query)?.[1] ?? '');
    const wanted = selector ? selector.split(',').map((p) => p.split('=')) : [];
    return [...this.objects.values()]
      .filter((o) => o.kind === kind && (!namespace || o.metadata.namespace === namespace))
      .filter((o) => wanted.every(([k, v]) => o.metadata.labels?.[k] === v))
      .map((o) => this.#view(o));
  }

  async create<T extends KubeObject>(obj: T): Promise<T> {
    await this.calls.note(`${this.server} create ${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
    if (this.objects.has(FakeKube.key(obj.kind, obj.metadata.namespace, obj.metadata.name)))
      throw new KubeError(409, 'AlreadyExists', `${obj.kind} ${obj.metadata.name} already exists`);
    return clone(this.#store(secretData(clone(obj))));
  }

  async apply<T extends KubeObject>(obj: T, opts: { fieldManager?: string } = {}): Promise<T> {
    await this.calls.note(`${this.server} apply ${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
    const key = FakeKube.key(obj.kind, obj.metadata.namespace, obj.metadata.name);
    const before = this.objects.get(key);
    const manager = opts.fieldManager ?? this.fieldManager;
    const managedFields = [
      ...(before?.metadata.managedFields ?? []).filter((f: any) => f.manager !== manager),
      { manager, operation: 'Apply' },
    ];
    // As the API server does: stringData is written into data, and a key of it left out later is not pruned
    // (apply owns `stringData`, not the `data` it became); only an applied `data` prunes what it left out.
    const kept = obj.kind === 'Secret' && (obj as any).stringData && !(obj as any).data ? before?.data : undefined;
    const next = secretData(clone(obj));
    if (kept) next.data = { ...kept, ...next.data };
    const status = before?.status;
    return clone(
      this.#store({ ...next, ...(status ? { status } : {}), metadata: { ...next.metadata, managedFields } }),
    );
  }

  async mergePatch<T = any>(
    _apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: any,
    subresource = '',
  ): Promise<T> {
    await this.calls.note(
      `${this.server} patch ${kind} ${namespace ?? ''}/${name}${subresource ? `/${subresource}` : ''}`,
    );
    const key = FakeKube.key(kind, namespace, name);
    const before = this.objects.get(key);
    if (!before) throw new KubeError(404, 'NotFound', `${kind} ${name} not found`);
    const rv = patch?.metadata?.resourceVersion;
    if (rv !== undefined && rv !== before.metadata.resourceVersion)
      throw new KubeError(409, 'Conflict', `${kind} ${name}: the object has been modified`);
    const body = subresource === 'status' ? { status: patch.status } : patch;
    const merged = secretData(merge(before, body));
    if (
      patch?.metadata?.finalizers === null ||
      (merged.metadata.deletionTimestamp && !merged.metadata.finalizers?.length)
    ) {
      if (merged.metadata.deletionTimestamp) {
        this.objects.delete(key);
        return clone(merged);
      }
    }
    return clone(this.#store(merged));
  }

  async delete(_apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<void> {
    await this.calls.note(`${this.server} delete ${kind} ${namespace ?? ''}/${name}`);
    const key = FakeKube.key(kind, namespace, name);
    const obj = this.objects.get(key);
    if (!obj) return;
    if (obj.metadata.finalizers?.length) obj.metadata.deletionTimestamp ??= '2026-01-01T00:00:00Z';
    else this.objects.delete(key);
  }

  async request<T = any>(method: string, path: string, body?: any): Promise<T> {
    await this.calls.note(`${this.server} ${method} ${path}`);
    if (path === '/version') return { gitVersion: 'v1.36.4' } as T;
    const discovery = /^\/apis\/([^/]+)\/([^/]+)$/.exec(path);
    if (method === 'GET' && discovery) {
      const resources = this.of('CustomResourceDefinition')
        .filter(() => this.establishes)
        .filter(
          (c) => c.spec.group === discovery[1] && c.spec.versions.some((v: any) => v.name === discovery[2] && v.served),
        )
        .map((c) => ({ name: c.spec.names.plural, kind: c.spec.names.kind }));
      if (resources.length === 0) throw new KubeError(404, 'NotFound', `${path} not found`);
      return { resources } as T;
    }
    const object = /^\/fake\/([^/]+)\/([^/]*)\/(.+)$/.exec(path);
    if (method === 'PATCH' && object) {
      const key = FakeKube.key(object[1], object[2] || undefined, object[3]);
      const obj = this.objects.get(key);
      for (const op of body as any[]) {
        if (op.op === 'test' && obj.metadata.resourceVersion !== op.value)
          throw new KubeError(422, 'Invalid', 'test failed');
        if (op.op === 'replace' && op.path === '/metadata/managedFields')
          obj.metadata.managedFields = op.value.filter((f: any) => f.manager);
      }
      return clone(this.#store(obj)) as T;
    }
    throw new KubeError(404, 'NotFound', `${method} ${path}: the fake serves no such path`);
  }

  async resourcePath(_apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string> {
    return `/fake/${kind}/${namespace ?? ''}/${name ?? ''}`;
  }

  forget(): void {}
}

/** publicOf is the public key line of a private key. */
export function publicOf(privateKey: string): string {
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

const material = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(' ');

/**
 * FakeGit is one repository on one git host: files on one branch, the keys that may read it, the one that
 * may write, and the host keys its SSH server offers.
 */
export class FakeGit implements GitRemote {
  readonly files = new Map<string, string>();
  readonly readers = new Set<string>();
  writer = '';
  head: string | undefined;
  commits = 0;
  hostKeys: HostKey[] = [
    {
      host: '[git.example]:2222',
      type: 'ssh-ed25519',
      key: 'AAAAC3NzaC1lZDI1NTE5AAAAIGl0c19hX2Zha2VfaG9zdF9rZXlfZm9yX3Rlc3Rz',
    },
  ];
  readonly calls: Calls;

  constructor(calls = new Calls()) {
    this.calls = calls;
  }

  /** authorize lets a public key read the repository, as a registered deploy key does. */
  authorize(publicKey: string): void {
    this.readers.add(material(publicKey));
  }

  #can(auth: GitAuth, write: boolean): boolean {
    if (auth.transport !== 'ssh') return false;
    const key = material(publicOf(auth.privateKey));
    return key === this.writer || (!write && this.readers.has(key));
  }

  async readHead(url: string, _branch: string, auth: GitAuth): Promise<string | undefined> {
    await this.calls.note(`git ls-remote ${url}`);
    if (!this.#can(auth, false)) throw new GitError('auth', `read ${url}: Permission denied (publickey)`);
    return this.head;
  }

  /** protected refuses pushes to the base branch, as branch protection does. */
  protected = false;
  /** heads are the head branches of pull-request mode: their files, and a commit id. */
  readonly heads = new Map<string, { files: Map<string, string>; commit: string }>();

  async update(req: UpdateRequest): Promise<UpdateResult> {
    if (req.proposeTo !== undefined) return this.#propose(req, req.proposeTo);
    if (this.protected && this.#can(req.auth, true)) {
      const changed = req.files.some((f) => f.render(this.files.get(f.path)) !== this.files.get(f.path));
      if (changed) throw new GitError('protected', `push to ${req.url}: Not allowed to push to protected branch`);
    }
    await this.calls.note(`git fetch ${req.url}`);
    if (!this.#can(req.auth, false)) throw new GitError('auth', `fetch ${req.url}: Permission denied (publickey)`);
    const scan = req.scan;
    const found = scan
      ? [...this.files]
          .filter(([p, c]) => p.startsWith(`${scan.path}/`) && !scan.exclude?.includes(p) && c.includes(scan.needle))
          .map(([p]) => p)
      : undefined;
    const rendered = req.files.map((f) => [f.path, f.render(this.files.get(f.path))] as const);
    const changed = rendered.filter(([path, content]) => this.files.get(path) !== content);
    if (changed.length === 0) return { head: this.head ?? '', pushed: false, attempts: 1, found };
    // As Repositories does: an update withdrawn before its push pushes nothing.
    if (req.signal?.aborted) throw req.signal.reason;
    await this.calls.note(`git push ${req.url}`);
    if (!this.#can(req.auth, true)) throw new GitError('protected', `push to ${req.url}: pre-receive hook declined`);
    for (const [path, content] of changed) this.files.set(path, content);
    this.commits++;
    this.head = createHash('sha1').update(`${this.commits}`).digest('hex');
    return { head: this.head, pushed: true, attempts: 1, found };
  }

  /** #propose is pull-request mode: judged against the base, then rendered onto the head branch. */
  async #propose(req: UpdateRequest, branch: string): Promise<UpdateResult> {
    await this.calls.note(`git fetch ${req.url} ${branch}`);
    const onBase = req.files.every((f) => f.render(this.files.get(f.path)) === this.files.get(f.path));
    if (onBase) return { head: this.head ?? '', pushed: false, attempts: 1 };
    const held = this.heads.get(branch);
    const spent = !held || [...held.files].every(([p, c]) => this.files.get(p) === c);
    const files = new Map(spent ? this.files : held.files);
    let changed = spent;
    for (const f of req.files) {
      const content = f.render(files.get(f.path));
      if (content !== files.get(f.path)) changed = true;
      files.set(f.path, content);
    }
    if (!changed)
      return {
        head: this.head ?? '',
        pushed: false,
        attempts: 1,
        proposal: { branch, commit: held!.commit, pushed: false },
      };
    await this.calls.note(`git push ${req.url} ${branch}`);
    this.commits++;
    const commit = createHash('sha1').update(`head ${this.commits}`).digest('hex');
    this.heads.set(branch, { files, commit });
    return { head: this.head ?? '', pushed: false, attempts: 1, proposal: { branch, commit, pushed: true } };
  }

  /** merge squashes a head branch into the base, as a reviewer merging its pull request does. */
  merge(branch: string): void {
    for (const [p, c] of this.heads.get(branch)!.files) this.files.set(p, c);
    this.commits++;
    this.head = createHash('sha1').update(`${this.commits}`).digest('hex');
  }

  async scanHostKeys(host: string, port: number): Promise<HostKey[]> {
    await this.calls.note(`ssh-keyscan ${host}:${port}`);
    return this.hostKeys.map((k) => ({ ...k }));
  }
}

/** FakePulls is a git host's pull-request API over a FakeGit's head branches. */
export class FakePulls implements ProviderPulls {
  readonly prs: PullRequest[] = [];
  readonly calls: Calls;

  constructor(calls: Calls) {
    this.calls = calls;
  }

  async find(head: string, base: string): Promise<PullRequest | undefined> {
    await this.calls.note(`pulls find ${head}`);
    const mine = this.prs.filter((p) => p.head === head && p.base === base);
    return mine.find((p) => p.state === 'open') ?? mine.at(-1);
  }

  async open(req: OpenPullRequest): Promise<OpenedPullRequest> {
    await this.calls.note(`pulls open ${req.head}`);
    if (this.prs.some((p) => p.head === req.head && p.state === 'open'))
      throw new ProviderError('conflict', 'a pull request for this branch already exists');
    const number = this.prs.length + 1;
    const pr: PullRequest = {
      number,
      url: `https://git.example/org/fleet/pulls/${number}`,
      state: 'open',
      head: req.head,
      base: req.base,
      title: req.title,
    };
    this.prs.push(pr);
    return { ...pr, warnings: [] };
  }

  async update(number: number, change: PullRequestChange): Promise<PullRequest> {
    const pr = this.prs[number - 1];
    Object.assign(pr, change.title ? { title: change.title } : {});
    return { ...pr };
  }

  /** set changes a pull request's state, as a reviewer does. */
  set(number: number, state: PullRequest['state']): void {
    this.prs[number - 1].state = state;
  }
}

/** FakeProvider is a git host's deploy-key API, registering keys on a FakeGit. */
export class FakeProvider implements ProviderKeys {
  readonly keys = new Map<string, string>();
  readonly git: FakeGit;
  constructor(git: FakeGit) {
    this.git = git;
  }
  async ensure(title: string, publicKey: string): Promise<{ created: boolean }> {
    await this.git.calls.note(`provider ensure ${title}`);
    if ([...this.keys.values()].some((k) => material(k) === material(publicKey))) return { created: false };
    this.keys.set(title, publicKey);
    this.git.authorize(publicKey);
    return { created: true };
  }
  async remove(publicKey: string): Promise<void> {
    await this.git.calls.note(`provider remove ${material(publicKey).slice(0, 30)}`);
    for (const [title, key] of this.keys) if (material(key) === material(publicKey)) this.keys.delete(title);
    this.git.readers.delete(material(publicKey));
  }
}

/** FakeClock is a clock a test moves by hand; sleep returns at once (the time moves on by what it slept). */
export class FakeClock implements Clock {
  t = Date.parse('2026-12-01T00:00:00Z');
  now = () => this.t;
  sleep = async (ms: number) => {
    this.t += ms;
  };
}

export const silentLog = pino({ level: 'silent' });

/** Recorded is one Event the operator recorded. */
export interface Recorded {
  type: string;
  reason: string;
  message: string;
}

/** World is a management cluster, one target cluster and a git host, with one ClusterBootstrap to reconcile. */
export interface World {
  calls: Calls;
  mgmt: FakeKube;
  target: FakeKube;
  git: FakeGit;
  provider: FakeProvider;
  pulls: FakePulls;
  clock: FakeClock;
  events: Recorded[];
  reconciler: Reconciler;
  push: KeyPair;
  /**
   * flux plays Flux's controllers in the target: once running, the sync objects report Ready at the branch's
   * head; `stale` keeps the GitRepository from acknowledging a fetch asked for (a key switch's refetch).
   */
  flux: { running: boolean; stale?: boolean };
  /** cb reads the ClusterBootstrap as stored. */
  cb(): ClusterBootstrap;
  reconcile(signal?: AbortSignal): ReturnType<Reconciler['reconcile']>;
  /** restart replaces the Reconciler with a new one, as a restarted operator. */
  restart(): void;
}

export const NS = 'team';
export const NAME = 'prod';
export const URL_ = 'ssh://git@git.example:2222/org/fleet.git';

/** world sets up a ClusterBootstrap with a push key and a kubeconfig Secret, and the fakes it runs against. */
export async function world(
  spec: Partial<ClusterBootstrapSpec> = {},
  opts: { provider?: boolean } = {},
): Promise<World> {
  const calls = new Calls();
  const mgmt = new FakeKube(calls, 'https://mgmt.example');
  const target = new FakeKube(calls, 'https://target.example');
  const git = new FakeGit(calls);
  const provider = new FakeProvider(git);
  const pulls = new FakePulls(calls);
  const clock = new FakeClock();
  const events: Recorded[] = [];
  const flux: World['flux'] = { running: false };
  const push = await generateKeyPair({ algorithm: 'ed25519', comment: 'push' });
  git.writer = material(push.publicKey);
  mgmt.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'push', namespace: NS },
    stringData: { identity: push.privateKey },
  });
  mgmt.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'prod-kubeconfig', namespace: NS },
    stringData: { value: 'fake' },
  });
  if (opts.provider)
    mgmt.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'api', namespace: NS },
      stringData: { token: 't0ken' },
    });
  const { git: gitSpec, ...rest } = spec;
  const providerSpec = { provider: { type: 'gitea', url: 'https://git.example/api/v1', secretRef: { name: 'api' } } };
  mgmt.put({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: NAME, namespace: NS, generation: 1 },
    spec: {
      target: { kubeconfigSecretRef: { name: 'prod-kubeconfig' } },
      ...rest,
      git: { url: URL_, secretRef: { name: 'push' }, ...(opts.provider ? providerSpec : {}), ...gitSpec },
    },
  });
  target.decorate = (obj) => {
    if (!flux.running || !['GitRepository', 'Kustomization'].includes(obj.kind)) return obj;
    const revision = `main@sha1:${git.head}`;
    return {
      ...obj,
      status: {
        observedGeneration: obj.metadata.generation,
        conditions: [{ type: 'Ready', status: 'True', reason: 'Succeeded', message: `applied ${revision}` }],
        ...(obj.kind === 'Kustomization' ? { lastAppliedRevision: revision } : { artifact: { revision } }),
        lastHandledReconcileAt: flux.stale ? undefined : obj.metadata.annotations?.['reconcile.fluxcd.io/requestedAt'],
      },
    };
  };
  const recorder: EventRecorder = {
    record: async (_cb, type, reason, message) => void events.push({ type, reason, message }),
  };
  // A new Reconciler is an operator restarted: everything it knows it reads again from the clusters and git.
  const restart = () =>
    new Reconciler({
      mgmt,
      git,
      log: silentLog,
      events: recorder,
      resyncMs: 10 * 60_000,
      targetClient: (kubeconfig) => {
        // A kubeconfig the real parser refuses, as parseTargetKubeconfig does.
        if (kubeconfig === 'exec')
          throw Object.assign(new Error('users[0].user.exec is not allowed'), { name: 'KubeconfigError' });
        return target;
      },
      provider: () => provider,
      pulls: () => pulls,
      clock: () => clock,
    });
  const w: World = {
    calls,
    mgmt,
    target,
    git,
    provider,
    pulls,
    clock,
    events,
    reconciler: restart(),
    push,
    flux,
    cb: () => mgmt.read(KIND, NS, NAME),
    reconcile: (signal) => {
      calls.signal = signal;
      return w.reconciler.reconcile(NS, NAME, signal);
    },
    restart: () => void (w.reconciler = restart()),
  };
  return w;
}

/** condition returns a condition of the stored ClusterBootstrap. */
export function condition(w: World, type: string) {
  return w.cb().status?.conditions?.find((c: any) => c.type === type);
}

/** contextOf is the Context the phases of one pass over the world's ClusterBootstrap see (no signal guard). */
export function contextOf(w: World, signal = new AbortController().signal): Context {
  const cb = w.cb();
  const opts: BootstrapOptions = validate(cb);
  return {
    cb,
    opts,
    log: silentLog,
    mgmt: w.mgmt,
    git: w.git,
    identity: new SecretIdentityStore(w.mgmt, cb),
    provider: () => w.provider,
    pulls: () => w.pulls,
    targetClient: () => w.target,
    clock: w.clock,
    signal,
    resyncMs: 10 * 60_000,
    record: async (type, reason, message) => void w.events.push({ type, reason, message }),
  };
}

/** registerKey registers the ClusterBootstrap's published public key on the git host, as a person would. */
export function registerKey(w: World, publicKey = w.cb().status?.identity?.publicKey): void {
  assert.ok(publicKey, 'a public key is published');
  w.git.authorize(publicKey);
}

/** secretData reads a stored Secret's data as strings. */
export function secretOf(kube: FakeKube, namespace: string, name: string): Record<string, string> {
  return decodeSecret(kube.read('Secret', namespace, name));
}

/** annotate sets an annotation on the stored ClusterBootstrap. */
export function annotate(w: World, key: string, value: string): void {
  const cb = w.cb();
  w.mgmt.put({ ...cb, metadata: { ...cb.metadata, annotations: { ...cb.metadata.annotations, [key]: value } } });
}
