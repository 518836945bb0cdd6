import { failure, header, unexpected, type Subject } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { checkedKey, checkedTitle, keyMaterial } from './keys.ts';
import { collectPages } from './pages.ts';
import { checkedId, type ProviderContext } from './provider.ts';
import type { DeployKey, DeployKeyProvider } from './types.ts';

/** GITLAB_SCOPE is the permission that manages deploy keys, for messages. */
export const GITLAB_SCOPE = 'a token with the api scope, of a user or bot with at least the Maintainer role in the project';

/** gitlabHeaders authenticate GitLab REST calls: PRIVATE-TOKEN, or Bearer for an OAuth token. */
export function gitlabHeaders(token: string, bearer = false): Record<string, string> {
  return bearer ? { Authorization: `Bearer ${token}`, Accept: 'application/json' } : { 'PRIVATE-TOKEN': token, Accept: 'application/json' };
}

/**
 * GitLabProvider manages the deploy keys of a GitLab project through `/projects/:id/deploy_keys`, where
 * the id is the URL-encoded full path; it pages by X-Next-Page, or by the Link header when that is absent.
 */
export class GitLabProvider implements DeployKeyProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, project: { path: string; id: string }) {
    this.#s = { ...ctx, provider: 'GitLab', repo: project.path, scope: GITLAB_SCOPE };
    this.#path = `/projects/${project.id}/deploy_keys`;
  }

  async list(): Promise<DeployKey[]> {
    const { api } = this.#s;
    return collectPages(this.#s, api.url(`${this.#path}?per_page=100&page=1`), api.deadline(), (answer) => {
      if (!Array.isArray(answer.json)) throw unexpected(answer, this.#s, 'the list of deploy keys', 'a JSON array');
      return { items: answer.json.map((k) => this.#toKey(answer, k, 'the list of deploy keys')), next: this.#next(answer) };
    });
  }

  async add(title: string, publicKey: string): Promise<DeployKey> {
    const { api } = this.#s;
    const body = { title: checkedTitle(title), key: checkedKey(publicKey), can_push: false };
    const answer = await api.request('POST', api.url(this.#path), { body, deadline: api.deadline() });
    if (answer.status !== 201 && answer.status !== 200) throw failure(answer, this.#s, 'adding a deploy key');
    return this.#toKey(answer, answer.json, 'adding a deploy key');
  }

  async remove(id: string): Promise<void> {
    const { api } = this.#s;
    const answer = await api.request('DELETE', api.url(`${this.#path}/${checkedId(id)}`), { deadline: api.deadline() });
    if (answer.status === 404 || (answer.status >= 200 && answer.status < 300)) return;
    throw failure(answer, this.#s, `removing deploy key ${id}`);
  }

  /** next is the next page: X-Next-Page (empty on the last page) when sent, else the Link header. */
  #next(answer: Answer): URL | undefined {
    const page = header(answer, 'x-next-page');
    if (page === undefined) return nextLink(answer);
    if (!/^\d+$/.test(page.trim())) return undefined;
    const url = new URL(answer.url);
    url.searchParams.set('page', page.trim());
    return url;
  }

  #toKey(answer: Answer, k: any, what: string): DeployKey {
    if (!k || typeof k !== 'object' || k.id === undefined || typeof k.key !== 'string') throw unexpected(answer, this.#s, what, 'a deploy key');
    return { id: String(k.id), title: String(k.title ?? ''), key: keyMaterial(k.key) ?? k.key.trim(), readOnly: k.can_push !== true };
  }
}
