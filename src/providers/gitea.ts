import { failure, header, unexpected, type Subject } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { checkedKey, checkedTitle, keyMaterial } from './keys.ts';
import { collectPages } from './pages.ts';
import { checkedId, type ProviderContext } from './provider.ts';
import type { OwnerRepo } from './repo.ts';
import type { DeployKey, DeployKeyProvider } from './types.ts';

/** GITEA_SCOPE is the permission that manages deploy keys, for messages. */
export const GITEA_SCOPE = 'a token with the write:repository scope, of a user with admin rights on the repository';

/** GITEA_PAGE is the page size asked for; Gitea caps it at its MAX_RESPONSE_ITEMS (50 by default). */
const GITEA_PAGE = 50;

/** giteaHeaders authenticate Gitea and Forgejo REST calls. */
export function giteaHeaders(token: string): Record<string, string> {
  return { Authorization: `token ${token}`, Accept: 'application/json' };
}

/**
 * GiteaProvider manages the deploy keys of a Gitea or Forgejo repository through `/repos/{owner}/{repo}/keys`,
 * paging by the Link header, or by X-Total-Count when a server sends no Link.
 */
export class GiteaProvider implements DeployKeyProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    this.#s = { ...ctx, provider: 'Gitea', repo: `${repo.owner}/${repo.repo}`, scope: GITEA_SCOPE };
    this.#path = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}/keys`;
  }

  async list(): Promise<DeployKey[]> {
    const { api } = this.#s;
    let seen = 0;
    return collectPages(this.#s, api.url(`${this.#path}?page=1&limit=${GITEA_PAGE}`), api.deadline(), (answer) => {
      if (!Array.isArray(answer.json)) throw unexpected(answer, this.#s, 'the list of deploy keys', 'a JSON array');
      seen += answer.json.length;
      return { items: answer.json.map((k) => this.#toKey(answer, k, 'the list of deploy keys')), next: this.#next(answer, seen) };
    });
  }

  async add(title: string, publicKey: string): Promise<DeployKey> {
    const { api } = this.#s;
    const body = { title: checkedTitle(title), key: checkedKey(publicKey), read_only: true };
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

  /** next is the Link header's next page or, without one, the next page number while X-Total-Count says there are more. */
  #next(answer: Answer, seen: number): URL | undefined {
    if (answer.headers.link !== undefined) return nextLink(answer);
    const total = Number(header(answer, 'x-total-count'));
    if (!Number.isFinite(total) || seen >= total) return undefined;
    const url = new URL(answer.url);
    url.searchParams.set('page', String(Number(url.searchParams.get('page') ?? '1') + 1));
    return url;
  }

  #toKey(answer: Answer, k: any, what: string): DeployKey {
    if (!k || typeof k !== 'object' || k.id === undefined || typeof k.key !== 'string') throw unexpected(answer, this.#s, what, 'a deploy key');
    return { id: String(k.id), title: String(k.title ?? ''), key: keyMaterial(k.key) ?? k.key.trim(), readOnly: k.read_only === true };
  }
}
