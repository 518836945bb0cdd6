/** DeployKey is one SSH key registered on a repository; `key` is `type base64`, without a comment. */
export interface DeployKey {
  id: string;
  title: string;
  key: string;
  readOnly: boolean;
}

/**
 * DeployKeyProvider manages the deploy keys of one repository on one git host. Each call has its own hard
 * deadline and fails with ProviderError.
 */
export interface DeployKeyProvider {
  /** list returns every deploy key of the repository, all pages. */
  list(): Promise<DeployKey[]>;
  /** add registers a read-only deploy key. */
  add(title: string, publicKey: string): Promise<DeployKey>;
  /** remove deletes a deploy key by id; one that is already gone is not an error. */
  remove(id: string): Promise<void>;
}

/** PullRequestState is a pull request's state on any provider; a merged one is never `closed`. */
export type PullRequestState = 'open' | 'closed' | 'merged';

/**
 * PullRequest is a pull request (GitLab: merge request) as every provider's adapter reports it: `number` is what the
 * provider's web pages show (GitLab's iid), `url` the page for people.
 */
export interface PullRequest {
  number: number;
  /** url is the pull request's web page; empty when the server sent no http(s) URL. */
  url: string;
  state: PullRequestState;
  /** head is the branch the changes come from. */
  head: string;
  /** base is the branch they are to be merged into. */
  base: string;
  /** headSha is the head branch's commit the pull request shows, where the provider says. */
  headSha?: string;
  title: string;
}

/** OpenPullRequest asks for a pull request from `head` into `base`; labels and reviewers are best-effort. */
export interface OpenPullRequest {
  head: string;
  base: string;
  title: string;
  body: string;
  labels?: string[];
  /** reviewers are user names. */
  reviewers?: string[];
}

/**
 * OpenedPullRequest is the pull request `open` made. `warnings` says what of the labels and reviewers could not be
 * set: they are best-effort, so their failures never fail the open.
 */
export interface OpenedPullRequest extends PullRequest {
  warnings: string[];
}

/** PullRequestChange is what `update` changes; what it leaves out stays as it is. */
export interface PullRequestChange {
  title?: string;
  body?: string;
}

/**
 * PullRequestProvider opens and updates the pull requests of one repository on one git host, from branches of that
 * repository (never a fork's). Each call has its own hard deadline and fails with ProviderError, whose message says
 * which token permission the call needs when that is what is missing.
 */
export interface PullRequestProvider {
  /**
   * find returns the pull request from `head` into `base`: the open one if there is one, else the most recent closed
   * or merged one, so a caller can tell "closed unmerged" from "merged" and not reopen either; undefined when there is
   * none.
   */
  find(head: string, base: string): Promise<PullRequest | undefined>;
  /** open creates a pull request, then adds its labels and reviewers where the API takes them apart. */
  open(req: OpenPullRequest): Promise<OpenedPullRequest>;
  /** update changes the title and/or body of a pull request, and returns it as it is now. */
  update(number: number, change: PullRequestChange): Promise<PullRequest>;
  /**
   * autoMerge, where the provider has it, asks the provider to merge the pull request once its checks and approvals
   * pass (at once when nothing is pending); asking again is not an error.
   */
  autoMerge?(number: number): Promise<void>;
}

/** ProviderType names the APIs there is an adapter for. */
export type ProviderType = 'github' | 'gitlab' | 'gitea' | 'bitbucketserver';

/** ProviderOptions choose the provider and the repository; only `type`, `token` and `repoUrl` are required. */
export interface ProviderOptions {
  type: ProviderType;
  /** apiUrl is the API's base URL; required for gitea and bitbucketserver, and for self-hosted GitHub/GitLab. */
  apiUrl?: string;
  /** token is the API token; it never appears in an error message. */
  token: string;
  /** repoUrl is the ClusterBootstrap's git URL (`ssh://git@host/owner/repo.git`, `https://host/owner/repo.git`). */
  repoUrl: string;
  /** timeoutMs is the hard deadline of one call — every page, retry and redirect included (default 15 s). */
  timeoutMs?: number;
  /** tokenRef says where the token came from, for messages, e.g. `Secret flux-system/git-api-token`. */
  tokenRef?: string;
  /** maxBodyBytes caps an answer's body (default 4 MiB). */
  maxBodyBytes?: number;
  /** maxAttempts bounds the tries of a GET or DELETE that meets a 5xx or a lost connection (default 3). */
  maxAttempts?: number;
  /** retryBaseMs is the first backoff between tries, doubled each time (default 250 ms). */
  retryBaseMs?: number;
  /** caData is PEM CA certificates to trust for an https apiUrl of a self-hosted server. */
  caData?: string;
  /** signal ends the calls in flight when it is aborted (a cancelled reconcile). */
  signal?: AbortSignal;
}

/**
 * ProviderErrorKind says what went wrong, so the caller can tell a configuration error (`unauthorized`,
 * `forbidden`, `notFound`, `conflict`, `invalid`: fix the token or the spec) from a transient one
 * (`rateLimited`: wait until `resetAt`; `unreachable`: no answer, a timeout or a 5xx; `other`).
 */
export type ProviderErrorKind =
  'unauthorized' | 'forbidden' | 'notFound' | 'rateLimited' | 'conflict' | 'invalid' | 'unreachable' | 'other';

/**
 * ProviderError is a failed provider call, with a message that says what to fix. It never contains the
 * token. `status` is the HTTP status when an answer came.
 */
export class ProviderError extends Error {
  readonly kind: ProviderErrorKind;
  readonly status?: number;
  /** retryAfterMs is how long to wait before trying again, when rate limited. */
  readonly retryAfterMs?: number;
  /** resetAt is when a rate limit ends. */
  readonly resetAt?: Date;

  constructor(
    kind: ProviderErrorKind,
    message: string,
    opts: { status?: number; retryAfterMs?: number; resetAt?: Date; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ProviderError';
    this.kind = kind;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
    this.resetAt = opts.resetAt;
  }

  /** transient is true for errors that can pass by themselves: rate limits, outages, timeouts. */
  get transient(): boolean {
    return this.kind === 'rateLimited' || this.kind === 'unreachable' || this.kind === 'other';
  }
}
