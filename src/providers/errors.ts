import { retryAfterMs } from '../http/bounded.ts';
import type { Answer, ApiClient } from './http.ts';
import { ProviderError, type ProviderErrorKind } from './types.ts';

/** Subject is what a provider's messages talk about: who answers, for which repository, with which token. */
export interface Subject {
  /** provider is the host's name in messages: GitHub, GitLab, Gitea, Bitbucket Server. */
  provider: string;
  /** repo is the repository as the provider names it, e.g. owner/repo or group/sub/project. */
  repo: string;
  /** tokenRef names the token's source, e.g. `Secret flux-system/git-api-token`. */
  tokenRef: string;
  /** scope says which token permission the calls need on this provider (for deploy keys, unless `task` says). */
  scope: string;
  api: ApiClient;
  /** task is what the calls are about, for messages; deploy keys when absent. */
  task?: Task;
}

/**
 * Task is what a subject's calls are about, as failure's messages say it: the deploy keys of a repository, or its
 * pull requests.
 */
export interface Task {
  /** items names what a listing holds: `deploy keys`, `pull requests`. */
  items: string;
  /** one names the thing a refused request was about: `the deploy key`, `the pull request`. */
  one: string;
  /** manage is what the token needs the scope for: `manage deploy keys of`, `open and update pull requests on`. */
  manage: string;
  /** tooMany says what to do about a listing longer than a page bound: `remove unused ones`. */
  tooMany: string;
  /** refused says why the provider refused a request as a conflict or as invalid, and what to fix. */
  refused(kind: 'conflict' | 'invalid', said: string): string;
}

/** DEPLOY_KEYS is the task of the deploy-key adapters. */
export const DEPLOY_KEYS: Task = {
  items: 'deploy keys',
  one: 'the deploy key',
  manage: 'manage deploy keys of',
  tooMany: 'remove unused ones',
  refused(kind, said) {
    if (kind === 'invalid')
      return 'check that the public key is an OpenSSH `type base64` line the server accepts, and the title';
    return /title|name|label/i.test(said)
      ? 'another deploy key of the repository has that title: remove it or choose another title'
      : 'the key is already registered elsewhere (another repository, or a user account), and a provider takes a ' +
          'key once: remove that registration or use a new key';
  },
};

/** DEFAULT_RATE_LIMIT_MS is how long to wait when a provider says "rate limited" but not until when. */
const DEFAULT_RATE_LIMIT_MS = 60_000;

