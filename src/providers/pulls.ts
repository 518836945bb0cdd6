import { isCancelled } from '../cancel.ts';
import { clip, failure, type Subject, type Task } from './errors.ts';
import type { Answer } from './http.ts';
import {
  ProviderError,
  type OpenPullRequest,
  type ProviderErrorKind,
  type PullRequest,
  type PullRequestChange,
} from './types.ts';

/**
 * pullTask is the task of the pull-request adapters, for failure's messages; GitLab calls them merge requests.
 */
export function pullTask(noun: 'pull request' | 'merge request' = 'pull request'): Task {
  return {
    items: `${noun}s`,
    one: `the ${noun}`,
    manage: `open and update ${noun}s on`,
    tooMany: 'the operator looks no further',
    refused(kind, said) {
      if (kind === 'conflict')
        return /already exists|another open|only one/i.test(said)
          ? `a ${noun} from that head branch into that base branch is open already: find it and update it`
          : `the ${noun} changed meanwhile: read it again and retry`;
      return (
        'check that the head branch is pushed and has commits the base branch lacks, that the base branch exists, ' +
        'and the title'
      );
    },
  };
}

/** PULL_REQUESTS is the task of the GitHub, Gitea and Bitbucket Server adapters. */
export const PULL_REQUESTS = pullTask();

/** REVIEWERS is the task of a call that asks for reviews: what it refuses is a reviewer. */
export const REVIEWERS: Task = {
  ...PULL_REQUESTS,
  one: 'the reviewers',
  refused: () => 'check that each reviewer is a user who may read the repository (a collaborator of it)',
};

/** LABELS is the task of a call that adds labels. */
export const LABELS: Task = { ...PULL_REQUESTS, one: 'the labels', refused: () => 'check the label names' };

/** pullName is how messages name pull request `n` on the subject's provider: `pull request #3`, `merge request !3`. */
export function pullName(s: Subject, n: number): string {
  return s.task?.items === 'merge requests' ? `merge request !${n}` : `pull request #${n}`;
}

/** MAX_TITLE bounds a title: GitLab and Bitbucket Server take 255 characters, GitHub 256. */
const MAX_TITLE = 255;
/** MAX_BODY bounds a body, well under every provider's limit (GitHub's is 65,536 characters). */
const MAX_BODY = 30_000;
/** MAX_NAMES bounds the labels, and the reviewers, of one pull request. */
const MAX_NAMES = 20;

/**
 * checkedBranch is a branch name fit for an API path or query — `git check-ref-format --branch` rules, `refs/heads/`
 * dropped — or ProviderError `invalid`.
 */
