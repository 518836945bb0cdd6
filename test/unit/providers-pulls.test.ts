import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ProviderError,
  providerPulls,
  pullsFor,
  type ProviderOptions,
  type ProviderType,
  type PullRequestProvider,
} from '../../src/providers/index.ts';

// Local stand-ins for each provider's pull-request API, each following its documented endpoints, paging,
// authentication and error shapes, over one in-memory store of pull requests.

/** StoredPull is a pull request as a fake host keeps it. */
interface StoredPull {
  number: number;
  head: string;
  base: string;
  title: string;
  body: string;
  state: 'open' | 'closed' | 'merged';
  sha: string;
  labels: string[];
  reviewers: string[];
  /** fork marks a pull request from a fork's branch of the same name. */
  fork?: boolean;
  /** closedAt orders closed ones, for Gitea's sort=recentclose. */
  closedAt?: number;
  autoMerge?: boolean;
  version: number;
}

/** Host is a fake git host's state, which a test sets up and inspects. */
interface Host {
  token: string;
  /** scoped is false when the token lacks what pull requests need. */
  scoped: boolean;
  /** echoToken makes every error message repeat the credentials the server got, as careless servers do. */
  echoToken: boolean;
  /** pageCap is the largest page the server hands out. */
  pageCap: number;
  pulls: StoredPull[];
  nextNumber: number;
  /** users may be asked for reviews; others are refused. */
  users: string[];
  /** labels exist in the repository (Gitea adds only those). */
  labels: string[];
  /** decorationFails makes the call that adds labels (GitLab: that looks up reviewers) fail. */
  decorationFails: boolean;
  /** mergeState is GitHub's mergeStateStatus of every pull request. */
  mergeState: string;
  /** autoMergeOff is GitHub's repository setting "Allow auto-merge" turned off. */
  autoMergeOff?: boolean;
  /** empty is a Gitea repository with no branch yet, whose pull requests Gitea hides. */
  empty?: boolean;
  /** stallLabels makes the labels call never answer. */
  stallLabels?: boolean;
  hits: { method: string; url: string; headers: http.IncomingHttpHeaders; body: any }[];
}

type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** Dialect is one provider's pull-request API as the fake serves it. */
interface Dialect {
  name: string;
  type: ProviderType;
  apiPath: string;
  repoUrl: (port: number) => string;
  /** scopeHint is a phrase the forbidden message must contain. */
  scopeHint: RegExp;
  handle: (host: Host, req: http.IncomingMessage, url: URL, body: any, reply: Reply) => void;
}

const echo = (host: Host, req: http.IncomingMessage) =>
  host.echoToken ? ` (credentials: ${req.headers.authorization ?? req.headers['private-token']})` : '';
const newest = (a: StoredPull, b: StoredPull) => b.number - a.number;
const sha = () => randomBytes(20).toString('hex');

/** add stores a new pull request. */
function add(host: Host, p: Partial<StoredPull> & { head: string; base: string }): StoredPull {
  const pr: StoredPull = {
    number: host.nextNumber++,
    title: `from ${p.head}`,
    body: '',
    state: 'open',
    sha: sha(),
    labels: [],
    reviewers: [],
    version: 0,
    ...p,
  };
  if (pr.state !== 'open') pr.closedAt ??= pr.number;
  host.pulls.push(pr);
  return pr;
}

function linkHeader(url: URL, host: string, pageNo: number, last: number): string {
  const at = (n: number) => {
    const u = new URL(url.pathname + url.search, `http://${host}`);
    u.searchParams.set('page', String(n));
    return `<${u.href}>`;
  };
  const parts: string[] = [];
  if (pageNo < last) parts.push(`${at(pageNo + 1)}; rel="next"`, `${at(last)}; rel="last"`);
  if (pageNo > 1) parts.push(`${at(1)}; rel="first"`, `${at(pageNo - 1)}; rel="prev"`);
  return parts.join(', ');
}

function page<T>(items: T[], pageNo: number, size: number): { items: T[]; last: number } {
  return { items: items.slice((pageNo - 1) * size, pageNo * size), last: Math.max(1, Math.ceil(items.length / size)) };
}

