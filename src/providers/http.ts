import http from 'node:http';
import https from 'node:https';
import { backoffMs, boundedRequest, retryAfterMs, waitWithin, type Reply } from '../http/bounded.ts';
import { ProviderError } from './types.ts';

/**
 * Answer is one HTTP answer of a provider's API: status, headers, the body as text and as JSON (undefined if not JSON).
 */
export interface Answer extends Reply {
  url: URL;
}

/** ApiClientOptions bound what one provider's calls may cost and say how to authenticate them. */
export interface ApiClientOptions {
  /** baseUrl is the API's root, e.g. https://api.github.com or http://gitea:3000/api/v1. */
  baseUrl: URL;
  /** headers go with every request: authentication and content negotiation. */
  headers: Record<string, string>;
  /** secrets are scrubbed from every message, whatever the server echoes back. */
  secrets: string[];
  timeoutMs: number;
  maxBodyBytes: number;
  maxAttempts: number;
  retryBaseMs: number;
  caData?: string;
  /** signal ends every call in flight, and every wait between tries, when it is aborted. */
  signal?: AbortSignal;
}

/** RETRYABLE methods are tried again after a 5xx or a lost connection; a POST may already have happened. */
const RETRYABLE = new Set(['GET', 'DELETE']);
/** MAX_REDIRECTS bounds the same-origin redirects one request follows (GitHub moves renamed repositories). */
const MAX_REDIRECTS = 5;

/**
 * ApiClient sends JSON requests to one provider's API. Every call has a hard deadline (whatever the server
 * does, bytes dripping included) and a body cap; GET and DELETE are tried again, a bounded number of times
 * and never past the deadline, after a 5xx or a lost connection, waiting as Retry-After asks. Non-2xx
 * answers are returned, not thrown: each provider knows what its errors mean. It never sends its headers
 * to another origin than the base URL's.
 */
export class ApiClient {
  readonly baseUrl: URL;
  readonly #opts: ApiClientOptions;
  readonly #agent: http.Agent;

  constructor(opts: ApiClientOptions) {
    this.#opts = opts;
    this.baseUrl = opts.baseUrl;
    const pool = { keepAlive: true, maxSockets: 4, timeout: 15_000 };
    this.#agent =
      opts.baseUrl.protocol === 'https:'
        ? new https.Agent({ ...pool, ca: opts.caData || undefined })
        : new http.Agent(pool);
  }

  /** origin is the API's scheme, host and port, for messages. */
  get origin(): string {
    return this.baseUrl.origin;
  }

  /** deadline is the end of a call that starts now. */
  deadline(): number {
    return Date.now() + this.#opts.timeoutMs;
  }

  /** url turns a path under the base URL (`/repos/o/r/keys?per_page=100`) into a URL. */
  url(path: string): URL {
    const base = this.baseUrl.href.replace(/\/+$/, '');
    return new URL(base + path);
  }

  /** sameOrigin is true for a URL the client may send its credentials to (a pagination link, a redirect). */
  sameOrigin(url: URL): boolean {
    return url.origin === this.baseUrl.origin;
  }