export function checkedBranch(name: string, role: 'head' | 'base'): string {
  const b = typeof name === 'string' ? name.trim().replace(/^refs\/heads\//, '') : '';
  const bad =
    !b ||
    b.length > 250 ||
    /[\x00-\x20\x7f~^:?*[\\]|\.\.|@\{|\/\/|^[-/.]|[/.]$|\.lock$|\/\.|\.lock\//.test(b) ||
    b === '@' ||
    b === 'HEAD';
  if (bad) throw new ProviderError('invalid', `"${clip(String(name), 60)}" is not a git branch name (the ${role})`);
  return b;
}

/** checkedNumber is a pull request's number, a positive integer, or ProviderError `invalid`. */
export function checkedNumber(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new ProviderError('invalid', `${clip(String(n), 30)} is not a pull request number`);
  return n;
}

/** checkedTitle is a title on one line, bounded, or ProviderError `invalid` when empty. */
export function checkedTitle(title: string): string {
  const t = typeof title === 'string' ? title.replace(/[\x00-\x1f\x7f]+/g, ' ').trim() : '';
  if (!t) throw new ProviderError('invalid', 'a pull request needs a title');
  return t.length > MAX_TITLE ? `${t.slice(0, MAX_TITLE - 1)}…` : t;
}

/** checkedBody is a body within MAX_BODY characters, or ProviderError `invalid`. */
export function checkedBody(body: string): string {
  if (typeof body !== 'string') throw new ProviderError('invalid', 'a pull request body must be text');
  if (body.length > MAX_BODY)
    throw new ProviderError('invalid', `a pull request body of ${body.length} characters is over ${MAX_BODY}`);
  return body;
}

/** checkedNames are labels or reviewers: trimmed, without duplicates, each one line without commas, bounded. */
export function checkedNames(names: string[] | undefined, what: 'label' | 'reviewer'): string[] {
  if (names === undefined) return [];
  if (!Array.isArray(names)) throw new ProviderError('invalid', `the ${what}s must be a list`);
  const out = [...new Set(names.map((n) => (typeof n === 'string' ? n.trim() : '')))];
  if (out.length > MAX_NAMES) throw new ProviderError('invalid', `more than ${MAX_NAMES} ${what}s`);
  for (const n of out) {
    const bad = !n || n.length > 100 || /[\x00-\x1f\x7f,]/.test(n) || (what === 'reviewer' && /[\s/]/.test(n));
    if (bad) throw new ProviderError('invalid', `"${clip(n, 60)}" is not a ${what} name`);
  }
  return out;
}

/** CheckedOpen is an OpenPullRequest once checked: every field there, labels and reviewers possibly empty. */
export type CheckedOpen = Required<OpenPullRequest>;

/** checkedOpen checks everything `open` sends before the first call, so a bad request costs none. */
export function checkedOpen(req: OpenPullRequest): CheckedOpen {
  const head = checkedBranch(req.head, 'head');
  const base = checkedBranch(req.base, 'base');
  if (head === base) throw new ProviderError('invalid', `the head branch and the base branch are both ${head}`);
  return {
    head,
    base,
    title: checkedTitle(req.title),
    body: checkedBody(req.body ?? ''),
    labels: checkedNames(req.labels, 'label'),
    reviewers: checkedNames(req.reviewers, 'reviewer'),
  };
}

/** checkedChange checks what `update` sends. */
export function checkedChange(change: PullRequestChange): PullRequestChange {
  return {
    title: change.title === undefined ? undefined : checkedTitle(change.title),
    body: change.body === undefined ? undefined : checkedBody(change.body),
  };
}

/**
 * pickPull is what `find` returns of the pull requests from one head into one base: the open one (the newest, should
 * there be several), else the newest closed or merged one. Numbers grow with time on every provider.
 */
export function pickPull(prs: PullRequest[]): PullRequest | undefined {
  const newest = (list: PullRequest[]) =>
    list.reduce<PullRequest | undefined>((a, b) => (a && a.number > b.number ? a : b), undefined);
  return newest(prs.filter((p) => p.state === 'open')) ?? newest(prs);
}

/** webUrl is a server's link to a page for people: http(s) only, credentials dropped, bounded; else empty. */
export function webUrl(value: unknown): string {
  if (typeof value !== 'string') return '';
  try {
    const u = new URL(value);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return '';
    u.username = '';
    u.password = '';
    return u.href.length > 1000 ? '' : u.href;
  } catch {
    return '';
  }
}

/** serverText is a string a server sent, on one line and bounded, or '' for anything else. */
export function serverText(value: unknown, max = 300): string {
  return typeof value === 'string' ? clip(value, max) : '';
}

/** serverNumber is a positive integer a server sent, or undefined. */
export function serverNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/**
 * patchPull updates a pull request's title and body with a PATCH of `{title, body}` to `url` (GitHub's and Gitea's
 * API alike), or reads it when nothing changes; `toPull` reads the answer.
 */
export async function patchPull(
  s: Subject,
  url: URL,
  number: number,
  change: PullRequestChange,
  toPull: (answer: Answer, json: any, what: string) => PullRequest,
): Promise<PullRequest> {
  const n = checkedNumber(number);
  const c = checkedChange(change);
  const { api } = s;
  const answer =
    c.title === undefined && c.body === undefined
      ? await api.request('GET', url, { deadline: api.deadline() })
      : await api.request('PATCH', url, { body: { title: c.title, body: c.body }, deadline: api.deadline() });
  if (!ok(answer)) throw pullFailure(answer, s, `updating pull request #${n}`, { number: n });
  return toPull(answer, answer.json, `updating pull request #${n}`);
}

/**
 * pullFailure is failure for a call about pull requests, with a 404 that names what is missing: the pull request
 * `number`, or the branches of an open, rather than the repository alone.
 */
export function pullFailure(
  answer: Answer,
  s: Subject,
  what: string,
  about: { number?: number; head?: string; base?: string } = {},
  kind?: ProviderErrorKind,
): ProviderError {
  if (answer.status === 404 && (kind === undefined || kind === 'notFound')) {
    const missing =
      about.number !== undefined
        ? `no ${pullName(s, about.number)} in ${s.repo}`
        : about.head !== undefined
          ? `no repository ${s.repo} with the branches ${about.head} and ${about.base}`
          : undefined;
    if (missing)
      return new ProviderError(
        'notFound',
        s.api.scrub(
          `${s.provider} at ${s.api.origin} shows ${missing} to the token in ${s.tokenRef} (${what}: 404): check the ` +
            `repository URL, that the branches are pushed, and that the token may see the repository (${s.scope})`,
        ),
        { status: 404 },
      );
  }
  return failure(answer, s, what, kind);
}

/** ok is true for a 2xx answer. */
export function ok(answer: Answer): boolean {
  return answer.status >= 200 && answer.status < 300;
}

/**
 * bestEffort runs a call that adds labels or reviewers and turns its ProviderError into a warning: those are extras,
 * and an open that made the pull request has succeeded.
 */
export async function bestEffort(warnings: string[], what: string, call: () => Promise<string | void>): Promise<void> {
  try {
    const warning = await call();
    if (warning) warnings.push(warning);
  } catch (err) {
    // A cancelled reconcile ends the open too (the caller must not report it as done), and a bug is no warning.
    if (isCancelled(err) || !(err instanceof ProviderError)) throw err;
    warnings.push(`${what} failed: ${err.message}`);
  }
}