const github: Dialect = {
  name: 'GitHub Enterprise',
  type: 'github',
  apiPath: '/api/v3',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/acme/fleet.git`,
  scopeHint: /Pull requests: write/,
  handle(host, req, url, body, reply) {
    if (req.headers.authorization !== `Bearer ${host.token}`)
      return reply(401, { message: `Bad credentials${echo(host, req)}`, status: '401' });
    if (!host.scoped)
      return reply(403, { message: `Resource not accessible by personal access token${echo(host, req)}` });
    const view = (p: StoredPull) => ({
      number: p.number,
      node_id: `PR_node${p.number}`,
      html_url: `https://ghe.example.com/acme/fleet/pull/${p.number}`,
      state: p.state === 'open' ? 'open' : 'closed',
      merged_at: p.state === 'merged' ? '2024-01-02T00:00:00Z' : null,
      title: p.title,
      body: p.body,
      head: { ref: p.head, sha: p.sha, repo: { full_name: p.fork ? 'someone/fleet' : 'acme/fleet' } },
      base: { ref: p.base, repo: { full_name: 'acme/fleet' } },
    });
    if (url.pathname === '/api/graphql' && req.method === 'POST') {
      const q: string = body?.query ?? '';
      if (/enablePullRequestAutoMerge/.test(q)) {
        const pr = host.pulls.find((p) => `PR_node${p.number}` === body.variables?.id);
        if (!pr) return reply(200, { data: null, errors: [{ type: 'NOT_FOUND', message: 'Could not resolve' }] });
        if (host.autoMergeOff)
          return reply(200, {
            data: { enablePullRequestAutoMerge: null },
            errors: [{ type: 'UNPROCESSABLE', message: 'Pull request Auto merge is not allowed for this repository' }],
          });
        if (host.mergeState === 'CLEAN')
          return reply(200, { errors: [{ type: 'UNPROCESSABLE', message: 'Pull request is in clean status' }] });
        pr.autoMerge = true;
        return reply(200, { data: { enablePullRequestAutoMerge: { clientMutationId: null } } });
      }
      const pr = host.pulls.find((p) => p.number === body?.variables?.number);
      if (!pr) return reply(200, { data: { repository: { pullRequest: null } } });
      const state = pr.state === 'open' ? 'OPEN' : pr.state === 'merged' ? 'MERGED' : 'CLOSED';
      return reply(200, {
        data: {
          repository: {
            pullRequest: {
              id: `PR_node${pr.number}`,
              state,
              mergeStateStatus: host.mergeState,
              headRefOid: pr.sha,
              autoMergeRequest: pr.autoMerge ? { enabledAt: '2024-01-01T00:00:00Z' } : null,
            },
          },
        },
      });
    }
    const m =
      /^\/api\/v3\/repos\/acme\/fleet\/(pulls|issues)(?:\/(\d+))?(?:\/(labels|requested_reviewers|merge))?$/.exec(
        url.pathname,
      );
    if (!m) return reply(404, { message: 'Not Found' });
    const [, kind, num, sub] = m;
    const pr = num ? host.pulls.find((p) => p.number === Number(num)) : undefined;
    if (num && !pr) return reply(404, { message: 'Not Found' });
    if (kind === 'pulls' && !num && req.method === 'GET') {
      const [owner, branch] = (url.searchParams.get('head') ?? '').split(':');
      const base = url.searchParams.get('base');
      const state = url.searchParams.get('state') ?? 'open';
      const list = host.pulls
        .filter((p) => (p.fork ? 'someone' : 'acme') === owner && p.head === branch && (!base || p.base === base))
        .filter((p) => state === 'all' || (state === 'open') === (p.state === 'open'))
        .sort(newest);
      const size = Math.min(Number(url.searchParams.get('per_page') ?? 30), 100, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(list, pageNo, size);
      const link = linkHeader(url, req.headers.host!, pageNo, p.last);
      return reply(200, p.items.map(view), link ? { link } : {});
    }
    if (kind === 'pulls' && !num && req.method === 'POST') {
      if (host.pulls.some((p) => p.state === 'open' && p.head === body.head && p.base === body.base && !p.fork))
        return reply(422, {
          message: 'Validation Failed',
          errors: [
            {
              resource: 'PullRequest',
              code: 'custom',
              message: `A pull request already exists for acme:${body.head}.`,
            },
          ],
        });
      return reply(201, view(add(host, { head: body.head, base: body.base, title: body.title, body: body.body })));
    }
    if (kind === 'pulls' && pr && !sub && req.method === 'PATCH') {
      if (body.title !== undefined) pr.title = body.title;
      if (body.body !== undefined) pr.body = body.body;
      return reply(200, view(pr));
    }
    if (kind === 'pulls' && pr && !sub && req.method === 'GET') return reply(200, view(pr));
    if (kind === 'issues' && pr && sub === 'labels' && req.method === 'POST') {
      if (host.stallLabels) return;
      if (host.decorationFails)
        return reply(403, { message: `Resource not accessible by integration${echo(host, req)}` });
      for (const l of body.labels) if (!pr.labels.includes(l)) pr.labels.push(l);
      return reply(
        200,
        pr.labels.map((name, id) => ({ id, name })),
      );
    }
    if (kind === 'pulls' && pr && sub === 'requested_reviewers' && req.method === 'POST') {
      if (!body.reviewers.every((r: string) => host.users.includes(r)))
        return reply(422, {
          message:
            'Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the acme/fleet repository.',
        });
      pr.reviewers.push(...body.reviewers);
      return reply(201, view(pr));
    }
    if (kind === 'pulls' && pr && sub === 'merge' && req.method === 'PUT') {
      if (pr.state !== 'open') return reply(405, { message: 'Pull Request is not mergeable' });
      if (body.sha && body.sha !== pr.sha)
        return reply(409, { message: 'Head branch was modified. Review and try the merge again.' });
      pr.state = 'merged';
      return reply(200, { sha: sha(), merged: true, message: 'Pull Request successfully merged' });
    }
    reply(404, { message: 'Not Found' });
  },
};

