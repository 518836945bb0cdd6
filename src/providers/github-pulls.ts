import { clip, unexpected, type Subject, type Task } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
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
  pickPull,
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
  type ProviderErrorKind,
  type PullRequest,
  type PullRequestChange,
  type PullRequestProvider,
} from './types.ts';

/** GITHUB_PULL_SCOPE is the permission that opens pull requests, labels them and asks for reviews, for messages. */
export const GITHUB_PULL_SCOPE =
  'a fine-grained token with Pull requests: write (and Contents: write for auto-merge) on the repository, or a ' +
  'classic token with the repo scope';

/** MERGE_NOW are the merge states in which GitHub refuses auto-merge because nothing is pending: merge at once. */
const MERGE_NOW = new Set(['CLEAN', 'HAS_HOOKS', 'UNSTABLE']);

/**
 * GitHubPulls opens and updates the pull requests of a GitHub or GitHub Enterprise Server repository through
 * `/repos/{owner}/{repo}/pulls`; `find` lets GitHub filter by `head=owner:branch` and `base`. Labels
 * (`/issues/{n}/labels`, which creates missing ones) and reviewers (`/pulls/{n}/requested_reviewers`) take calls of
 * their own. Auto-merge is only in GitHub's GraphQL API: `autoMerge` reads the pull request's node id and merge state
 * there, and enables auto-merge — or merges through REST when nothing is pending, since GitHub refuses auto-merge on
 * a pull request that could be merged now (as `gh pr merge --auto` does).
 */
