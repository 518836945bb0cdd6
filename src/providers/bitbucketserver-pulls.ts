import { bitbucketFailure } from './bitbucketserver.ts';
import { unexpected, type Subject } from './errors.ts';
import type { Answer } from './http.ts';
import { collectPages } from './pages.ts';
import type { ProviderContext } from './provider.ts';
import {
  PULL_REQUESTS,
  REVIEWERS,
  checkedBranch,
  checkedChange,
  checkedNumber,
  checkedOpen,
  ok,
  pickPull,
  pullFailure,
  serverNumber,
  serverText,
  webUrl,
} from './pulls.ts';
import type {
  OpenPullRequest,
  OpenedPullRequest,
  ProviderError,
  ProviderErrorKind,
  PullRequest,
  PullRequestChange,
  PullRequestProvider,
  PullRequestState,
} from './types.ts';

/** BITBUCKET_PULL_SCOPE is the permission that opens and updates pull requests, for messages. */
export const BITBUCKET_PULL_SCOPE =
  'an HTTP access token with the Repository write permission, of a user with write access to the repository';

const STATES: Record<string, PullRequestState> = { OPEN: 'open', DECLINED: 'closed', MERGED: 'merged' };

/**
 * BitbucketServerPulls opens and updates the pull requests of a Bitbucket Server / Data Center repository through
 * `/rest/api/1.0/projects/{key}/repos/{slug}/pull-requests`, paging by `start`/`nextPageStart`; `find` lets Bitbucket
 * filter the outgoing pull requests of `refs/heads/{head}`. Bitbucket has no labels on pull requests (asking for some
 * gives a warning); reviewers go with the create, which is sent again without them when Bitbucket refuses one. An
 * update sends the version it read and the reviewers back (Bitbucket drops the reviewers a PUT leaves out). There is
 * no auto-merge.
 */
export class BitbucketServerPulls implements PullRequestProvider {
  readonly #s: Subject;
  readonly #path: string;
  readonly #repo: { projectKey: string; slug: string };

