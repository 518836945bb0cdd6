import { unexpected, type Subject } from './errors.ts';
import { GITEA_PAGE, giteaNext } from './gitea.ts';
import type { Answer } from './http.ts';
import { collectPages } from './pages.ts';
import type { ProviderContext } from './provider.ts';
import {
  LABELS,
  PULL_REQUESTS,
  REVIEWERS,
  bestEffort,
  checkedBranch,
  checkedNumber,
  checkedOpen,
  ok,
  patchPull,
  pullFailure,
  serverNumber,
  serverText,
  webUrl,
} from './pulls.ts';
import type { OwnerRepo } from './repo.ts';
import {
  ProviderError,
  type OpenPullRequest,
  type OpenedPullRequest,
  type PullRequest,
  type PullRequestChange,
  type PullRequestProvider,
} from './types.ts';

/** GITEA_PULL_SCOPE is the permission that opens pull requests and labels them, for messages. */
export const GITEA_PULL_SCOPE =
  'a token with the write:repository scope (and write:issue for labels), of a user who may push to the repository';

/** CLOSED_PAGES bounds the search for a closed pull request: the 1,000 most recently closed into the base branch. */
const CLOSED_PAGES = 20;

/**
 * GiteaPulls opens and updates the pull requests of a Gitea or Forgejo repository through
 * `/repos/{owner}/{repo}/pulls`.
 * Gitea's listing cannot filter by head branch (and `/pulls/{base}/{head}` returns any one of several), so `find` pages
 * through the open pull requests into the base branch, then through the closed ones, most recently closed first, and
 * stops at the first from the head branch; a pull request closed before the CLOSED_PAGES most recent is not found.
 * Labels and reviewers take calls of their own after the create.
 */
