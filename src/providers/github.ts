import { failure, unexpected, type Subject } from './errors.ts';
import { nextLink, type Answer } from './http.ts';
import { checkedKey, checkedTitle, keyMaterial } from './keys.ts';
import { collectPages } from './pages.ts';
import { checkedId, type ProviderContext } from './provider.ts';
import type { OwnerRepo } from './repo.ts';
import type { DeployKey, DeployKeyProvider } from './types.ts';

/** GITHUB_SCOPE is the permission that manages deploy keys, for messages. */
export const GITHUB_SCOPE = 'a fine-grained token with Administration: write on the repository, or a classic token with the repo scope';

/** githubHeaders authenticate and version GitHub REST calls. */
export function githubHeaders(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}`, Accept: 'application/vnd.github+json', 'X-GitHub-Api-Version': '2022-11-28' };
}

/**
 * GitHubProvider manages the deploy keys of a GitHub or GitHub Enterprise Server repository through
 * `/repos/{owner}/{repo}/keys`, paging by the Link header.
 */
export class GitHubProvider implements DeployKeyProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, repo: OwnerRepo) {
    this.#s = { ...ctx, provider: 'GitHub', repo: `${repo.owner}/${repo.repo}`, scope: GITHUB_SCOPE };
    this.#path = `/repos/${encodeURIComponent(repo.owner)}/${encodeURIComponent(repo.repo)}/keys`;
  }

  async list(): Promise<DeployKey[]> {
    const { api } = this.#s;
    return collectPages(this.#s, api.url(`${this.#path}?per_page=100`), api.deadline(), (answer) => {
      if (!Array.isArray(answer.json)) throw unexpected(answer, this.#s, 'the list of deploy keys', 'a JSON array');
      return { items: answer.json.map((k) => this.#toKey(answer, k, 'the list of deploy keys')), next: nextLink(answer) };
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

  #toKey(answer: Answer, k: any, what: string): DeployKey {
    if (!k || typeof k !== 'object' || k.id === undefined || typeof k.key !== 'string') throw unexpected(answer, this.#s, what, 'a deploy key');
    return { id: String(k.id), title: String(k.title ?? ''), key: keyMaterial(k.key) ?? k.key.trim(), readOnly: k.read_only === true };
  }
}
