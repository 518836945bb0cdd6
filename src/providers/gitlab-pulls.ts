import { unexpected, type Subject } from './errors.ts';
import { gitlabNext } from './gitlab.ts';
import type { Answer } from './http.ts';
import { collectPages } from './pages.ts';
import type { ProviderContext } from './provider.ts';
import {
  bestEffort,
  checkedBranch,
  checkedChange,
  checkedNumber,
  checkedOpen,
  ok,
  pickPull,
  pullTask,
  pullFailure,
  serverNumber,
  serverText,
  webUrl,
} from './pulls.ts';
import type {
  OpenPullRequest,
  OpenedPullRequest,
  PullRequest,
  PullRequestChange,
  PullRequestProvider,
  PullRequestState,
} from './types.ts';

/** GITLAB_PULL_SCOPE is the permission that opens merge requests, for messages. */
export const GITLAB_PULL_SCOPE =
  'a token with the api scope, of a user or bot with at least the Developer role in the project (and allowed to ' +
  'merge into the base branch, for auto-merge)';

/** STATES maps GitLab's merge request states; `locked` is a merge in progress, still open. */
const STATES: Record<string, PullRequestState> = { opened: 'open', locked: 'open', closed: 'closed', merged: 'merged' };

/**
 * GitLabPulls opens and updates the merge requests of a GitLab project through `/projects/:id/merge_requests`;
 * `find` lets GitLab filter by source and target branch. Labels go with the create (GitLab makes missing ones);
 * reviewers need user ids, looked up by name (`/users?username=`) before it, each lookup best-effort. Auto-merge is
 * `PUT …/merge` with `auto_merge` (GitLab 17.11 on) and `merge_when_pipeline_succeeds` (before), which merges at
 * once when no pipeline is pending.
 */
export class GitLabPulls implements PullRequestProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, project: { path: string; id: string }) {
    this.#s = {
      ...ctx,
      provider: 'GitLab',
      repo: project.path,
      scope: GITLAB_PULL_SCOPE,
      task: pullTask('merge request'),
    };
    this.#path = `/projects/${project.id}/merge_requests`;
  }

  async find(head: string, base: string): Promise<PullRequest | undefined> {
    const h = checkedBranch(head, 'head');
    const b = checkedBranch(base, 'base');
    const { api } = this.#s;
    const query = new URLSearchParams({ source_branch: h, target_branch: b, state: 'all', per_page: '100', page: '1' });
    const prs = await collectPages(
      this.#s,
      api.url(`${this.#path}?${query}`),
      api.deadline(),
      (answer) => {
        if (!Array.isArray(answer.json))
          throw unexpected(answer, this.#s, 'the list of merge requests', 'a JSON array');
        // A fork's merge request may have the same source branch name: only the project's own count.
        const items = answer.json
          .filter((j) => j?.source_project_id === j?.target_project_id)
          .map((j) => this.#toPull(answer, j, 'the list'));
        return { items, next: gitlabNext(answer) };
      },
      (answer) => pullFailure(answer, this.#s, 'listing merge requests'),
    );
    return pickPull(prs.filter((p) => p.head === h && p.base === b));
  }

  async open(req: OpenPullRequest): Promise<OpenedPullRequest> {
    const r = checkedOpen(req);
    const warnings: string[] = [];
    const reviewerIds: number[] = [];
    for (const name of r.reviewers)
      await bestEffort(warnings, `looking up the reviewer ${name}`, async () => {
        const id = await this.#userId(name);
        if (id === undefined) return `GitLab has no user ${name}: no review requested from them`;
        reviewerIds.push(id);
      });
    const { api } = this.#s;
    const body: Record<string, unknown> = {
      source_branch: r.head,
      target_branch: r.base,
      title: r.title,
      description: r.body,
    };
    if (r.labels.length) body.labels = r.labels.join(',');
    if (reviewerIds.length) body.reviewer_ids = reviewerIds;
    const answer = await api.request('POST', api.url(this.#path), { body, deadline: api.deadline() });
    if (!ok(answer)) throw pullFailure(answer, this.#s, 'opening a merge request', { head: r.head, base: r.base });
    return { ...this.#toPull(answer, answer.json, 'opening a merge request'), warnings };
  }

  async update(number: number, change: PullRequestChange): Promise<PullRequest> {
    const n = checkedNumber(number);
    const c = checkedChange(change);
    const { api } = this.#s;
    const url = api.url(`${this.#path}/${n}`);
    const answer =
      c.title === undefined && c.body === undefined
        ? await api.request('GET', url, { deadline: api.deadline() })
        : await api.request('PUT', url, { body: { title: c.title, description: c.body }, deadline: api.deadline() });
    if (!ok(answer)) throw pullFailure(answer, this.#s, `updating merge request !${n}`, { number: n });
    return this.#toPull(answer, answer.json, `updating merge request !${n}`);
  }

  async autoMerge(number: number): Promise<void> {
    const n = checkedNumber(number);
    const { api } = this.#s;
    const answer = await api.request('PUT', api.url(`${this.#path}/${n}/merge`), {
      body: { auto_merge: true, merge_when_pipeline_succeeds: true },
      deadline: api.deadline(),
    });
    if (ok(answer)) return;
    // 405: not mergeable now (a draft, conflicts, closed); 406: cannot be merged; 422: auto-merge cannot be set.
    const kind = [405, 406, 422].includes(answer.status) ? 'invalid' : answer.status === 409 ? 'conflict' : undefined;
    throw pullFailure(answer, this.#s, `setting merge request !${n} to merge automatically`, { number: n }, kind);
  }

  /** userId is the id of the user with exactly that username, or undefined when there is none. */
  async #userId(name: string): Promise<number | undefined> {
    const { api } = this.#s;
    const answer = await api.request('GET', api.url(`/users?${new URLSearchParams({ username: name })}`), {
      deadline: api.deadline(),
    });
    if (!ok(answer)) throw pullFailure(answer, this.#s, `looking up the user ${name}`);
    if (!Array.isArray(answer.json)) throw unexpected(answer, this.#s, 'the list of users', 'a JSON array');
    const user = answer.json.find(
      (u) => typeof u?.username === 'string' && u.username.toLowerCase() === name.toLowerCase(),
    );
    return serverNumber(user?.id);
  }

  #toPull(answer: Answer, j: any, what: string): PullRequest {
    const number = serverNumber(j?.iid);
    if (!number || typeof j.source_branch !== 'string' || typeof j.target_branch !== 'string')
      throw unexpected(answer, this.#s, what, 'a merge request');
    return {
      number,
      url: webUrl(j.web_url),
      state: STATES[j.state] ?? 'closed',
      head: serverText(j.source_branch),
      base: serverText(j.target_branch),
      headSha: typeof j.sha === 'string' && j.sha ? serverText(j.sha, 64) : undefined,
      title: serverText(j.title),
    };
  }
}
