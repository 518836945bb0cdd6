import http from 'node:http';
import https from 'node:https';
import { reasonOf, sleep } from '../cancel.ts';

/** Reply is one HTTP answer read in full: status, headers, the body as text and as JSON (undefined if not JSON). */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** BoundedErrors make the caller's own errors for the ways a bounded request can fail without a reply. */
export interface BoundedErrors {
  /** timedOut is for no complete answer by the deadline. */
  timedOut(): Error;
  /** tooLarge is for a body over the cap. */
  tooLarge(status: number | undefined): Error;
  /**
   * lost is for a connection error; `stale` when a kept-alive connection the server had closed was reused, so nothing
   * reached it.
   */
  lost(cause: Error, stale: boolean): Error;
  /** invalid is for a request Node refuses to send (a header with a forbidden character): nothing to retry. */
  invalid(cause: unknown): Error;
}

/**
 * MAX_IN_FLIGHT_BYTES is how much of all answers being read at once the process holds: one call's cap bounds
 * one answer, this bounds them all together.
 */
export const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
let inFlight = 0;

/** bytesInFlight is how many bytes of answers are being held now (for tests and metrics). */
export const bytesInFlight = () => inFlight;

/**
 * boundedRequest makes one try of an HTTP call and reads the whole answer, whatever its status. It ends by
 * `deadline` however slowly the server drips bytes, and cuts off a body larger than `maxBodyBytes`; failures
 * reject with the errors `errors` makes, or with the signal's CancelledError once it is aborted.
 */
export function boundedRequest(
  url: URL,
  opts: http.RequestOptions,
  payload: string | undefined,
  limits: { deadline: number; maxBodyBytes: number; signal?: AbortSignal },
  errors: BoundedErrors,
): Promise<Reply> {
  const transport = url.protocol === 'https:' ? https : http;
  const max = limits.maxBodyBytes;
  return new Promise<Reply>((resolve, reject) => {
    let settled = false;
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    let req: http.ClientRequest;
    const onAbort = () => cut(reasonOf(limits.signal!));
    let held = 0;
    const release = () => {
      inFlight -= held;
      held = 0;
    };
    const finish = (err: Error | undefined, value?: Reply) => {
      release();
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      limits.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value!);
    };
    const cut = (err: Error) => {
      finish(err);
      req.destroy();
    };
    const lost = (cause: Error) =>
      errors.lost(cause, !answered && req.reusedSocket && (cause as NodeJS.ErrnoException).code === 'ECONNRESET');
    const onAnswer = (res: http.IncomingMessage) => {
      answered = true;
      if (Number(res.headers['content-length']) > max) return cut(errors.tooLarge(res.statusCode));
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (settled) return;
        size += c.length;
        held += c.length;
        inFlight += c.length;
        // The bodies of every call in flight share one budget: many large answers at once cannot fill the heap.
        if (size > max || inFlight > MAX_IN_FLIGHT_BYTES) return cut(errors.tooLarge(res.statusCode));
        chunks.push(c);
      });
      res.on('error', (err) => finish(lost(err)));
      res.on('close', () => {
        if (!res.complete) finish(lost(new Error('the connection closed before the answer was complete')));
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        release();
        // JSON only where JSON is said: a body of another type is never parsed (nor grows the heap as JSON).
        let json: any;
        if (/\bjson\b/i.test(String(res.headers['content-type'] ?? '')) && text) {
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
        }
        finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    };
    try {
      req = transport.request(url, opts, onAnswer);
    } catch (cause) {
      return reject(errors.invalid(cause));
    }
    if (limits.signal?.aborted) return cut(reasonOf(limits.signal));
    limits.signal?.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => cut(errors.timedOut()), Math.max(0, limits.deadline - Date.now()));
    req.on('error', (err) => finish(lost(err)));
    req.end(payload);
  });
}

/** backoffMs is the wait before try `attempt + 1`: `baseMs` doubled per try, half of it random (jitter). */
export function backoffMs(baseMs: number, attempt: number): number {
  const backoff = baseMs * 2 ** (attempt - 1);
  return backoff / 2 + Math.random() * (backoff / 2);
}

/**
 * waitWithin sleeps `ms` and returns true when that ends before `deadline`; with no wait, or one that would not, it
 * returns false at once.
 */
export async function waitWithin(ms: number | undefined, deadline: number, signal?: AbortSignal): Promise<boolean> {
  if (ms === undefined || Date.now() + ms >= deadline) return false;
  await sleep(ms, signal);
  return true;
}

/** retryAfterMs reads a Retry-After header (seconds or an HTTP date) as milliseconds. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