/** serverMessage digs the human message out of any of the providers' JSON error shapes, clipped to one line. */
export function serverMessage(answer: Answer): string {
  const j = answer.json;
  let msg = '';
  if (j && typeof j === 'object') {
    if (Array.isArray(j.errors) && j.errors.length) {
      // Bitbucket Server: {errors: [{message}]}; GitHub 422: {message, errors: [{message|code}]}
      const details = j.errors
        .map((e: any) => (typeof e === 'string' ? e : (e?.message ?? e?.code)))
        .filter((m: unknown) => typeof m === 'string');
      msg = [typeof j.message === 'string' ? j.message : '', ...details].filter(Boolean).join(': ');
    } else if (typeof j.message === 'string') msg = j.message;
    else if (Array.isArray(j.message)) {
      // GitLab: {message: ["Another open merge request already exists for this source branch: !12"]}
      msg = j.message.filter((m: unknown) => typeof m === 'string').join('; ');
    } else if (j.message && typeof j.message === 'object') {
      // GitLab validation errors: {message: {field: ["has already been taken"]}}
      msg = Object.entries(j.message)
        .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : String(v)}`)
        .join('; ');
    } else if (typeof j.error_description === 'string') msg = j.error_description;
    else if (typeof j.error === 'string') msg = j.error;
  }
  // Only the provider's own JSON error shapes are quoted: whatever else a server answers (a page of an internal
  // service the API URL was aimed at) never reaches a condition.
  return msg ? clip(msg, 200) : `HTTP ${answer.status}`;
}

/**
 * rateLimit reads when a rate limit ends from Retry-After, or from X-RateLimit-Reset/RateLimit-Reset (epoch or delta
 * seconds).
 */
export function rateLimit(answer: Answer, now = Date.now()): { retryAfterMs: number; resetAt: Date } {
  let wait = retryAfterMs(answer.headers['retry-after'], now);
  if (wait === undefined) {
    const reset = header(answer, 'x-ratelimit-reset') ?? header(answer, 'ratelimit-reset');
    if (reset && /^\s*\d+\s*$/.test(reset)) {
      const n = Number(reset);
      // GitHub and GitLab send epoch seconds; the IETF draft sends seconds from now.
      wait = n > 1e9 ? Math.max(0, n * 1000 - now) : n * 1000;
    }
  }
  wait ??= DEFAULT_RATE_LIMIT_MS;
  return { retryAfterMs: wait, resetAt: new Date(now + wait) };
}

/**
 * isRateLimited is true for a 429, and for a 403 that says it is a rate limit (GitHub's primary and secondary limits).
 */
export function isRateLimited(answer: Answer): boolean {
  if (answer.status === 429) return true;
  if (answer.status !== 403) return false;
  return (
    header(answer, 'x-ratelimit-remaining') === '0' ||
    header(answer, 'ratelimit-remaining') === '0' ||
    header(answer, 'retry-after') !== undefined
  );
}

/**
 * failure turns a non-2xx answer into a ProviderError whose message says what to fix. `kind` overrides the
 * status's usual meaning when a provider knows better (Bitbucket Server answers 401 to a missing permission).
 */
export function failure(answer: Answer, subject: Subject, what: string, kind?: ProviderErrorKind): ProviderError {
  const { provider, repo, tokenRef, scope, api } = subject;
  const task = subject.task ?? DEPLOY_KEYS;
  const status = answer.status;
  // GitLab repeats the status in its messages ("404 Project Not Found").
  const said = serverMessage(answer).replace(new RegExp(`^${status}\\s+(?=\\S)`), '');
  const make = (k: ProviderErrorKind, message: string, extra: { retryAfterMs?: number; resetAt?: Date } = {}) =>
    new ProviderError(k, api.scrub(message), { status, ...extra });

  if (kind === undefined) {
    if (isRateLimited(answer)) kind = 'rateLimited';
    else if (status === 401) kind = 'unauthorized';
    else if (status === 403) kind = 'forbidden';
    else if (status === 404) kind = 'notFound';
    else if (
      status === 409 ||
      ((status === 400 || status === 422) && /already|taken|in use|been used|exists/i.test(said))
    )
      kind = 'conflict';
    else if (status === 400 || status === 422) kind = 'invalid';
    else if (status >= 500) kind = 'unreachable';
    else kind = 'other';
  }
  switch (kind) {
    case 'rateLimited': {
      const limit = rateLimit(answer);
      return make(
        kind,
        `${provider} rate limited the token in ${tokenRef} until ${limit.resetAt.toISOString()} (${what}: ${said}); ` +
          `the call can be made again then`,
        limit,
      );
    }
    case 'unauthorized':
      return make(
        kind,
        `${provider} at ${api.origin} refused the token in ${tokenRef} (${status} ${said}): it is wrong, expired or ` +
          `revoked; put a valid token there`,
      );
    case 'forbidden':
      return make(
        kind,
        `the token in ${tokenRef} lacks the scope to ${task.manage} ${repo} (${provider}: ${scope}); ` +
          `${provider} said ${status} ${said}`,
      );
    case 'notFound':
      return make(
        kind,
        `${provider} at ${api.origin} shows no repository ${repo} to the token in ${tokenRef} (${status} ${said}): ` +
          `check the repository URL, and that the token may see the repository (${scope})`,
      );
    case 'conflict':
    case 'invalid':
      return make(kind, `${provider} refused ${task.one} for ${repo} (${status} ${said}): ${task.refused(kind, said)}`);
    case 'unreachable':
      return make(
        kind,
        `${provider} at ${api.origin} answered ${status} to ${what} (${said}): the server is in trouble; try again ` +
          `later`,
      );
    default:
      if (status >= 300 && status < 400) {
        return make(
          kind,
          `${provider} at ${api.origin} answered ${status} to ${what}, moving it to ` +
            `${header(answer, 'location') ?? 'nowhere'}: check the API URL and the repository URL`,
        );
      }
      return make(kind, `${provider} at ${api.origin} answered ${status} to ${what}: ${said}`);
  }
}

/** unexpected is the error for a 2xx answer whose body is not what the API documents (a wrong API URL, often). */
export function unexpected(answer: Answer, subject: Subject, what: string, expected: string): ProviderError {
  return new ProviderError(
    'other',
    `${subject.provider} at ${subject.api.origin} answered ${what} with something other than ${expected}: is the ` +
      `API URL right?`,
    { status: answer.status },
  );
}

/** header reads a response header as one string. */
export function header(answer: Answer, name: string): string | undefined {
  const v = answer.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** clip makes text from a server fit a message: one line, printable, bounded. */
export function clip(text: string, max: number): string {
  const line = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
