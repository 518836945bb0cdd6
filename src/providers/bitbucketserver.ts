import { failure, unexpected, type Subject } from './errors.ts';
import type { Answer } from './http.ts';
import { checkedKey, checkedTitle, keyMaterial } from './keys.ts';
import { collectPages } from './pages.ts';
import { checkedId, type ProviderContext } from './provider.ts';
import type { DeployKey, DeployKeyProvider, ProviderError, ProviderErrorKind } from './types.ts';

/** BITBUCKET_SCOPE is the permission that manages access keys, for messages. */
export const BITBUCKET_SCOPE =
  'an HTTP access token with the Repository admin permission, of a user with admin rights on the repository';

/**
 * bitbucketFailure is failure reading Bitbucket's 401 for a missing permission (an AuthorisationException) as
 * `forbidden`, not a bad token.
 */
export function bitbucketFailure(answer: Answer, s: Subject, what: string, kind?: ProviderErrorKind): ProviderError {
  const errors: any[] = Array.isArray(answer.json?.errors) ? answer.json.errors : [];
  const denied =
    answer.status === 401 && errors.some((e) => /Authori[sz]ationException/.test(String(e?.exceptionName ?? '')));
  return failure(answer, s, what, denied ? 'forbidden' : kind);
}

/** bitbucketHeaders authenticate Bitbucket Server REST calls. */
export function bitbucketHeaders(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}`, Accept: 'application/json' };
}

/**
 * BitbucketServerProvider manages the access keys of a Bitbucket Server / Data Center repository through
 * `/rest/keys/1.0/projects/{projectKey}/repos/{slug}/ssh`, paging by `start`/`nextPageStart`. The title
 * travels as the key's comment, which Bitbucket shows as its label.
 */
export class BitbucketServerProvider implements DeployKeyProvider {
  readonly #s: Subject;
  readonly #path: string;

  constructor(ctx: ProviderContext, repo: { projectKey: string; slug: string }) {
    this.#s = { ...ctx, provider: 'Bitbucket Server', repo: `${repo.projectKey}/${repo.slug}`, scope: BITBUCKET_SCOPE };
    const [project, slug] = [encodeURIComponent(repo.projectKey), encodeURIComponent(repo.slug)];
    this.#path = `/rest/keys/1.0/projects/${project}/repos/${slug}/ssh`;
  }

  async list(): Promise<DeployKey[]> {
    const { api } = this.#s;
    return collectPages(
      this.#s,
      api.url(`${this.#path}?start=0&limit=100`),
      api.deadline(),
      (answer) => {
        const j = answer.json;
        if (!j || !Array.isArray(j.values))
          throw unexpected(answer, this.#s, 'the list of access keys', 'a page of values');
        const items = j.values.map((v: any) => this.#toKey(answer, v, 'the list of access keys'));
        if (j.isLastPage !== false || typeof j.nextPageStart !== 'number') return { items };
        const next = new URL(answer.url);
        next.searchParams.set('start', String(j.nextPageStart));
        return { items, next };
      },
      (answer) => this.#failure(answer, 'listing access keys'),
    );
  }

  async add(title: string, publicKey: string): Promise<DeployKey> {
    const { api } = this.#s;
    const body = { key: { text: `${checkedKey(publicKey)} ${checkedTitle(title)}` }, permission: 'REPO_READ' };
    const answer = await api.request('POST', api.url(this.#path), { body, deadline: api.deadline() });
    if (answer.status !== 201 && answer.status !== 200) throw this.#failure(answer, 'adding an access key');
    return this.#toKey(answer, answer.json, 'adding an access key');
  }

  async remove(id: string): Promise<void> {
    const { api } = this.#s;
    const answer = await api.request('DELETE', api.url(`${this.#path}/${checkedId(id)}`), { deadline: api.deadline() });
    if (answer.status === 404 || (answer.status >= 200 && answer.status < 300)) return;
    throw this.#failure(answer, `removing access key ${id}`);
  }

  #failure(answer: Answer, what: string) {
    return bitbucketFailure(answer, this.#s, what);
  }

  #toKey(answer: Answer, v: any, what: string): DeployKey {
    const k = v?.key;
    if (!k || typeof k !== 'object' || k.id === undefined || typeof k.text !== 'string')
      throw unexpected(answer, this.#s, what, 'an access key');
    const label = typeof k.label === 'string' ? k.label : k.text.trim().split(/\s+/).slice(2).join(' ');
    return {
      id: String(k.id),
      title: label,
      key: keyMaterial(k.text) ?? k.text.trim(),
      readOnly: v.permission === 'REPO_READ' || v.permission === 'PROJECT_READ',
    };
  }
}
