import { header } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { KeyResource } from './keyresource.ts';
import type { ProviderContext } from './provider.ts';

/** GITLAB_SCOPE is the permission that manages deploy keys, for messages. */
export const GITLAB_SCOPE =
  'a token with the api scope, of a user or bot with at least the Maintainer role in the project';

/** gitlabNext is the next page: X-Next-Page (empty on the last page) when sent, else the Link header. */
export function gitlabNext(answer: Answer): URL | undefined {
  const page = header(answer, 'x-next-page');
  if (page === undefined) return nextLink(answer);
  if (!/^\d+$/.test(page.trim())) return undefined;
  const url = new URL(answer.url);
  url.searchParams.set('page', page.trim());
  return url;
}

/** gitlabHeaders authenticate GitLab REST calls: PRIVATE-TOKEN, or Bearer for an OAuth token. */
export function gitlabHeaders(token: string, bearer = false): Record<string, string> {
  return bearer
    ? { Authorization: `Bearer ${token}`, Accept: 'application/json' }
    : { 'PRIVATE-TOKEN': token, Accept: 'application/json' };
}

/**
 * GitLabProvider manages the deploy keys of a GitLab project through `/projects/:id/deploy_keys`, where
 * the id is the URL-encoded full path; it pages by X-Next-Page, or by the Link header when that is absent.
 */
export class GitLabProvider extends KeyResource {
  protected readonly readOnlyBody = { can_push: false };

  constructor(ctx: ProviderContext, project: { path: string; id: string }) {
    super(
      { ...ctx, provider: 'GitLab', repo: project.path, scope: GITLAB_SCOPE },
      `/projects/${project.id}/deploy_keys`,
      '?per_page=100&page=1',
    );
  }

  protected next(answer: Answer): URL | undefined {
    return gitlabNext(answer);
  }

  protected isReadOnly(k: any): boolean {
    return k.can_push !== true;
  }
}