export class GitHubPulls implements PullRequestProvider {
  readonly #s: Subject;
  readonly #repo: OwnerRepo;
  readonly #path: string;

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    this.#repo = repo;
    this.#s = {
      ...ctx,
      provider: 'GitHub',
      repo: `${repo.owner}/${repo.repo}`,
      scope: GITHUB_PULL_SCOPE,
      task: PULL_REQUESTS,
    };
    this.#path = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}`;
  }

  async find(head: string, base: string): Promise<PullRequest | undefined> {
    const h = checkedBranch(head, 'head');
    const b = checkedBranch(base, 'base');
    const { api } = this.#s;
    const query = new URLSearchParams({ head: `${this.#repo.owner}:${h}`, base: b, state: 'all', per_page: '100' });
    const prs = await collectPages(
      this.#s,
      api.url(`${this.#path}/pulls?${query}`),
      api.deadline(),
      (answer) => {
        if (!Array.isArray(answer.json)) throw unexpected(answer, this.#s, 'the list of pull requests', 'a JSON array');
        const items = answer.json.filter((j) => this.#ownHead(j)).map((j) => this.#toPull(answer, j, 'the list'));
        return { items, next: nextLink(answer) };
      },
      (answer) => pullFailure(answer, this.#s, 'listing pull requests'),
    );
    return pickPull(prs.filter((p) => p.head === h && p.base === b));
  }

  async open(req: OpenPullRequest): Promise<OpenedPullRequest> {
    const r = checkedOpen(req);
    const { api } = this.#s;
    const body = { head: r.head, base: r.base, title: r.title, body: r.body };
    const answer = await api.request('POST', api.url(`${this.#path}/pulls`), { body, deadline: api.deadline() });
    if (!ok(answer)) throw pullFailure(answer, this.#s, 'opening a pull request', { head: r.head, base: r.base });
    const pr = this.#toPull(answer, answer.json, 'opening a pull request');
    const warnings: string[] = [];
    const n = pr.number;
    if (r.labels.length)
      await bestEffort(warnings, `adding the labels to pull request #${n}`, () =>
        this.#post(`/issues/${n}/labels`, { labels: r.labels }, LABELS, `labelling pull request #${n}`, n),
      );
    if (r.reviewers.length)
      await bestEffort(warnings, `requesting reviews of pull request #${n}`, () =>
        this.#post(
          `/pulls/${n}/requested_reviewers`,
          { reviewers: r.reviewers },
          REVIEWERS,
          `requesting reviews of #${n}`,
          n,
        ),
      );
    return { ...pr, warnings };
  }

  update(number: number, change: PullRequestChange): Promise<PullRequest> {
    const url = this.#s.api.url(`${this.#path}/pulls/${checkedNumber(number)}`);
    return patchPull(this.#s, url, number, change, (a, j, what) => this.#toPull(a, j, what));
  }

  async autoMerge(number: number): Promise<void> {
    const n = checkedNumber(number);
    const what = `enabling auto-merge of pull request #${n}`;
    const data = await this.#graphql(
      what,
      n,
      'query($owner: String!, $name: String!, $number: Int!) { repository(owner: $owner, name: $name) { ' +
        'pullRequest(number: $number) { id state mergeStateStatus headRefOid autoMergeRequest { enabledAt } } } }',
      { owner: this.#repo.owner, name: this.#repo.repo, number: n },
    );
    const pr = data?.repository?.pullRequest;
    if (!pr || typeof pr.id !== 'string')
      throw new ProviderError('notFound', `GitHub shows no pull request #${n} in ${this.#s.repo} (${what})`);
    if (pr.state === 'MERGED' || pr.autoMergeRequest) return;
    if (pr.state !== 'OPEN')
      throw new ProviderError(
        'invalid',
        `pull request #${n} of ${this.#s.repo} is closed: GitHub merges no closed one`,
      );
    if (MERGE_NOW.has(pr.mergeStateStatus)) {
      const { api } = this.#s;
      const body = { merge_method: 'merge', sha: typeof pr.headRefOid === 'string' ? pr.headRefOid : undefined };
      const answer = await api.request('PUT', api.url(`${this.#path}/pulls/${n}/merge`), {
        body,
        deadline: api.deadline(),
      });
      if (ok(answer)) return;
      // 405: not mergeable (a required review, a rule); 409: the head moved since it was read.
      throw pullFailure(answer, this.#s, `merging pull request #${n}`, { number: n }, mergeKind(answer.status));
    }
    await this.#graphql(
      what,
      n,
      'mutation($id: ID!) { enablePullRequestAutoMerge(input: { pullRequestId: $id, mergeMethod: MERGE }) { ' +
        'clientMutationId } }',
      { id: pr.id },
    );
  }

  /** post sends one best-effort call about pull request `n`, throwing its failure for bestEffort to report. */
  async #post(path: string, body: unknown, task: Task, what: string, n: number): Promise<void> {
    const { api } = this.#s;
    const answer = await api.request('POST', api.url(this.#path + path), { body, deadline: api.deadline() });
    if (!ok(answer)) throw pullFailure(answer, { ...this.#s, task }, what, { number: n });
  }

  /**
   * graphql sends one GraphQL call to the API's GraphQL endpoint (`/graphql` at api.github.com, `/api/graphql` on
   * GitHub Enterprise Server) and returns its data, or throws its errors as a ProviderError.
   */
  async #graphql(what: string, n: number, query: string, variables: Record<string, unknown>): Promise<any> {
    const { api } = this.#s;
    const base = api.baseUrl;
    const url = new URL(base.href);
    url.pathname = /\/api\/v3\/?$/.test(base.pathname)
      ? base.pathname.replace(/\/v3\/?$/, '/graphql')
      : `${base.pathname.replace(/\/+$/, '')}/graphql`;
    const answer = await api.request('POST', url, { body: { query, variables }, deadline: api.deadline() });
    if (!ok(answer)) throw pullFailure(answer, this.#s, what, { number: n });
    const errors: any[] = Array.isArray(answer.json?.errors) ? answer.json.errors : [];
    if (errors.length) {
      const said = clip(errors.map((e) => String(e?.message ?? '')).join('; '), 300);
      const type = String(errors[0]?.type ?? '');
      const kind: ProviderErrorKind =
        type === 'FORBIDDEN' ? 'forbidden' : type === 'NOT_FOUND' ? 'notFound' : type ? 'invalid' : 'other';
      const fix =
        kind === 'forbidden'
          ? `the token needs ${GITHUB_PULL_SCOPE}`
          : /auto.?merge is not allowed|not enabled/i.test(said)
            ? 'allow auto-merge in the repository settings (General → Pull Requests)'
            : /protected branch rules not configured|clean status/i.test(said)
              ? 'auto-merge needs a branch protection rule or ruleset on the base branch that something must pass'
              : 'see what GitHub said';
      throw new ProviderError(kind, api.scrub(`GitHub refused ${what} for ${this.#s.repo} (${said}): ${fix}`), {
        status: answer.status,
      });
    }
    if (!answer.json || typeof answer.json.data !== 'object')
      throw unexpected(answer, this.#s, what, 'a GraphQL answer');
    return answer.json.data;
  }

  /** ownHead is true for a pull request whose head branch is in the repository itself, not a fork. */
  #ownHead(j: any): boolean {
    const name = j?.head?.repo?.full_name;
    return typeof name === 'string' && name.toLowerCase() === this.#s.repo.toLowerCase();
  }

  #toPull(answer: Answer, j: any, what: string): PullRequest {
    const number = serverNumber(j?.number);
    if (!number || typeof j.head?.ref !== 'string' || typeof j.base?.ref !== 'string')
      throw unexpected(answer, this.#s, what, 'a pull request');
    return {
      number,
      url: webUrl(j.html_url),
      state: j.merged_at ? 'merged' : j.state === 'open' ? 'open' : 'closed',
      head: serverText(j.head.ref),
      base: serverText(j.base.ref),
      headSha: typeof j.head.sha === 'string' && j.head.sha ? serverText(j.head.sha, 64) : undefined,
      title: serverText(j.title),
    };
  }
}

/** mergeKind is what GitHub's answer to a merge means: 405 and 409 are the pull request's state, not the token's. */
function mergeKind(status: number): ProviderErrorKind | undefined {
  return status === 405 ? 'invalid' : status === 409 ? 'conflict' : undefined;
}