const gitlab: Dialect = {
  name: 'GitLab',
  type: 'gitlab',
  apiPath: '/api/v4',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/platform/clusters/fleet.git`,
  scopeHint: /api scope.*Developer/,
  handle(host, req, url, body, reply) {
    if (req.headers['private-token'] !== host.token)
      return reply(401, { message: `401 Unauthorized${echo(host, req)}` });
    if (!host.scoped)
      return reply(403, {
        error: 'insufficient_scope',
        error_description: `The request requires higher privileges than provided by the access token.${echo(host, req)}`,
        scope: 'api',
      });
    if (url.pathname === '/api/v4/users' && req.method === 'GET') {
      if (host.decorationFails) return reply(403, { message: `403 Forbidden${echo(host, req)}` });
      const name = url.searchParams.get('username');
      const i = host.users.indexOf(name ?? '');
      return reply(200, i < 0 ? [] : [{ id: 500 + i, username: name, state: 'active' }]);
    }
    const m = /^\/api\/v4\/projects\/platform%2Fclusters%2Ffleet\/merge_requests(?:\/(\d+))?(\/merge)?$/.exec(
      url.pathname,
    );
    if (!m) return reply(404, { message: '404 Project Not Found' });
    const [, num, merge] = m;
    const pr = num ? host.pulls.find((p) => p.number === Number(num)) : undefined;
    if (num && !pr) return reply(404, { message: '404 Not found' });
    const view = (p: StoredPull) => ({
      id: 9000 + p.number,
      iid: p.number,
      project_id: 7,
      title: p.title,
      description: p.body,
      state: p.state === 'open' ? 'opened' : p.state,
      source_branch: p.head,
      target_branch: p.base,
      source_project_id: p.fork ? 8 : 7,
      target_project_id: 7,
      sha: p.sha,
      labels: p.labels,
      reviewers: p.reviewers.map((username) => ({ username })),
      merge_when_pipeline_succeeds: p.autoMerge === true,
      web_url: `https://gitlab.example.com/platform/clusters/fleet/-/merge_requests/${p.number}`,
    });
    if (!num && req.method === 'GET') {
      const state = url.searchParams.get('state') ?? 'all';
      const list = host.pulls
        .filter(
          (p) => p.head === url.searchParams.get('source_branch') && p.base === url.searchParams.get('target_branch'),
        )
        .filter((p) => state === 'all' || view(p).state === state)
        .sort(newest);
      const size = Math.min(Number(url.searchParams.get('per_page') ?? 20), 100, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(list, pageNo, size);
      return reply(200, p.items.map(view), {
        'X-Page': String(pageNo),
        'X-Per-Page': String(size),
        'X-Next-Page': pageNo < p.last ? String(pageNo + 1) : '',
        'X-Total': String(list.length),
      });
    }
    if (!num && req.method === 'POST') {
      const open = host.pulls.find((p) => p.state === 'open' && !p.fork && p.head === body.source_branch);
      if (open)
        return reply(409, {
          message: [`Another open merge request already exists for this source branch: !${open.number}`],
        });
      const pr = add(host, {
        head: body.source_branch,
        base: body.target_branch,
        title: body.title,
        body: body.description,
      });
      pr.labels = typeof body.labels === 'string' ? body.labels.split(',') : [];
      pr.reviewers = (body.reviewer_ids ?? []).map((id: number) => host.users[id - 500]);
      return reply(201, view(pr));
    }
    if (pr && !merge && req.method === 'GET') return reply(200, view(pr));
    if (pr && !merge && req.method === 'PUT') {
      if (body.title !== undefined) pr.title = body.title;
      if (body.description !== undefined) pr.body = body.description;
      return reply(200, view(pr));
    }
    if (pr && merge && req.method === 'PUT') {
      if (pr.state !== 'open') return reply(405, { message: '405 Method Not Allowed' });
      if (body.auto_merge === true || body.merge_when_pipeline_succeeds === true) pr.autoMerge = true;
      return reply(200, view(pr));
    }
    reply(405, { message: '405 Method Not Allowed' });
  },
};

