import type { Subject } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { KeyResource } from './keyresource.ts';
import type { ProviderContext } from './provider.ts';
import type { OwnerRepo } from './repo.ts';

/** GITHUB_SCOPE is the permission that manages deploy keys, for messages. */
export const GITHUB_SCOPE =
  'a fine-grained token with Administration: write on the repository, or a classic token with the repo scope';

/** githubHeaders authenticate and version GitHub REST calls. */
export function githubHeaders(token: string): Record<string, string> {
  return {
    Authorization: `Bearer ${token}`,
    Accept: 'application/vnd.github+json',
    'X-GitHub-Api-Version': '2022-11-28',
  };
}

/**
 * GitHubProvider manages the deploy keys of a GitHub or GitHub Enterprise Server repository through
 * `/repos/{owner}/{repo}/keys`, paging by the Link header.
 */
export class GitHubProvider extends KeyResource {
  protected readonly readOnlyBody = { read_only: true };

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    const subject: Subject = { ...ctx, provider: 'GitHub', repo: `${repo.owner}/${repo.repo}`, scope: GITHUB_SCOPE };
    super(subject, `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}/keys`, '?per_page=100');
  }

  protected next(answer: Answer): URL | undefined {
    return nextLink(answer);
  }

  protected isReadOnly(k: any): boolean {
    return k.read_only === true;
  }
}
