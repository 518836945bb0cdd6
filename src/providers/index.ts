import { BitbucketServerProvider, bitbucketHeaders } from './bitbucketserver.ts';
import { GiteaProvider, giteaHeaders } from './gitea.ts';
import { GitHubProvider, githubHeaders } from './github.ts';
import { GitLabProvider, gitlabHeaders } from './gitlab.ts';
import { ApiClient } from './http.ts';
import { bitbucketServerRepo, giteaRepo, githubRepo, gitlabProject, parseGitUrl } from './repo.ts';
import {
  ProviderError,
  type DeployKeyProvider,
  type ProviderOptions,
  type ProviderType,
  type PullRequestProvider,
} from './types.ts';
import { ensureDeployKey, removeDeployKeys } from './keys.ts';
import type { ProviderContext } from './provider.ts';
import { BitbucketServerPulls } from './bitbucketserver-pulls.ts';
import { GiteaPulls } from './gitea-pulls.ts';
import { GitHubPulls } from './github-pulls.ts';
import { GitLabPulls } from './gitlab-pulls.ts';
import type { ProviderKeys, ProviderPulls } from '../phases/context.ts';

/**
 * ensureDeployKey adds a read-only deploy key unless the same key material is there; removeDeployKeys removes by title
 * and/or key.
 */
export { ensureDeployKey, removeDeployKeys, keyMaterial, sameKey } from './keys.ts';
/** The deploy key and pull request types, the provider interfaces, their options and their one error type. */
export {
  ProviderError,
  type DeployKey,
  type DeployKeyProvider,
  type ProviderErrorKind,
  type ProviderOptions,
  type ProviderType,
  type OpenPullRequest,
  type OpenedPullRequest,
  type PullRequest,
  type PullRequestChange,
  type PullRequestProvider,
  type PullRequestState,
} from './types.ts';
/** Repository identification from a git URL, per provider. */
export { bitbucketServerRepo, giteaRepo, githubRepo, gitlabProject, parseGitUrl } from './repo.ts';

/**
 * providerKeys is the ProviderKeys adapter of the phases: providerFor's deploy keys, registered read-only
 * unless the same key material is there, and removed by key material.
 */
export function providerKeys(opts: ProviderOptions): ProviderKeys {
  const provider = providerFor(opts);
  return {
    ensure: async (title, publicKey) => ({ created: (await ensureDeployKey(provider, title, publicKey)).created }),
    remove: async (publicKey) => void (await removeDeployKeys(provider, { publicKey })),
  };
}

/** DEFAULT_API is the API of each provider's public service; self-hosted ones need `apiUrl`. */
const DEFAULT_API: Partial<Record<ProviderType, { url: string; hosts: string[] }>> = {
  github: { url: 'https://api.github.com', hosts: ['github.com', 'ssh.github.com', 'www.github.com'] },
  gitlab: { url: 'https://gitlab.com/api/v4', hosts: ['gitlab.com', 'altssh.gitlab.com', 'www.gitlab.com'] },
};

/**
 * providerFor builds the deploy-key adapter for a repository. `apiUrl` defaults to api.github.com or
 * gitlab.com for repositories there; any other host (GitHub Enterprise, self-hosted GitLab, Gitea/Forgejo,
 * Bitbucket Server) must name its API, so a token is never sent to a host derived from the repository URL
 * alone. Throws ProviderError `invalid` for a URL or option that cannot work; the token is trimmed and
 * appears in no message.
 */
export function providerFor(opts: ProviderOptions): DeployKeyProvider {
  return connect<DeployKeyProvider>(opts, {
    github: (ctx) => new GitHubProvider(ctx, githubRepo(opts.repoUrl)),
    gitlab: (ctx, apiUrl) => new GitLabProvider(ctx, gitlabProject(opts.repoUrl, apiUrl.href)),
    gitea: (ctx, apiUrl) => new GiteaProvider(ctx, giteaRepo(opts.repoUrl, apiUrl.href)),
    bitbucketserver: (ctx) => new BitbucketServerProvider(ctx, bitbucketServerRepo(opts.repoUrl)),
  });
}

/**
 * pullsFor builds the pull-request adapter for a repository, with providerFor's rules for the options (API URL,
 * token, bounds). Bitbucket Server's has no `autoMerge`.
 */