const gitea: Dialect = {
  name: 'Gitea',
  type: 'gitea',
  apiPath: '/api/v1',
  repoUrl: (port) => `http://127.0.0.1:${port}/acme/fleet.git`,
  scopeHint: /write:repository/,
  handle(host, req, url, body, reply) {
    const swagger = `http://${req.headers.host}/api/swagger`;
    if (req.headers.authorization !== `token ${host.token}`)
      return reply(401, { message: `user does not exist [uid: 0, name: ]${echo(host, req)}`, url: swagger });
    if (!host.scoped)
      return reply(403, {
        message: `token does not have at least one of required scope(s): [write:repository]${echo(host, req)}`,
        url: swagger,
      });
    const m =
      /^\/api\/v1\/repos\/acme\/fleet\/(pulls|issues)(?:\/(\d+))?(?:\/(labels|requested_reviewers|merge))?$/.exec(
        url.pathname,
      );
    if (!m || (host.empty && m[1] === 'pulls')) return reply(404, { message: 'not found', url: swagger });
    const [, kind, num, sub] = m;
    const pr = num ? host.pulls.find((p) => p.number === Number(num)) : undefined;
    if (num && !pr) return reply(404, { message: "The target couldn't be found.", url: swagger });
    const view = (p: StoredPull) => ({
      id: 3000 + p.number,
      number: p.number,
      html_url: `http://${req.headers.host}/acme/fleet/pulls/${p.number}`,
      state: p.state === 'open' ? 'open' : 'closed',
      merged: p.state === 'merged',
      title: p.title,
      body: p.body,
      head: { label: p.head, ref: p.head, sha: p.sha, repo_id: p.fork ? 12 : 11 },
      base: { label: p.base, ref: p.base, repo_id: 11 },
      labels: p.labels.map((name) => ({ name })),
    });
    if (kind === 'pulls' && !num && req.method === 'GET') {
      const state = url.searchParams.get('state') ?? 'open';
      const base = url.searchParams.get('base_branch');
      const list = host.pulls
        .filter((p) => !base || p.base === base)
        .filter((p) => state === 'all' || (state === 'open') === (p.state === 'open'))
        .sort(
          url.searchParams.get('sort') === 'recentclose' ? (a, b) => (b.closedAt ?? 0) - (a.closedAt ?? 0) : newest,
        );
      const size = Math.min(Number(url.searchParams.get('limit') ?? 30), 50, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(list, pageNo, size);
      const headers: Record<string, string> = { 'X-Total-Count': String(list.length) };
      const link = linkHeader(url, req.headers.host!, pageNo, p.last);
      if (link) headers.Link = link;
      return reply(200, p.items.map(view), headers);
    }
    if (kind === 'pulls' && !num && req.method === 'POST') {
      if (host.pulls.some((p) => p.state === 'open' && !p.fork && p.head === body.head && p.base === body.base))
        return reply(409, {
          message: `pull request already exists for these targets [id: 1, head_branch: ${body.head}]`,
          url: swagger,
        });
      return reply(201, view(add(host, { head: body.head, base: body.base, title: body.title, body: body.body })));
    }
    if (kind === 'pulls' && pr && !sub && req.method === 'PATCH') {
      if (body.title) pr.title = body.title;
      if (body.body !== undefined && body.body !== null) pr.body = body.body;
      return reply(201, view(pr));
    }
    if (kind === 'pulls' && pr && !sub && req.method === 'GET') return reply(200, view(pr));
    if (kind === 'issues' && pr && sub === 'labels' && req.method === 'POST') {
      if (host.decorationFails)
        return reply(403, {
          message: `token does not have at least one of required scope(s): [write:issue]`,
          url: swagger,
        });
      for (const l of body.labels) if (host.labels.includes(l) && !pr.labels.includes(l)) pr.labels.push(l);
      return reply(
        200,
        pr.labels.map((name, id) => ({ id, name })),
      );
    }
    if (kind === 'pulls' && pr && sub === 'requested_reviewers' && req.method === 'POST') {
      const unknown = body.reviewers.find((r: string) => !host.users.includes(r));
      if (unknown) return reply(422, { message: `user does not exist [uid: 0, name: ${unknown}]`, url: swagger });
      pr.reviewers.push(...body.reviewers);
      return reply(201, []);
    }
    if (kind === 'pulls' && pr && sub === 'merge' && req.method === 'POST') {
      if (pr.state !== 'open') return reply(405, { message: 'The PR is already merged', url: swagger });
      if (body.merge_when_checks_succeed !== true) {
        pr.state = 'merged';
        return reply(200, undefined);
      }
      if (pr.autoMerge)
        return reply(409, {
          message: `pull request is already scheduled to auto merge when checks succeed [pull_id: ${pr.number}]`,
          url: swagger,
        });
      pr.autoMerge = true;
      return reply(201, undefined);
    }
    reply(404, { message: "The target couldn't be found.", url: swagger });
  },
};

const bitbucket: Dialect = {
  name: 'Bitbucket Server',
  type: 'bitbucketserver',
  apiPath: '',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/OPS/fleet.git`,
  scopeHint: /Repository write/,
  handle(host, req, url, body, reply) {
    const errors = (message: string, exceptionName: string, extra: object = {}) => ({
      errors: [{ context: null, message, exceptionName, ...extra }],
    });
    if (req.headers.authorization !== `Bearer ${host.token}`)
      return reply(
        401,
        errors(
          `Authentication failed. Please check your credentials and try again.${echo(host, req)}`,
          'com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException',
        ),
      );
    if (!host.scoped)
      return reply(
        401,
        errors(
          `You are not permitted to access this resource${echo(host, req)}`,
          'com.atlassian.bitbucket.AuthorisationException',
        ),
      );
    const m = /^\/rest\/api\/1\.0\/projects\/OPS\/repos\/fleet\/pull-requests(?:\/(\d+))?$/.exec(url.pathname);
    if (!m)
      return reply(
        404,
        errors('Repository OPS/fleet does not exist.', 'com.atlassian.bitbucket.repository.NoSuchRepositoryException'),
      );
    const pr = m[1] ? host.pulls.find((p) => p.number === Number(m[1])) : undefined;
    if (m[1] && !pr)
      return reply(
        404,
        errors(
          `Pull request ${m[1]} does not exist in OPS/fleet.`,
          'com.atlassian.bitbucket.pull.NoSuchPullRequestException',
        ),
      );
    const ref = (branch: string, fork = false) => ({
      id: `refs/heads/${branch}`,
      displayId: branch,
      latestCommit: undefined as string | undefined,
      repository: { slug: 'fleet', project: { key: fork ? '~SOMEONE' : 'OPS' } },
    });
    const view = (p: StoredPull) => ({
      id: p.number,
      version: p.version,
      title: p.title,
      description: p.body,
      state: p.state === 'open' ? 'OPEN' : p.state === 'merged' ? 'MERGED' : 'DECLINED',
      open: p.state === 'open',
      closed: p.state !== 'open',
      fromRef: { ...ref(p.head, p.fork), latestCommit: p.sha },
      toRef: ref(p.base),
      reviewers: p.reviewers.map((name) => ({ user: { name }, role: 'REVIEWER', approved: false })),
      links: { self: [{ href: `https://bitbucket.example.com/projects/OPS/repos/fleet/pull-requests/${p.number}` }] },
    });
    if (!m[1] && req.method === 'GET') {
      const at = url.searchParams.get('at');
      const state = url.searchParams.get('state') ?? 'OPEN';
      const list = host.pulls
        .filter((p) => url.searchParams.get('direction') === 'OUTGOING' && `refs/heads/${p.head}` === at)
        .filter((p) => state === 'ALL' || view(p).state === state)
        .sort(url.searchParams.get('order') === 'OLDEST' ? (a, b) => -newest(a, b) : newest);
      const limit = Math.min(Number(url.searchParams.get('limit') ?? 25), host.pageCap);
      const start = Number(url.searchParams.get('start') ?? 0);
      const values = list.slice(start, start + limit).map(view);
      const isLastPage = start + limit >= list.length;
      return reply(200, {
        size: values.length,
        limit,
        isLastPage,
        values,
        start,
        ...(isLastPage ? {} : { nextPageStart: start + limit }),
      });
    }
    if (!m[1] && req.method === 'POST') {
      const head = String(body?.fromRef?.id).replace('refs/heads/', '');
      const base = String(body?.toRef?.id).replace('refs/heads/', '');
      if (host.pulls.some((p) => p.state === 'open' && !p.fork && p.head === head && p.base === base))
        return reply(
          409,
          errors(
            'Only one pull request may be open for a given source and target branch',
            'com.atlassian.bitbucket.pull.DuplicatePullRequestException',
          ),
        );
      const names: string[] = (body.reviewers ?? []).map((r: any) => r.user.name);
      const unknown = names.filter((n) => !host.users.includes(n));
      if (unknown.length)
        return reply(
          409,
          errors(
            'Errors encountered while adding some reviewers to this pull request.',
            'com.atlassian.bitbucket.pull.InvalidPullRequestReviewersException',
            {
              reviewerErrors: unknown.map((n) => ({ context: n, message: `${n} is not a user.` })),
            },
          ),
        );
      const pr = add(host, { head, base, title: body.title, body: body.description ?? '' });
      pr.reviewers = names;
      return reply(201, view(pr));
    }
    if (pr && req.method === 'GET') return reply(200, view(pr));
    if (pr && req.method === 'PUT') {
      if (body.version !== pr.version)
        return reply(
          409,
          errors(
            `You are attempting to modify a pull request based on out-of-date information.`,
            'com.atlassian.bitbucket.pull.PullRequestOutOfDateException',
            {
              currentVersion: pr.version,
            },
          ),
        );
      pr.title = body.title ?? pr.title;
      pr.body = body.description ?? '';
      // Bitbucket drops the reviewers a PUT leaves out.
      pr.reviewers = (body.reviewers ?? []).map((r: any) => r.user.name);
      pr.version++;
      return reply(200, view(pr));
    }
    reply(405, errors('Method not allowed', 'com.atlassian.bitbucket.MethodNotAllowedException'));
  },
};