  constructor(ctx: ProviderContext, repo: { projectKey: string; slug: string }) {
    this.#repo = repo;
    this.#s = {
      ...ctx,
      provider: 'Bitbucket Server',
      repo: `${repo.projectKey}/${repo.slug}`,
      scope: BITBUCKET_PULL_SCOPE,
      task: PULL_REQUESTS,
    };
    const [project, slug] = [encodeURIComponent(repo.projectKey), encodeURIComponent(repo.slug)];
    this.#path = `/rest/api/1.0/projects/${project}/repos/${slug}/pull-requests`;
  }

  async find(head: string, base: string): Promise<PullRequest | undefined> {
    const h = checkedBranch(head, 'head');
    const b = checkedBranch(base, 'base');
    const { api } = this.#s;
    const query = new URLSearchParams({
      direction: 'OUTGOING',
      at: `refs/heads/${h}`,
      state: 'ALL',
      order: 'NEWEST',
      start: '0',
      limit: '100',
    });
    const prs = await collectPages<PullRequest>(
      this.#s,
      api.url(`${this.#path}?${query}`),
      api.deadline(),
      (answer) => {
        const j = answer.json;
        if (!j || !Array.isArray(j.values))
          throw unexpected(answer, this.#s, 'the list of pull requests', 'a page of values');
        const items = j.values.filter((v: any) => this.#ours(v)).map((v: any) => this.#toPull(answer, v, 'the list'));
        if (j.isLastPage !== false || typeof j.nextPageStart !== 'number') return { items };
        const next = new URL(answer.url);
        next.searchParams.set('start', String(j.nextPageStart));
        return { items, next };
      },
      (answer) => this.#failure(answer, 'listing pull requests'),
    );
    return pickPull(prs.filter((p) => p.head === h && p.base === b));
  }

  async open(req: OpenPullRequest): Promise<OpenedPullRequest> {
    const r = checkedOpen(req);
    const warnings: string[] = [];
    if (r.labels.length) warnings.push('Bitbucket Server has no labels on pull requests: the labels are not set');
    const ref = (branch: string) => ({
      id: `refs/heads/${branch}`,
      repository: { slug: this.#repo.slug, project: { key: this.#repo.projectKey } },
    });
    const body: Record<string, unknown> = {
      title: r.title,
      description: r.body,
      state: 'OPEN',
      open: true,
      closed: false,
      fromRef: ref(r.head),
      toRef: ref(r.base),
    };
    const what = 'opening a pull request';
    const { api } = this.#s;
    const post = (b: unknown) => api.request('POST', api.url(this.#path), { body: b, deadline: api.deadline() });
    let answer = await post(
      r.reviewers.length ? { ...body, reviewers: r.reviewers.map((name) => ({ user: { name } })) } : body,
    );
    if (
      !ok(answer) &&
      r.reviewers.length &&
      (answer.status === 400 || answer.status === 409) &&
      /reviewer/i.test(answer.text)
    ) {
      // A refused create made nothing: make it without the reviewers, and say which Bitbucket refused.
      const refused = bitbucketFailure(answer, { ...this.#s, task: REVIEWERS }, 'adding reviewers', 'invalid');
      warnings.push(`requesting reviews failed: ${refused.message}`);
      answer = await post(body);
    }
    if (!ok(answer)) throw this.#failure(answer, what, undefined, { head: r.head, base: r.base });
    return { ...this.#toPull(answer, answer.json, what), warnings };
  }

  async update(number: number, change: PullRequestChange): Promise<PullRequest> {
    const n = checkedNumber(number);
    const c = checkedChange(change);
    const { api } = this.#s;
    const url = api.url(`${this.#path}/${n}`);
    const what = `updating pull request #${n}`;
    for (let attempt = 1; ; attempt++) {
      const read = await api.request('GET', url, { deadline: api.deadline() });
      if (!ok(read)) throw this.#failure(read, what, undefined, { number: n });
      const current = read.json;
      const pr = this.#toPull(read, current, what);
      if (c.title === undefined && c.body === undefined) return pr;
      const body = {
        version: current.version,
        title: c.title ?? current.title,
        description: c.body ?? current.description ?? '',
        reviewers: Array.isArray(current.reviewers)
          ? current.reviewers.filter((v: any) => v?.user?.name).map((v: any) => ({ user: { name: v.user.name } }))
          : [],
      };
      const answer = await api.request('PUT', url, { body, deadline: api.deadline() });
      if (ok(answer)) return this.#toPull(answer, answer.json, what);
      // Someone changed it between the read and the write: read it again, once.
      if (answer.status === 409 && /OutOfDate/i.test(answer.text) && attempt < 2) continue;
      throw this.#failure(answer, what, undefined, { number: n });
    }
  }

  /**
   * failure reads Bitbucket's 409s: a duplicate or a stale version is a conflict; an empty pull request (the base has
   * the head's commits) or a refused reviewer is invalid.
   */
  #failure(
    answer: Answer,
    what: string,
    kind?: ProviderErrorKind,
    about: { number?: number; head?: string; base?: string } = {},
  ): ProviderError {
    if (kind === undefined && answer.status === 409)
      kind = /Duplicate|OutOfDate/i.test(answer.text) ? 'conflict' : 'invalid';
    if (answer.status === 404) return pullFailure(answer, this.#s, what, about, kind);
    return bitbucketFailure(answer, this.#s, what, kind);
  }

  /** ours is true for a pull request from a branch of the repository itself, not a fork. */
  #ours(v: any): boolean {
    const repo = v?.fromRef?.repository;
    return repo?.slug === this.#repo.slug && repo?.project?.key === this.#repo.projectKey;
  }

  #toPull(answer: Answer, v: any, what: string): PullRequest {
    const number = serverNumber(v?.id);
    if (!number || typeof v.fromRef?.id !== 'string' || typeof v.toRef?.id !== 'string')
      throw unexpected(answer, this.#s, what, 'a pull request');
    const branch = (id: string) => serverText(id.replace(/^refs\/heads\//, ''));
    return {
      number,
      url: webUrl(Array.isArray(v.links?.self) ? v.links.self[0]?.href : undefined),
      state: STATES[v.state] ?? 'closed',
      head: branch(v.fromRef.id),
      base: branch(v.toRef.id),
      headSha: typeof v.fromRef.latestCommit === 'string' ? serverText(v.fromRef.latestCommit, 64) : undefined,
      title: serverText(v.title),
    };
  }
}
