import type { Logger } from '../logger.ts';
import type { BootstrapOptions } from '../api/validate.ts';
import { USABLE_BY, type ClusterBootstrap } from '../api/types.ts';
import type { KubeObject } from '../kube/client.ts';
import type { GitAuth, UpdateRequest, UpdateResult } from '../git/types.ts';
import type { HostKey } from '../ssh/hostkeys.ts';
import type { KeyPair } from '../ssh/keys.ts';
import type {
  OpenPullRequest,
  OpenedPullRequest,
  ProviderOptions,
  PullRequest,
  PullRequestChange,
} from '../providers/types.ts';
import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { decodeSecret } from '../kube/objects.ts';
import type { Identity, SopsKeys } from './types.ts';

/**
 * KubeApi is what a phase asks of a Kubernetes API server, the management cluster's or a target's. The real
 * adapter is kube/client.ts's KubeClient; unit tests drive the phases with an in-memory one.
 */
export interface KubeApi {
  readonly server: string;
  /** fieldManager owns what `apply` writes. */
  readonly fieldManager: string;
  get<T = any>(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<T | undefined>;
  list<T = any>(
    apiVersion: string,
    kind: string,
    namespace?: string,
    query?: string,
    opts?: { metadataOnly?: boolean },
  ): Promise<T[]>;
  create<T extends KubeObject>(obj: T): Promise<T>;
  apply<T extends KubeObject>(
    obj: T,
    opts?: { fieldManager?: string; force?: boolean; metadataOnly?: boolean },
  ): Promise<T>;
  mergePatch<T = any>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource?: string,
  ): Promise<T>;
  delete(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<void>;
  /** request sends one raw call (discovery documents, JSON patches) and returns the decoded JSON. */
  request<T = any>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
  resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string>;
  /** forget drops what discovery found, after new CRDs. */
  forget(): void;
  /** withSignal, where the adapter has it, is a view of the same client whose calls in flight end on abort. */
  withSignal?(signal: AbortSignal): KubeApi;
}

/** GitRemote is what a phase asks of the git host: read a branch's head, commit files (batched), its host keys. */
export interface GitRemote {
  /**
   * readHead checks that `auth` can read the repository and returns the branch's head, if it has one; the
   * signal ends the read.
   */
  readHead(url: string, branch: string, auth: GitAuth, signal?: AbortSignal): Promise<string | undefined>;
  /**
   * update renders the files onto the branch and pushes a commit when they changed (see git/repository.ts);
   * an update whose `signal` is aborted is withdrawn, and pushes nothing.
   */
  update(req: UpdateRequest): Promise<UpdateResult>;
  /** scanHostKeys lists every host key the SSH server offers (shared by the lookups of one moment). */
  scanHostKeys(host: string, port: number): Promise<HostKey[]>;
}

/**
 * IdentityStore keeps a ClusterBootstrap's Flux identity — its key pair, the pinned host keys and a rotation's
 * state — and alone knows the layout of the Secret that holds it. Every write that could race (the first
 * key, the next key of a rotation) is a create or guarded by the resourceVersion, so racing or restarted
 * reconciles end with one key.
 */
export interface IdentityStore {
  readonly secretName: string;
  /** read returns the identity, or undefined when the Secret does not exist; InvalidIdentity when it is unusable. */
  read(): Promise<StoredIdentity | undefined>;
  /** create stores a first key pair made at `at`; when another reconcile created one first, that one is returned. */
  create(keys: KeyPair, algorithm: string, at: string): Promise<StoredIdentity>;
  /** pinKnownHosts stores the host keys seen on the first scan. */
  pinKnownHosts(knownHosts: string): Promise<void>;
  /**
   * beginRotation keeps `next` beside the current key; when another reconcile began one first, that one is returned.
   */
  beginRotation(current: StoredIdentity, next: KeyPair, requestedAt: string): Promise<StoredIdentity>;
  /** switchToNext makes the next key the current one and keeps the current one as `previous`. */
  switchToNext(identity: Identity, at: string): Promise<void>;
  /** retirePrevious forgets the previous key and the rotation's state. */
  retirePrevious(): Promise<void>;
  /**
   * storeSops writes the SOPS keys, guarded by `current`'s resourceVersion: when another reconcile wrote first, the
   * identity it left is returned (so racing reconciles keep one key).
   */
  storeSops(current: StoredIdentity, sops: SopsKeys): Promise<StoredIdentity>;
  /** allKeys lists every public key the identity holds: current, next and previous. */
  allKeys(): Promise<string[]>;
}

/** StoredIdentity is an Identity as read from its Secret: when its current key was made, and the Secret's version. */
export interface StoredIdentity extends Identity {
  createdAt?: string;
  resourceVersion?: string;
}

/** ProviderKeys registers and removes Flux's deploy keys through the git host's API. */
export interface ProviderKeys {
  /** ensure registers a read-only deploy key unless the same key material is there. */
  ensure(title: string, publicKey: string): Promise<{ created: boolean }>;
  /** remove removes every deploy key with this key material. */
  remove(publicKey: string): Promise<void>;
}

/**
 * ProviderPulls opens and updates the pull request of pull-request mode through the git host's API (GitLab: merge
 * request), from a head branch of the repository itself; the real adapter is providers/index.ts's providerPulls.
 */
export interface ProviderPulls {
  /**
   * find returns the pull request from `head` into `base`: the open one, else the most recent closed or merged one
   * (`state` tells which, so a closed one is not reopened), else undefined.
   */
  find(head: string, base: string): Promise<PullRequest | undefined>;
  /** open creates it; labels and reviewers are best-effort, and `warnings` says which could not be set. */
  open(req: OpenPullRequest): Promise<OpenedPullRequest>;
  /** update changes its title and/or body and returns it as it is now. */
  update(number: number, change: PullRequestChange): Promise<PullRequest>;
  /** autoMerge, absent where the provider has none (Bitbucket Server), merges it once its checks and approvals pass. */
  autoMerge?(number: number): Promise<void>;
}

/** Clock is the time a phase sees; tests move it by hand. sleep rejects with a CancelledError on abort. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** Context is what every phase of one reconcile sees: the resource as read, its options and narrow adapters. */
export interface Context {
  /** cb is the resource as read at the start of the reconcile; its status is what the last reconcile wrote. */
  cb: ClusterBootstrap;
  opts: BootstrapOptions;
  log: Logger;
  mgmt: KubeApi;
  git: GitRemote;
  identity: IdentityStore;
  /** provider connects to the git host's API with a token (spec.git.provider). */
  provider: (opts: ProviderOptions) => ProviderKeys;
  /** pulls connects to the git host's pull-request API with the same token (spec.git.pullRequest). */
  pulls: (opts: ProviderOptions) => ProviderPulls;
  /** targetClient returns a client for a kubeconfig, or for the operator's own cluster when it is undefined. */
  targetClient: (kubeconfig: string | undefined) => KubeApi;
  clock: Clock;
  /** signal is aborted when the reconcile is cancelled (deadline, lost Lease, shutdown). */
  signal: AbortSignal;
  /** resyncMs is how often a Ready resource is looked at again; Flux's components are applied at least this often. */
  resyncMs: number;
  /** record writes an Event on the ClusterBootstrap; a failure to write it is logged, never thrown. */
  record: (type: 'Normal' | 'Warning', reason: string, message: string) => Promise<void>;
}

/**
 * SecretRef names a Secret of the ClusterBootstrap's namespace, the spec field that names it, and what it must hold.
 */
export interface SecretRef {
  name: string;
  field: string;
  /** what says what the Secret is for, in the Missing message: `create it with …`. */
  what: string;
}

/** INVALID is the reason for a Secret that exists but cannot be used, by the reason for one that is missing. */
const INVALID = {
  [Reasons.GitCredentialsMissing]: Reasons.GitCredentialsInvalid,
  [Reasons.KubeconfigSecretMissing]: Reasons.KubeconfigInvalid,
} as const;

/**
 * readRef reads a Secret the spec names, in the ClusterBootstrap's own namespace, as UTF-8 strings: a Secret
 * that does not exist is `missing` (KubeconfigSecretMissing, GitCredentialsMissing). A ServiceAccount token
 * Secret is never used — its token would be sent to the tenant's git host or copied to her cluster — and where
 * the operator requires it (--require-usable-label) only a Secret the platform team labelled USABLE_BY (`all`,
 * or this ClusterBootstrap's name) is; what the Secret holds is the caller's to judge (see invalidRef).
 */
export async function readRef(
  ctx: Context,
  ref: SecretRef,
  missing: keyof typeof INVALID = Reasons.GitCredentialsMissing,
): Promise<Record<string, string>> {
  const secret = await ctx.mgmt.get('v1', 'Secret', ctx.cb.metadata.namespace, ref.name);
  if (!secret)
    throw new PhaseError(
      missing,
      `Secret ${ctx.cb.metadata.namespace}/${ref.name} (${ref.field}) does not exist: create it with ${ref.what}`,
    );
  if (secret.type === 'kubernetes.io/service-account-token')
    throw invalidRef(
      ctx,
      ref,
      `(${ref.field}) is a ServiceAccount token: the operator never uses one`,
      INVALID[missing],
    );
  const usableBy = secret.metadata?.labels?.[USABLE_BY];
  if (ctx.opts.requireUsableLabel && usableBy !== 'all' && usableBy !== ctx.cb.metadata.name)
    throw invalidRef(
      ctx,
      ref,
      `(${ref.field}) is not labelled ${USABLE_BY}=all or =${ctx.cb.metadata.name}: the operator uses only the ` +
        'Secrets the platform team marked for ClusterBootstraps',
      INVALID[missing],
    );
  return decodeSecret(secret);
}

/** invalidRef is the error for a Secret that exists but does not hold what it must: `must` says what. */
export function invalidRef(
  ctx: Context,
  ref: Pick<SecretRef, 'name'>,
  must: string,
  reason: typeof Reasons.GitCredentialsInvalid | typeof Reasons.KubeconfigInvalid = Reasons.GitCredentialsInvalid,
): PhaseError {
  return new PhaseError(reason, `Secret ${ctx.cb.metadata.namespace}/${ref.name} ${must}`);
}

/**
 * backoffWhileWaiting is how long to wait before looking again at something the operator waits for (a deploy
 * key registered, Flux Ready): soon at first, then half the time waited so far under that condition and
 * reason, between minMs and maxMs — so a fleet standing still is looked at less and less often.
 */
export function backoffWhileWaiting(
  ctx: Pick<Context, 'cb' | 'clock'>,
  type: string,
  reason: string,
  minMs: number,
  maxMs: number,
): number {
  const waiting = ctx.cb.status?.conditions?.find(
    (c) => c.type === type && c.status === 'False' && c.reason === reason,
  );
  const waitedMs = waiting ? ctx.clock.now() - Date.parse(waiting.lastTransitionTime ?? '') : 0;
  return Math.min(maxMs, Math.max(minMs, Number.isFinite(waitedMs) ? waitedMs / 2 : 0));
}

/**
 * providerOptions reads the git host's API token from spec.git.provider's Secret; undefined for a `generic` provider,
 * whose deploy key a person registers.
 */
export async function providerOptions(ctx: Context): Promise<ProviderOptions | undefined> {
  const { provider, url } = ctx.opts.git;
  if (provider.type === 'generic' || !provider.secretName) return undefined;
  const ref = {
    name: provider.secretName,
    field: 'spec.git.provider.secretRef',
    what: 'the API token under the key "token"',
  };
  const data = await readRef(ctx, ref);
  if (!data.token) throw invalidRef(ctx, ref, `must hold the ${provider.type} API token under the key "token"`);
  return {
    type: provider.type,
    apiUrl: provider.url,
    token: data.token,
    repoUrl: url,
    tokenRef: `Secret ${ctx.cb.metadata.namespace}/${provider.secretName}`,
    caData: data['ca.crt'],
  };
}