const DIALECTS = [github, gitlab, gitea, bitbucket];

const servers: http.Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

async function listen(handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** options are the ProviderOptions of dialect `d` against a fake on `port`. */
const options = (d: Dialect, port: number, token: string, extra: Partial<ProviderOptions> = {}): ProviderOptions => ({
  type: d.type,
  apiUrl: `http://127.0.0.1:${port}${d.apiPath}`,
  token,
  repoUrl: d.repoUrl(port),
  tokenRef: 'Secret flux-system/git-api-token',
  retryBaseMs: 5,
  ...extra,
});

/** serve starts a fake host speaking one dialect, and a pull-request adapter pointed at it. */
async function serve(
  d: Dialect,
  setup: Partial<Host> = {},
): Promise<{ host: Host; pulls: PullRequestProvider; port: number }> {
  const host: Host = {
    token: `tok-${randomBytes(12).toString('hex')}`,
    scoped: true,
    echoToken: false,
    pageCap: 100,
    pulls: [],
    nextNumber: 1,
    users: ['alice', 'bob'],
    labels: ['flux', 'bootstrap'],
    decorationFails: false,
    mergeState: 'BLOCKED',
    hits: [],
    ...setup,
  };
  const port = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: any;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      } catch {
        body = undefined;
      }
      host.hits.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      d.handle(host, req, new URL(req.url!, 'http://x'), body, (status, payload, headers = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
        res.end(payload === undefined ? '' : JSON.stringify(payload));
      });
    });
  });
  return { host, pulls: pullsFor(options(d, port, host.token)), port };
}

async function failure(call: () => Promise<unknown>): Promise<ProviderError> {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof ProviderError, String(err));
    return err;
  }
  assert.fail('the call succeeded');
}

function assertClean(err: Error, host: Host): void {
  assert.ok(!err.message.includes(host.token), `the message holds the token: ${err.message}`);
  assert.ok(!String(err.stack).includes(host.token), 'the stack holds the token');
}

const HEAD = 'flux-bootstrap/clusters-prod';

