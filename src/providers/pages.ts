import { DEPLOY_KEYS, failure, type Subject } from './errors.ts';
import type { Answer } from './http.ts';
import { ProviderError } from './types.ts';

/** MAX_PAGES bounds a listing: 100 pages are thousands of keys, far more than any repository has. */
const MAX_PAGES = 100;

/** Page is what one answer of a listing holds: its items, and where the next page is (none on the last). */
export interface Page<T> {
  items: T[];
  next?: URL;
}

/** PageBounds change where a listing ends: sooner than its last page, or at fewer pages. */
export interface PageBounds<T> {
  /** maxPages bounds the pages read (default MAX_PAGES). */
  maxPages?: number;
  /** beyond says what a listing with more pages than that does: fail (the default), or end there. */
  beyond?: 'fail' | 'stop';
  /** until ends the listing after the first page that holds an item it is true for. */
  until?: (item: T) => boolean;
}

/**
 * collectPages GETs every page of a listing, from `first` on, before `deadline`. `read` takes one 2xx answer
 * apart; `fail` turns a non-2xx answer into the provider's error. A next page on another origin (the token would go
 * there), a page seen before, or more than MAX_PAGES pages end the listing with an error, not a loop; `bounds` may end
 * it sooner.
 */
export async function collectPages<T>(
  subject: Subject,
  first: URL,
  deadline: number,
  read: (answer: Answer) => Page<T>,
  fail: (answer: Answer) => ProviderError = (answer) => failure(answer, subject, `listing ${items(subject)}`),
  bounds: PageBounds<T> = {},
): Promise<T[]> {
  const task = subject.task ?? DEPLOY_KEYS;
  const maxPages = bounds.maxPages ?? MAX_PAGES;
  const found: T[] = [];
  const seen = new Set<string>();
  let url: URL | undefined = first;
  for (let n = 1; url; n++) {
    if (n > maxPages) {
      if (bounds.beyond === 'stop') break;
      throw new ProviderError(
        'other',
        `${subject.provider} at ${subject.api.origin} has more than ${maxPages} pages of ${task.items} for ` +
          `${subject.repo}; ${task.tooMany}`,
      );
    }
    if (seen.has(url.href))
      throw new ProviderError(
        'other',
        `${subject.provider} at ${subject.api.origin} sent the same page of ${task.items} twice ` +
          `(${url.pathname}${url.search})`,
      );
    seen.add(url.href);
    const answer = await subject.api.request('GET', url, { deadline });
    if (answer.status < 200 || answer.status > 299) throw fail(answer);
    const page = read(answer);
    found.push(...page.items);
    if (bounds.until && page.items.some(bounds.until)) break;
    if (page.next && !subject.api.sameOrigin(page.next)) {
      throw new ProviderError(
        'other',
        `${subject.provider} at ${subject.api.origin} points the next page of ${task.items} to another host ` +
          `(${page.next.origin}); the token is not sent there`,
      );
    }
    url = page.items.length ? page.next : undefined;
  }
  return found;
}

function items(subject: Subject): string {
  return (subject.task ?? DEPLOY_KEYS).items;
}