  /** scrub removes the secrets from text that came from a server or a library. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.#opts.secrets) {
      if (s.length < 4) continue;
      for (const form of new Set([s, encodeURIComponent(s)])) out = out.split(form).join('[redacted]');
    }
    return out;
  }

  /**
   * request sends one call and returns its answer, whatever the status. It throws ProviderError only when no
   * usable answer came: `unreachable` (connection error, deadline), `other` (too large, cross-origin redirect),
   * `invalid` (the request cannot be sent).
   */
  async request(method: string, url: URL, opts: { body?: unknown; deadline: number }): Promise<Answer> {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    let target = url;
    let verb = method;
    let redirects = 0;
    for (let attempt = 1; ; attempt++) {
      let answer: Answer;
      try {
        answer = await this.#send(verb, target, verb === method ? payload : undefined, opts.deadline);
      } catch (err) {
        if (await waitWithin(this.#retryDelay(err, verb, attempt), opts.deadline, this.#opts.signal)) continue;
        throw err;
      }
      const location = redirectTo(answer);
      if (location) {
        if (!this.sameOrigin(location)) {
          throw new ProviderError(
            'other',
            `${verb} ${target.pathname}: ${this.origin} redirected to another host (${location.origin}); set the ` +
              `API URL to that host if it is right`,
            { status: answer.status },
          );
        }
        if (++redirects > MAX_REDIRECTS)
          throw new ProviderError(
            'other',
            `${verb} ${target.pathname}: more than ${MAX_REDIRECTS} redirects from ${this.origin}`,
            { status: answer.status },
          );
        // Only 307 and 308 promise that the method and body may be sent again; 303 asks for a GET.
        if (answer.status === 303) verb = 'GET';
        else if ((answer.status === 301 || answer.status === 302) && verb !== 'GET') return answer;
        target = location;
        attempt = 0;
        continue;
      }
      if (answer.status >= 500 && RETRYABLE.has(verb) && attempt < this.#opts.maxAttempts) {
        const wait = retryAfterMs(answer.headers['retry-after']) ?? backoffMs(this.#opts.retryBaseMs, attempt);
        if (await waitWithin(wait, opts.deadline, this.#opts.signal)) continue;
      }
      return answer;
    }
  }

  /** retryDelay says how long to wait before trying a call again after a failed try, or undefined to give up. */
  #retryDelay(err: unknown, method: string, attempt: number): number | undefined {
    if (!(err instanceof ProviderError) || err.kind !== 'unreachable' || attempt >= this.#opts.maxAttempts)
      return undefined;
    if (err.cause === STALE_CONNECTION) return 0;
    if (!RETRYABLE.has(method)) return undefined;
    return backoffMs(this.#opts.retryBaseMs, attempt);
  }

  /** send makes one try, ending it at the deadline or when the answer outgrows the cap. */
  async #send(method: string, url: URL, payload: string | undefined, deadline: number): Promise<Answer> {
    const what = `${method} ${url.pathname}`;
    const max = this.#opts.maxBodyBytes;
    const headers: Record<string, string | number> = { 'User-Agent': 'flux-bootstrap-operator', ...this.#opts.headers };
    if (payload !== undefined)
      Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) });
    const reply = await boundedRequest(
      url,
      { method, headers, agent: this.#agent },
      payload,
      { deadline, maxBodyBytes: max, signal: this.#opts.signal },
      {
        timedOut: () =>
          new ProviderError(
            'unreachable',
            `${what}: no complete answer from ${this.origin} within ${this.#opts.timeoutMs} ms`,
          ),
        tooLarge: (status) =>
          new ProviderError('other', `${what}: the answer from ${this.origin} is larger than the ${max}-byte limit`, {
            status,
          }),
        lost: (cause, stale) => {
          const code = (cause as NodeJS.ErrnoException).code ?? '';
          const hint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)
            ? ' (a private CA? give its certificate as caData)'
            : '';
          return new ProviderError(
            'unreachable',
            `${what}: cannot reach ${this.origin}: ${this.scrub(cause.message)}${hint}`,
            { cause: stale ? STALE_CONNECTION : cause },
          );
        },
        // Node refuses some headers before sending (a token with a line break): nothing to retry.
        invalid: (cause) =>
          new ProviderError(
            'invalid',
            `${what}: the request cannot be sent (is there a line break or another control character in the ` +
              `token?): ${this.scrub((cause as Error).message)}`,
          ),
      },
    );
    return { ...reply, url };
  }
}

/**
 * STALE_CONNECTION is the cause of an error on a kept-alive connection the server had closed: nothing reached it, so
 * any method may be tried again.
 */
const STALE_CONNECTION = new Error('the kept-alive connection was closed by the server');

/** redirectTo is the Location of a redirect answer, resolved against the request's URL. */
function redirectTo(answer: Answer): URL | undefined {
  if (![301, 302, 303, 307, 308].includes(answer.status)) return undefined;
  const location = answer.headers.location;
  if (!location) return undefined;
  try {
    return new URL(location, answer.url);
  } catch {
    return undefined;
  }
}

/** nextLink is the `rel="next"` target of a Link header (RFC 8288), resolved against the request's URL. */
export function nextLink(answer: Answer): URL | undefined {
  const link = answer.headers.link;
  if (typeof link !== 'string') return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (m && /;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(m[2])) {
      try {
        return new URL(m[1], answer.url);
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