export function pullsFor(opts: ProviderOptions): PullRequestProvider {
  return connect<PullRequestProvider>(opts, {
    github: (ctx) => new GitHubPulls(ctx, githubRepo(opts.repoUrl)),
    gitlab: (ctx, apiUrl) => new GitLabPulls(ctx, gitlabProject(opts.repoUrl, apiUrl.href)),
    gitea: (ctx, apiUrl) => new GiteaPulls(ctx, giteaRepo(opts.repoUrl, apiUrl.href)),
    bitbucketserver: (ctx) => new BitbucketServerPulls(ctx, bitbucketServerRepo(opts.repoUrl)),
  });
}

/**
 * providerPulls is the ProviderPulls adapter of the phases: pullsFor's pull requests, `autoMerge` only where the
 * provider has it.
 */
export function providerPulls(opts: ProviderOptions): ProviderPulls {
  const pulls = pullsFor(opts);
  const seam: ProviderPulls = {
    find: (head, base) => pulls.find(head, base),
    open: (req) => pulls.open(req),
    update: (number, change) => pulls.update(number, change),
  };
  if (pulls.autoMerge) seam.autoMerge = (number) => pulls.autoMerge!(number);
  return seam;
}

/**
 * connect checks the options, builds the API client and hands it to the adapter `make` builds for the provider type.
 * A ProviderError that would repeat the token (pasted into the wrong field) has it redacted.
 */
function connect<T>(opts: ProviderOptions, make: Record<ProviderType, (ctx: ProviderContext, apiUrl: URL) => T>): T {
  const token = (opts.token ?? '').trim();
  const tokenRef = opts.tokenRef ?? 'its Secret';
  try {
    if (!Object.hasOwn(EXAMPLE, opts.type)) {
      throw new ProviderError(
        'invalid',
        `unknown git provider type "${String(opts.type).slice(0, 40)}"; use github, gitlab, gitea or bitbucketserver`,
      );
    }
    if (!token) throw new ProviderError('invalid', `the token in ${tokenRef} is empty`);
    const apiUrl = resolveApiUrl(opts);
    const api = new ApiClient({
      baseUrl: apiUrl,
      headers: headersFor(opts.type, token),
      secrets: [token],
      timeoutMs: positive(opts.timeoutMs, 15_000),
      maxBodyBytes: positive(opts.maxBodyBytes, 4 * 1024 * 1024),
      maxAttempts: Math.max(1, Math.floor(positive(opts.maxAttempts, 3))),
      retryBaseMs: opts.retryBaseMs !== undefined && opts.retryBaseMs >= 0 ? opts.retryBaseMs : 250,
      caData: opts.caData,
      signal: opts.signal,
    });
    return make[opts.type]({ api, tokenRef }, apiUrl);
  } catch (err) {
    // A token pasted into the wrong field would otherwise be repeated by the message about that field.
    if (err instanceof ProviderError && token.length >= 4 && err.message.includes(token)) {
      throw new ProviderError(err.kind, err.message.split(token).join('[redacted]'));
    }
    throw err;
  }
}

/** resolveApiUrl checks `apiUrl`, or picks the public service's when the repository lives there. */
function resolveApiUrl(opts: ProviderOptions): URL {
  const known = DEFAULT_API[opts.type];
  let text = opts.apiUrl?.trim();
  if (!text) {
    const host = parseGitUrl(opts.repoUrl).host;
    if (!known || !known.hosts.includes(host)) {
      throw new ProviderError(
        'invalid',
        `the ${opts.type} repository on ${host} needs the API URL of its server (e.g. ${EXAMPLE[opts.type]})`,
      );
    }
    text = known.url;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ProviderError('invalid', `the API URL "${text.slice(0, 200)}" is not a URL (e.g. ${EXAMPLE[opts.type]})`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new ProviderError('invalid', `the API URL must be https:// or http://, not ${url.protocol}`);
  if (url.username || url.password)
    throw new ProviderError('invalid', 'the API URL must not carry credentials; the token goes in its Secret');
  if (url.search || url.hash)
    throw new ProviderError('invalid', `the API URL ${url.origin}${url.pathname} must not have a query or a fragment`);
  return url;
}

const EXAMPLE: Record<ProviderType, string> = {
  github: 'https://github.example.com/api/v3',
  gitlab: 'https://gitlab.example.com/api/v4',
  gitea: 'https://gitea.example.com/api/v1',
  bitbucketserver: 'https://bitbucket.example.com',
};

function headersFor(type: ProviderType, token: string): Record<string, string> {
  switch (type) {
    case 'github':
      return githubHeaders(token);
    case 'gitlab':
      return gitlabHeaders(token);
    case 'gitea':
      return giteaHeaders(token);
    case 'bitbucketserver':
      return bitbucketHeaders(token);
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