export class GiteaPulls implements PullRequestProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    this.#s = {
      ...ctx,
      provider: 'Gitea',
      repo: `${repo.owner}/${repo.repo}`,
      scope: GITEA_PULL_SCOPE,
      task: PULL_REQUESTS,
    };
    this.#path = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}`;
  }

  async find(head: string, base: string): Promise<PullRequest | undefined> {
    const h = checkedBranch(head, 'head');
    const b = checkedBranch(base, 'base');
    const { api } = this.#s;
    const deadline = api.deadline();
    const ours = (p: PullRequest) => p.head === h && p.base === b;
    const list = (state: 'open' | 'closed', extra: string, bounds: object) => {
      let seen = 0;
      const query = `?state=${state}&base_branch=${encodeURIComponent(b)}${extra}&page=1&limit=${GITEA_PAGE}`;
      return collectPages(
        this.#s,
        api.url(`${this.#path}/pulls${query}`),
        deadline,
        (answer) => {
          if (!Array.isArray(answer.json))
            throw unexpected(answer, this.#s, 'the list of pull requests', 'a JSON array');
          seen += answer.json.length;
          // Pull requests from forks share the branch names; only the repository's own count.
          const items = answer.json.filter((j) => this.#ownHead(j)).map((j) => this.#toPull(answer, j, 'the list'));
          return { items, next: giteaNext(answer, seen) };
        },
        (answer) => this.#failure(answer, 'listing pull requests'),
        { until: ours, ...bounds },
      );
    };
    const open = (await list('open', '', {})).filter(ours);
    if (open.length) return open.reduce((a, p) => (p.number > a.number ? p : a));
    const closed = await list('closed', '&sort=recentclose', { maxPages: CLOSED_PAGES, beyond: 'stop' });
    return closed.find(ours);
  }

  async open(req: OpenPullRequest): Promise<OpenedPullRequest> {
    const r = checkedOpen(req);
    const { api } = this.#s;
    const body = { head: r.head, base: r.base, title: r.title, body: r.body };
    const answer = await api.request('POST', api.url(`${this.#path}/pulls`), { body, deadline: api.deadline() });
    if (!ok(answer)) throw this.#failure(answer, 'opening a pull request', { head: r.head, base: r.base });
    const pr = this.#toPull(answer, answer.json, 'opening a pull request');
    const warnings: string[] = [];
    if (r.labels.length)
      await bestEffort(warnings, `adding the labels to pull request #${pr.number}`, () =>
        this.#addLabels(pr.number, r.labels),
      );
    if (r.reviewers.length)
      await bestEffort(warnings, `requesting reviews of pull request #${pr.number}`, () =>
        this.#requestReviews(pr.number, r.reviewers),
      );
    return { ...pr, warnings };
  }

  update(number: number, change: PullRequestChange): Promise<PullRequest> {
    const url = this.#s.api.url(`${this.#path}/pulls/${checkedNumber(number)}`);
    return patchPull(this.#s, url, number, change, (a, j, what) => this.#toPull(a, j, what));
  }

  /**
   * autoMerge asks Gitea to merge (a merge commit) once the required checks and approvals pass: 201 when scheduled,
   * 200 when Gitea merged at once, 409 when a merge was scheduled already.
   */
  async autoMerge(number: number): Promise<void> {
    const n = checkedNumber(number);
    const { api } = this.#s;
    const body = { Do: 'merge', merge_when_checks_succeed: true };
    const what = `scheduling the merge of pull request #${n}`;
    const answer = await api.request('POST', api.url(`${this.#path}/pulls/${n}/merge`), {
      body,
      deadline: api.deadline(),
    });
    if (ok(answer) || (answer.status === 409 && /already scheduled/i.test(answer.text))) return;
    // Gitea answers 405 to a merge it will not do (no permission, a draft, a style the repository forbids).
    throw pullFailure(answer, this.#s, what, { number: n }, answer.status === 405 ? 'invalid' : undefined);
  }

  /** addLabels adds existing labels by name; Gitea ignores names it does not know, so those become a warning. */
  async #addLabels(n: number, labels: string[]): Promise<string | void> {
    const { api } = this.#s;
    const answer = await api.request('POST', api.url(`${this.#path}/issues/${n}/labels`), {
      body: { labels },
      deadline: api.deadline(),
    });
    if (!ok(answer))
      throw pullFailure(answer, { ...this.#s, task: LABELS }, `labelling pull request #${n}`, { number: n });
    const set = new Set(Array.isArray(answer.json) ? answer.json.map((l: any) => l?.name) : []);
    const missing = labels.filter((l) => !set.has(l));
    if (missing.length)
      return `Gitea has no label ${missing.map((l) => `"${l}"`).join(', ')} in ${this.#s.repo}: create it there`;
  }

  async #requestReviews(n: number, reviewers: string[]): Promise<void> {
    const { api } = this.#s;
    const answer = await api.request('POST', api.url(`${this.#path}/pulls/${n}/requested_reviewers`), {
      body: { reviewers },
      deadline: api.deadline(),
    });
    if (!ok(answer))
      throw pullFailure(answer, { ...this.#s, task: REVIEWERS }, `requesting reviews of pull request #${n}`, {
        number: n,
      });
  }

  /**
   * failure is pullFailure, but a 404 of the repository's pull requests also says that Gitea hides them while it
   * takes the repository for empty (before its first push is processed) or when its Pull Requests unit is off.
   */
  #failure(answer: Answer, what: string, about: { head?: string; base?: string } = {}) {
    const err = pullFailure(answer, this.#s, what, about);
    if (answer.status !== 404) return err;
    return new ProviderError(
      'notFound',
      `${err.message}; Gitea also answers 404 while the repository is empty (a first push takes a moment to be ` +
        'seen) and when its Pull Requests unit is off',
      { status: 404 },
    );
  }

  /** ownHead is true for a pull request whose head branch is in the repository itself. */
  #ownHead(j: any): boolean {
    const headRepo = j?.head?.repo_id;
    const baseRepo = j?.base?.repo_id;
    if (typeof headRepo === 'number' && typeof baseRepo === 'number') return headRepo === baseRepo;
    const name = j?.head?.repo?.full_name;
    return typeof name !== 'string' || name.toLowerCase() === this.#s.repo.toLowerCase();
  }

  #toPull(answer: Answer, j: any, what: string): PullRequest {
    const number = serverNumber(j?.number);
    if (!number || typeof j.head?.ref !== 'string' || typeof j.base?.ref !== 'string')
      throw unexpected(answer, this.#s, what, 'a pull request');
    return {
      number,
      url: webUrl(j.html_url),
      state: j.merged === true ? 'merged' : j.state === 'open' ? 'open' : 'closed',
      head: serverText(j.head.ref),
      base: serverText(j.base.ref),
      headSha: typeof j.head.sha === 'string' && j.head.sha ? serverText(j.head.sha, 64) : undefined,
      title: serverText(j.title),
    };
  }
}
