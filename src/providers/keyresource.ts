import { failure, unexpected, type Subject } from './errors.ts';
import type { Answer } from './http.ts';
import { checkedKey, checkedTitle, keyMaterial } from './keys.ts';
import { collectPages } from './pages.ts';
import { checkedId } from './provider.ts';
import type { DeployKey, DeployKeyProvider } from './types.ts';

/**
 * KeyResource is the deploy-key REST resource GitHub, GitLab and Gitea share: GET `path` pages through JSON
 * arrays of `{id, title, key}`, POST `path` adds a key, DELETE `path/{id}` removes one (a 404 counts as
 * removed). A subclass says how to page, and how its API marks a key read-only.
 */
export abstract class KeyResource implements DeployKeyProvider {
  protected readonly subject: Subject;
  readonly #path: string;
  readonly #firstPage: string;

  /** `firstPage` is the query of the listing's first page, e.g. `?per_page=100`. */
  constructor(subject: Subject, path: string, firstPage: string) {
    this.subject = subject;
    this.#path = path;
    this.#firstPage = firstPage;
  }

  /** next is the URL of the page after `answer`, or undefined on the last; `seen` counts the keys listed so far. */
  protected abstract next(answer: Answer, seen: number): URL | undefined;
  /** readOnlyBody is the body fields that ask for a read-only key, e.g. `{ read_only: true }`. */
  protected abstract readonly readOnlyBody: Record<string, boolean>;
  /** isReadOnly reads a listed key's access. */
  protected abstract isReadOnly(k: any): boolean;

  async list(): Promise<DeployKey[]> {
    const { api } = this.subject;
    let seen = 0;
    return collectPages(this.subject, api.url(this.#path + this.#firstPage), api.deadline(), (answer) => {
      if (!Array.isArray(answer.json))
        throw unexpected(answer, this.subject, 'the list of deploy keys', 'a JSON array');
      seen += answer.json.length;
      return {
        items: answer.json.map((k) => this.#toKey(answer, k, 'the list of deploy keys')),
        next: this.next(answer, seen),
      };
    });
  }

  async add(title: string, publicKey: string): Promise<DeployKey> {
    const { api } = this.subject;
    const body = { title: checkedTitle(title), key: checkedKey(publicKey), ...this.readOnlyBody };
    const answer = await api.request('POST', api.url(this.#path), { body, deadline: api.deadline() });
    if (answer.status !== 201 && answer.status !== 200) throw failure(answer, this.subject, 'adding a deploy key');
    return this.#toKey(answer, answer.json, 'adding a deploy key');
  }

  async remove(id: string): Promise<void> {
    const { api } = this.subject;
    const answer = await api.request('DELETE', api.url(`${this.#path}/${checkedId(id)}`), { deadline: api.deadline() });
    if (answer.status === 404 || (answer.status >= 200 && answer.status < 300)) return;
    throw failure(answer, this.subject, `removing deploy key ${id}`);
  }

  #toKey(answer: Answer, k: any, what: string): DeployKey {
    if (!k || typeof k !== 'object' || k.id === undefined || typeof k.key !== 'string')
      throw unexpected(answer, this.subject, what, 'a deploy key');
    return {
      id: String(k.id),
      title: String(k.title ?? ''),
      key: keyMaterial(k.key) ?? k.key.trim(),
      readOnly: this.isReadOnly(k),
    };
  }
}