for (const d of DIALECTS) {
  describe(`the ${d.name} pull-request adapter`, () => {
    test('finds nothing when no pull request comes from the head into the base, a fork’s included', async () => {
      const { host, pulls } = await serve(d);
      add(host, { head: 'other', base: 'main' });
      add(host, { head: HEAD, base: 'release' });
      add(host, { head: HEAD, base: 'main', fork: true });
      assert.equal(await pulls.find(HEAD, 'main'), undefined);
    });

    test('finds the open one before newer closed ones, across pages', async () => {
      const { host, pulls } = await serve(d, { pageCap: 2 });
      add(host, { head: HEAD, base: 'main', state: 'merged' });
      const open = add(host, { head: HEAD, base: 'main', title: 'the open one' });
      for (let i = 0; i < 4; i++) add(host, { head: HEAD, base: 'main', state: 'closed', fork: i === 0 });
      add(host, { head: 'other', base: 'main' });
      const found = await pulls.find(HEAD, 'main');
      assert.deepEqual(found && { ...found, url: '' }, {
        number: open.number,
        url: '',
        state: 'open',
        head: HEAD,
        base: 'main',
        headSha: open.sha,
        title: 'the open one',
      });
      assert.match(found!.url, new RegExp(`^https?://.*${open.number}$`));
    });

    test('finds the most recent closed or merged one when none is open, and tells which', async () => {
      for (const last of ['closed', 'merged'] as const) {
        const { host, pulls } = await serve(d, { pageCap: 2 });
        add(host, { head: HEAD, base: 'main', state: last === 'closed' ? 'merged' : 'closed' });
        add(host, { head: HEAD, base: 'main', state: 'closed' });
        const newest = add(host, { head: HEAD, base: 'main', state: last });
        add(host, { head: HEAD, base: 'main', state: 'open', fork: true });
        const found = await pulls.find(HEAD, 'main');
        assert.equal(found?.number, newest.number, last);
        assert.equal(found?.state, last);
      }
    });

    test('opens a pull request with labels and reviewers, and warns of none', async () => {
      const { host, pulls } = await serve(d);
      const opened = await pulls.open({
        head: HEAD,
        base: 'main',
        title: 'Bootstrap Flux on clusters/prod',
        body: 'Flux v2.6.0\n\ncomponents: source-controller',
        labels: d.type === 'bitbucketserver' ? [] : ['flux', 'bootstrap'],
        reviewers: ['alice'],
      });
      assert.deepEqual(opened.warnings, []);
      assert.equal(opened.state, 'open');
      assert.equal(opened.head, HEAD);
      assert.equal(opened.base, 'main');
      assert.equal(opened.title, 'Bootstrap Flux on clusters/prod');
      const stored = host.pulls.find((p) => p.number === opened.number)!;
      assert.equal(stored.body, 'Flux v2.6.0\n\ncomponents: source-controller');
      assert.deepEqual(stored.labels, d.type === 'bitbucketserver' ? [] : ['flux', 'bootstrap']);
      assert.deepEqual(stored.reviewers, ['alice']);
      const { warnings: _, ...pr } = opened;
      assert.deepEqual(await pulls.find(HEAD, 'main'), pr, 'find finds what open made');
    });

    const decoration: Record<ProviderType, { setup: Partial<Host>; reviewers: string[]; warning: RegExp }> = {
      github: {
        setup: { decorationFails: true },
        reviewers: ['mallory'],
        warning: /refused the reviewers for acme\/fleet .*collaborator/,
      },
      gitlab: {
        setup: { decorationFails: true },
        reviewers: ['alice'],
        warning: /looking up the reviewer alice failed/,
      },
      gitea: { setup: { decorationFails: true }, reviewers: ['mallory'], warning: /write:issue/ },
      bitbucketserver: {
        setup: {},
        reviewers: ['mallory'],
        warning: /requesting reviews failed: .*refused the reviewers .*check that each reviewer/,
      },
    };
    test('opens the pull request even when adding its labels or reviewers fails, and says so in warnings', async () => {
      const { setup, reviewers, warning } = decoration[d.type];
      const { host, pulls } = await serve(d, setup);
      const opened = await pulls.open({
        head: HEAD,
        base: 'main',
        title: 'Bootstrap',
        body: '',
        labels: ['flux'],
        reviewers,
      });
      assert.equal(opened.state, 'open');
      assert.equal(host.pulls.filter((p) => p.state === 'open').length, 1, 'one pull request');
      assert.ok(opened.warnings.length >= 1, 'a warning');
      assert.ok(
        opened.warnings.some((w) => warning.test(w)),
        opened.warnings.join('\n'),
      );
      for (const w of opened.warnings) assert.ok(!w.includes(host.token), w);
    });

    test('updates the title and the body, and leaves out what it is not given', async () => {
      const { host, pulls } = await serve(d);
      const pr = add(host, { head: HEAD, base: 'main', title: 'old', body: 'old body', reviewers: ['bob'] });
      const updated = await pulls.update(pr.number, { title: 'Bootstrap Flux v2.6.1' });
      assert.equal(updated.title, 'Bootstrap Flux v2.6.1');
      assert.equal(pr.body, 'old body');
      await pulls.update(pr.number, { body: 'new body' });
      assert.equal(pr.body, 'new body');
      assert.equal(pr.title, 'Bootstrap Flux v2.6.1');
      assert.deepEqual(pr.reviewers, ['bob'], 'the reviewers stay');
      assert.equal((await pulls.update(pr.number, {})).title, 'Bootstrap Flux v2.6.1', 'nothing to change reads it');
    });

    test('refuses to open a second pull request from the head into the base as a conflict', async () => {
      const { host, pulls } = await serve(d);
      add(host, { head: HEAD, base: 'main' });
      const err = await failure(() => pulls.open({ head: HEAD, base: 'main', title: 't', body: '' }));
      assert.equal(err.kind, 'conflict');
      assert.match(err.message, /(pull|merge) request from that head branch into that base branch is open already/);
    });

    test('says the pull request is not there when updating one that is not', async () => {
      const { pulls } = await serve(d);
      const err = await failure(() => pulls.update(42, { title: 't' }));
      assert.equal(err.kind, 'notFound');
      assert.match(err.message, d.type === 'gitlab' ? /no merge request !42 in/ : /no pull request #42 in/);
    });

    test('says the token is refused when it is wrong, and which scope it lacks when it may not', async () => {
      const { host, pulls } = await serve(d);
      const token = host.token;
      host.token = 'another-token';
      const refused = await failure(() => pulls.find(HEAD, 'main'));
      assert.equal(refused.kind, 'unauthorized');
      assert.match(refused.message, /refused the token in Secret flux-system\/git-api-token/);
      host.token = token;
      host.scoped = false;
      for (const call of [
        () => pulls.find(HEAD, 'main'),
        () => pulls.open({ head: HEAD, base: 'main', title: 't', body: '' }),
        () => pulls.update(1, { title: 't' }),
      ]) {
        const err = await failure(call);
        assert.equal(err.kind, 'forbidden');
        assert.match(err.message, /lacks the scope to open and update (pull|merge) requests on/);
        assert.match(err.message, d.scopeHint);
        assertClean(err, host);
      }
    });

    test('never puts the token in a message, even when the server repeats it', async () => {
      const { host, pulls } = await serve(d, { echoToken: true, scoped: false });
      const err = await failure(() => pulls.open({ head: HEAD, base: 'main', title: 't', body: '' }));
      assert.match(err.message, /credentials: .*\[redacted\]/, 'the server did repeat it');
      assertClean(err, host);
      const wrong = await serve(d, { echoToken: true });
      const token = wrong.host.token;
      wrong.host.token = 'another';
      const refused = await failure(() => wrong.pulls.find(HEAD, 'main'));
      assert.ok(!refused.message.includes(token), refused.message);
    });

    test('checks branches, title and number before any call', async () => {
      const { host, pulls } = await serve(d);
      for (const call of [
        () => pulls.find('bad..branch', 'main'),
        () => pulls.find(HEAD, ''),
        () => pulls.open({ head: HEAD, base: HEAD, title: 't', body: '' }),
        () => pulls.open({ head: HEAD, base: 'main', title: ' \n', body: '' }),
        () => pulls.open({ head: HEAD, base: 'main', title: 't', body: '', reviewers: ['a b'] }),
        () => pulls.update(0, { title: 't' }),
      ]) {
        const err = await failure(call);
        assert.equal(err.kind, 'invalid', err.message);
      }
      assert.equal(host.hits.length, 0);
    });

    if (d.type === 'bitbucketserver') {
      test('has no auto-merge, and warns that labels do not exist on Bitbucket Server', async () => {
        const { host, pulls, port } = await serve(d);
        assert.equal(pulls.autoMerge, undefined);
        assert.equal(providerPulls(options(d, port, host.token)).autoMerge, undefined);
        const opened = await pulls.open({ head: HEAD, base: 'main', title: 't', body: '', labels: ['flux'] });
        assert.deepEqual(opened.warnings, ['Bitbucket Server has no labels on pull requests: the labels are not set']);
      });

      test('sends the version it read, and reads again when someone changed the pull request meanwhile', async () => {
        let pr: StoredPull | undefined;
        const racing: Dialect = {
          ...d,
          handle(h, req, url, body, reply) {
            // Someone else's edit lands between the adapter's first read and its write.
            if (req.method === 'PUT' && pr && pr.version === 0) pr.version++;
            d.handle(h, req, url, body, reply);
          },
        };
        const { host, pulls } = await serve(racing);
        pr = add(host, { head: HEAD, base: 'main', reviewers: ['alice'] });
        const updated = await pulls.update(pr.number, { title: 'after the race' });
        assert.equal(updated.title, 'after the race');
        assert.deepEqual(pr.reviewers, ['alice'], 'the reviewers were sent back');
        assert.deepEqual(
          host.hits.map((h) => h.method),
          ['GET', 'PUT', 'GET', 'PUT'],
        );
      });
    } else {
      test('asks the provider to merge once checks pass; asking again is not an error', async () => {
        const { host, pulls } = await serve(d);
        const pr = add(host, { head: HEAD, base: 'main' });
        await pulls.autoMerge!(pr.number);
        assert.equal(pr.autoMerge, true);
        await pulls.autoMerge!(pr.number);
        assert.equal(pr.state, 'open', 'not merged yet: checks are pending');
      });
    }
  });
}

describe('GitHub auto-merge', () => {
  test('merges at once through REST when nothing is pending, since GitHub refuses auto-merge then', async () => {
    const { host, pulls } = await serve(github, { mergeState: 'CLEAN' });
    const pr = add(host, { head: HEAD, base: 'main' });
    await pulls.autoMerge!(pr.number);
    assert.equal(pr.state, 'merged');
    const merge = host.hits.find((h) => h.method === 'PUT')!;
    assert.deepEqual(merge.body, { merge_method: 'merge', sha: pr.sha });
    await pulls.autoMerge!(pr.number);
    assert.equal(host.hits.filter((h) => h.method === 'PUT').length, 1, 'a merged one is left alone');
  });

  test('uses /api/graphql on GitHub Enterprise Server', async () => {
    const { host, pulls } = await serve(github);
    await pulls.autoMerge!(add(host, { head: HEAD, base: 'main' }).number);
    assert.deepEqual(
      host.hits.map((h) => `${h.method} ${new URL(h.url, 'http://x').pathname}`),
      ['POST /api/graphql', 'POST /api/graphql'],
    );
  });
});

describe('GitHub and cancellation', () => {
  test('says to allow auto-merge in the settings when the repository does not', async () => {
    const { host, pulls } = await serve(github, { autoMergeOff: true });
    const err = await failure(() => pulls.autoMerge!(add(host, { head: HEAD, base: 'main' }).number));
    assert.equal(err.kind, 'invalid');
    assert.match(
      err.message,
      /GitHub refused enabling auto-merge of pull request #1 for acme\/fleet \(Pull request Auto merge/,
    );
    assert.match(err.message, /allow auto-merge in the repository settings/);
  });

  test('an abort while the labels are added fails the open, and is no warning', { timeout: 10_000 }, async () => {
    const { host, port } = await serve(github, { stallLabels: true });
    const ac = new AbortController();
    const pulls = pullsFor(options(github, port, host.token, { signal: ac.signal }));
    const opening = pulls.open({ head: HEAD, base: 'main', title: 't', body: '', labels: ['flux'] });
    while (!host.hits.some((h) => h.url.endsWith('/labels'))) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await assert.rejects(opening, (err: Error) => err.name === 'CancelledError');
  });
});

describe('Gitea labels and an empty repository', () => {
  test('says that Gitea hides the pull requests of a repository it takes for empty', async () => {
    const { pulls } = await serve(gitea, { empty: true });
    const err = await failure(() => pulls.find(HEAD, 'main'));
    assert.equal(err.kind, 'notFound');
    assert.match(err.message, /shows no repository acme\/fleet .*404 while the repository is empty/);
  });

  test('warns of labels the repository does not have, which Gitea leaves out without an error', async () => {
    const { host, pulls } = await serve(gitea);
    const opened = await pulls.open({ head: HEAD, base: 'main', title: 't', body: '', labels: ['flux', 'nope'] });
    assert.deepEqual(host.pulls[0].labels, ['flux']);
    assert.deepEqual(opened.warnings, ['Gitea has no label "nope" in acme/fleet: create it there']);
  });

  test('finds a closed one by the most recently closed, past pages of other pull requests', async () => {
    const { host, pulls } = await serve(gitea, { pageCap: 2 });
    const ours = add(host, { head: HEAD, base: 'main', state: 'closed', closedAt: 100 });
    for (let i = 0; i < 5; i++) add(host, { head: `other-${i}`, base: 'main', state: 'merged', closedAt: 200 + i });
    add(host, { head: HEAD, base: 'main', state: 'merged', closedAt: 50 });
    assert.equal((await pulls.find(HEAD, 'main'))?.number, ours.number);
    const lists = host.hits.filter((h) => h.url.includes('state=closed'));
    assert.ok(lists.every((h) => h.url.includes('sort=recentclose') && h.url.includes('base_branch=main')));
    assert.equal(lists.length, 3, 'it stopped at the page with the match');
  });
});

describe('a pull-request call', () => {
  for (const d of DIALECTS) {
    test(
      `${d.name}: is cut at its deadline by a server that drips, and by an answer over the cap`,
      { timeout: 10_000 },
      async () => {
        const token = `tok-${randomBytes(12).toString('hex')}`;
        const drip = await listen((_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          const t = setInterval(() => res.write(' '), 100);
          res.on('close', () => clearInterval(t));
        });
        const start = Date.now();
        const slow = await failure(() => pullsFor(options(d, drip, token, { timeoutMs: 600 })).find(HEAD, 'main'));
        assert.equal(slow.kind, 'unreachable');
        assert.match(slow.message, /no complete answer .* within 600 ms/);
        assert.ok(Date.now() - start < 2000, `took ${Date.now() - start} ms`);

        const huge = await listen((_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          const chunk = Buffer.alloc(64 * 1024, ' ');
          const pump = () => {
            while (!res.destroyed && res.write(chunk));
          };
          res.on('drain', pump);
          pump();
        });
        const big = await failure(() =>
          pullsFor(options(d, huge, token, { maxBodyBytes: 128 * 1024 })).open({
            head: HEAD,
            base: 'main',
            title: 't',
            body: '',
          }),
        );
        assert.equal(big.kind, 'other');
        assert.match(big.message, /larger than the 131072-byte limit/);
        for (const e of [slow, big]) assert.ok(!e.message.includes(token));
      },
    );
  }
});

describe('providerPulls', () => {
  test('is pullsFor behind the ProviderPulls seam, with providerFor’s rules for the options', async () => {
    assert.throws(
      () => providerPulls({ type: 'gitea', token: 't0ken', repoUrl: 'ssh://git@gitea.example.com/acme/fleet.git' }),
      (err: unknown) => err instanceof ProviderError && err.kind === 'invalid' && /needs the API URL/.test(err.message),
    );
    assert.throws(
      () => providerPulls({ type: 'github', token: '', repoUrl: 'ssh://git@github.com/acme/fleet.git' }),
      /the token in its Secret is empty/,
    );
    const { host } = await serve(gitea);
    const port = await listen((req, res) => {
      host.hits.push({ method: req.method!, url: req.url!, headers: req.headers, body: undefined });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('[]');
    });
    const seam = providerPulls(options(gitea, port, host.token));
    assert.equal(typeof seam.autoMerge, 'function');
    assert.equal(await seam.find(HEAD, 'main'), undefined);
    assert.equal(host.hits.length, 2, 'the open ones, then the closed ones');
  });
});
