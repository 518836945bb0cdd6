import { header, type Subject } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { KeyResource } from './keyresource.ts';
import type { ProviderContext } from './provider.ts';
import type { OwnerRepo } from './repo.ts';

/** GITEA_SCOPE is the permission that manages deploy keys, for messages. */
export const GITEA_SCOPE = 'a token with the write:repository scope, of a user with admin rights on the repository';

/** GITEA_PAGE is the page size asked for; Gitea caps it at its MAX_RESPONSE_ITEMS (50 by default). */
export const GITEA_PAGE = 50;

/**
 * giteaNext is the page after `answer` of a Gitea listing: the Link header's next page or, without one, the next page
 * number while X-Total-Count says there are more than the `seen` items listed so far.
 */
export function giteaNext(answer: Answer, seen: number): URL | undefined {
  if (answer.headers.link !== undefined) return nextLink(answer);
  const total = Number(header(answer, 'x-total-count'));
  if (!Number.isFinite(total) || seen >= total) return undefined;
  const url = new URL(answer.url);
  url.searchParams.set('page', String(Number(url.searchParams.get('page') ?? '1') + 1));
  return url;
}

/** giteaHeaders authenticate Gitea and Forgejo REST calls. */
export function giteaHeaders(token: string): Record<string, string> {
  return { Authorization: `token ${token}`, Accept: 'application/json' };
}

/**
 * GiteaProvider manages the deploy keys of a Gitea or Forgejo repository through `/repos/{owner}/{repo}/keys`,
 * paging by the Link header, or by X-Total-Count when a server sends no Link.
 */
export class GiteaProvider extends KeyResource {
  protected readonly readOnlyBody = { read_only: true };

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    const subject: Subject = { ...ctx, provider: 'Gitea', repo: `${repo.owner}/${repo.repo}`, scope: GITEA_SCOPE };
    super(
      subject,
      `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}/keys`,
      `?page=1&limit=${GITEA_PAGE}`,
    );
  }

  protected next(answer: Answer, seen: number): URL | undefined {
    return giteaNext(answer, seen);
  }

  protected isReadOnly(k: any): boolean {
    return k.read_only === true;
  }
}
