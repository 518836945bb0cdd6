import { createHash } from 'node:crypto';
import https from 'node:https';
import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/types.ts';
import { backoffMs, boundedRequest, retryAfterMs, waitWithin } from '../http/bounded.ts';
import { parseTargetKubeconfig, type TargetKubeconfigOptions } from './kubeconfig.ts';

/** KubeObject is any Kubernetes object, as JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
}

/**
 * KubeError is a failed API call: the HTTP status, the Status reason and its message. Failures without an
 * answer have code 0 and reason `ConnectionError`, `Timeout` (the deadline passed), `ResponseTooLarge`,
 * `CredentialsError` (client-node could not produce them) or `InvalidRequest`.
 */
export class KubeError extends Error {
  readonly code: number;
  readonly reason: string;
  /** retryAfterMs is the server's Retry-After, when it sent one. */
  readonly retryAfterMs: number | undefined;
  constructor(code: number, reason: string, message: string, cause?: unknown, extra: { retryAfterMs?: number } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'KubeError';
    this.code = code;
    this.reason = reason;
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/** KubeClientOptions bound what one client may cost: time, memory, attempts and connections. */
export interface KubeClientOptions {
  /**
   * timeoutMs is the hard deadline of one call, retries included, however slowly the server drips bytes (default 30 s).
   */
  timeoutMs?: number;
  /** maxBodyBytes caps an answer's body; a larger one is cut off and fails (default 16 MiB). */
  maxBodyBytes?: number;
  /** maxAttempts bounds the tries of a GET or DELETE that meets 429, 5xx or a connection error (default 3). */
  maxAttempts?: number;
  /**
   * retryBaseMs is the first backoff between tries, doubled each time, when the server sends no Retry-After (default
   * 250 ms).
   */
  retryBaseMs?: number;
  /** fieldManager owns what `apply` writes unless a call names another (default FIELD_MANAGER). */
  fieldManager?: string;
  /** maxSockets bounds the connections to the API server (default 8). */
  maxSockets?: number;
  /** idleSocketMs closes a kept-alive connection after this long unused (default 15 s). */
  idleSocketMs?: number;
  /**
   * onResponse hears every try's outcome — the HTTP code, or `<error>` when none came — for rest_client_requests_total.
   */
  onResponse?: (method: string, host: string, code: string) => void;
}

/** isNotFound is true for a 404 from the API server. */
const isNotFound = (err: unknown): boolean => err instanceof KubeError && err.code === 404;

/** IDEMPOTENT methods are tried again after a 429, a 5xx or a lost connection. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'DELETE']);

/**
 * STALE marks errors of a request that went out on a kept-alive connection the server had closed: nothing reached it.
 */
const STALE = new WeakSet<Error>();

/** TLS_OPTIONS are the request options client-node fills in that belong to the connection, hence to the agent. */
const TLS_OPTIONS = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'servername', 'rejectUnauthorized'] as const;

interface Resource {
  base: string;
  plural: string;
  namespaced: boolean;
}

interface Pool {
  agent?: http.Agent;
  agentKey: string;
  resources: Map<string, Resource>;
}

/** METADATA_ONLY asks the API server to answer with a PartialObjectMetadata instead of the whole object. */
const METADATA_ONLY = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

/** METADATA_LIST asks for a PartialObjectMetadataList: the items' metadata, none of their data. */
const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

const serialized = new WeakMap<object, string>();

/**
 * serialize writes a request body as JSON; a frozen object (Flux's component objects, shared by every cluster)
 * is written once and its JSON shared by every request that sends it.
 */
function serialize(body: unknown): string {
  if (typeof body !== 'object' || body === null || !Object.isFrozen(body)) return JSON.stringify(body);
  let json = serialized.get(body);
  if (json === undefined) serialized.set(body, (json = JSON.stringify(body)));
  return json;
}

/**
 * KubeClient is a small REST client on top of client-node's KubeConfig (which handles every auth method).
 * It sends objects as JSON exactly as given — client-node's typed serialiser drops fields its models do
 * not know, which would corrupt Flux's manifests — and finds resource paths through discovery. Every call
 * has a hard deadline and a body cap, and goes over one pool of kept-alive connections per client.
 */
export class KubeClient {
  readonly server: string;
  /** fieldManager owns what `apply` writes. */
  readonly fieldManager: string;
  readonly #kc: KubeConfig;
  readonly #timeoutMs: number;
  readonly #maxBodyBytes: number;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #maxSockets: number;
  readonly #idleSocketMs: number;
  readonly #onResponse?: KubeClientOptions['onResponse'];
  readonly #opts: KubeClientOptions;
  /** #pool is what the client and its views share: the connections and what discovery found. */
  readonly #pool: Pool;
  /** #signal ends this view's calls in flight when it is aborted. */
  readonly #signal?: AbortSignal;

  constructor(kc: KubeConfig, opts: KubeClientOptions = {}, view?: { pool: Pool; signal: AbortSignal }) {
    const cluster = kc.getCurrentCluster();
    if (!cluster?.server) throw new Error('the kubeconfig has no current cluster with a server address');
    if (cluster.proxyUrl)
      throw new Error("the kubeconfig's cluster has a proxy-url, which KubeClient does not support");
    const protocol = new URL(cluster.server).protocol;
    if (protocol !== 'https:' && protocol !== 'http:')
      throw new Error("the kubeconfig's server is not an https:// or http:// URL");
    this.#kc = kc;
    this.server = cluster.server.replace(/\/+$/, '');
    this.fieldManager = opts.fieldManager ?? FIELD_MANAGER;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024 * 1024;
    this.#maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.#retryBaseMs = opts.retryBaseMs ?? 250;
    this.#maxSockets = opts.maxSockets ?? 8;
    this.#idleSocketMs = opts.idleSocketMs ?? 15_000;
    this.#onResponse = opts.onResponse;
    this.#opts = opts;
    this.#pool = view?.pool ?? { agentKey: '', resources: new Map() };
    this.#signal = view?.signal;
  }

  /**
   * withSignal is a view of this client — the same connections and discovery — whose calls in flight end,
   * and whose waits between tries end, when the signal is aborted (a cancelled reconcile).
   */
  withSignal(signal: AbortSignal): KubeClient {
    return new KubeClient(this.#kc, this.#opts, { pool: this.#pool, signal });
  }

  /**
   * fromKubeconfig builds a client from kubeconfig YAML that someone else wrote, as found in a Cluster API
   * `<cluster>-kubeconfig` Secret: it goes through parseTargetKubeconfig, so only inline credentials are
   * accepted and nothing in it can read the operator's files or run a command (exec only with `allowExec`).
   * Throws KubeconfigError.
   */
  static fromKubeconfig(text: string, opts: KubeClientOptions & TargetKubeconfigOptions = {}): KubeClient {
    return new KubeClient(parseTargetKubeconfig(text, opts), opts);
  }

  /**
   * fromTrustedKubeconfig builds a client from kubeconfig YAML the operator's own administrator wrote (the
   * operator's config, test harnesses): every client-node feature works, file paths and exec included.
   * Never use it for a kubeconfig read from a resource.
   */
  static fromTrustedKubeconfig(text: string, opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromString(text);
    return new KubeClient(kc, opts);
  }

  /** fromDefault builds a client from $KUBECONFIG, ~/.kube/config or the in-cluster service account. */
  static fromDefault(opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return new KubeClient(kc, opts);
  }

  /** close drops the client's kept-alive connections; calls made afterwards open new ones. */
  close(): void {
    this.#pool.agent?.destroy();
    this.#pool.agent = undefined;
    this.#pool.agentKey = '';
  }

  /**
   * request sends one API call and returns the decoded JSON body; non-2xx answers throw KubeError. The call
   * ends by the deadline whatever the server does; GET and DELETE are tried again (at most maxAttempts times,
   * never past the deadline) after a 429, a 5xx or a lost connection, waiting as Retry-After asks.
   */
  async request<T = any>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
    accept = 'application/json',
  ): Promise<T> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : serialize(body);
    const deadline = Date.now() + this.#timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const value = await this.#send<T>(method, path, payload, contentType, accept, deadline);
        this.#onResponse?.(method, new URL(this.server).host, '200');
        return value;
      } catch (err) {
        this.#onResponse?.(
          method,
          new URL(this.server).host,
          err instanceof KubeError && err.code > 0 ? String(err.code) : '<error>',
        );
        if (!(await waitWithin(this.#retryDelay(err, method, attempt), deadline, this.#signal))) throw err;
      }
    }
  }

  /** retryDelay says how long to wait before trying a failed call again, or undefined to give up. */
  #retryDelay(err: unknown, method: string, attempt: number): number | undefined {
    if (!(err instanceof KubeError) || attempt >= this.#maxAttempts) return undefined;
    if (STALE.has(err)) return 0;
    if (!IDEMPOTENT.has(method.toUpperCase())) return undefined;
    const transient = err.code === 429 || err.code >= 500 || (err.code === 0 && err.reason === 'ConnectionError');
    if (!transient) return undefined;
    return err.retryAfterMs ?? backoffMs(this.#retryBaseMs, attempt);
  }

  /** send makes one try of a call, ending it at the deadline or when the answer outgrows the cap. */
  async #send<T>(
    method: string,
    path: string,
    payload: string | undefined,
    contentType: string,
    accept: string,
    deadline: number,
  ): Promise<T> {
    const what = `${method} ${path}`;
    const timedOut = () =>
      new KubeError(0, 'Timeout', `${what}: no complete answer from ${this.server} within ${this.#timeoutMs} ms`);
    const url = new URL(this.server + path);
    const opts: https.RequestOptions = { method, headers: { Accept: accept } };
    try {
      await withDeadline(this.#authorize(opts), deadline, timedOut);
    } catch (cause) {
      if (cause instanceof KubeError) throw cause;
      throw new KubeError(0, 'CredentialsError', `${what}: cannot get the credentials for ${this.server}`, cause);
    }
    opts.agent = this.#agentFor(url.protocol, opts);
    if (payload !== undefined)
      Object.assign(opts.headers!, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) });
    const max = this.#maxBodyBytes;
    const { status, headers, json } = await boundedRequest(
      url,
      opts,
      payload,
      { deadline, maxBodyBytes: max, signal: this.#signal },
      {
        timedOut,
        tooLarge: () =>
          new KubeError(
            0,
            'ResponseTooLarge',
            `${what}: the answer from ${this.server} is larger than the ${max}-byte limit`,
          ),
        lost: (cause, stale) => {
          const err = new KubeError(0, 'ConnectionError', `${what} to ${this.server}: ${cause.message}`, cause);
          if (stale) STALE.add(err);
          return err;
        },
        // Node refuses some options before sending (a header with a forbidden character): nothing to retry.
        invalid: (cause) =>
          new KubeError(0, 'InvalidRequest', `${what}: the request cannot be sent: ${(cause as Error).message}`, cause),
      },
    );
    if (status >= 200 && status < 300) return json as T;
    // Only an API server's own Status is quoted: whatever else a server answers (an internal service's page, a
    // tenant's listener) never reaches a condition.
    const message = json?.kind === 'Status' && typeof json.message === 'string' ? json.message : `HTTP ${status}`;
    const reason = json?.kind === 'Status' && typeof json.reason === 'string' ? clip(json.reason, 64) : 'Unknown';
    throw new KubeError(status, reason, `${what}: ${clip(message, 500)}`, undefined, {
      retryAfterMs: retryAfterMs(headers['retry-after']),
    });
  }

  /** authorize adds the credentials and TLS material of the current user and cluster to a request's options. */
  async #authorize(opts: https.RequestOptions): Promise<void> {
    // client-node's public applyToHTTPSOptions also builds a new agent (a new connection) per call; its
    // applyOptions does only the credentials, and is used when it is there.
    const kc = this.#kc as unknown as { applyOptions?: (o: https.RequestOptions) => Promise<void> };
    if (typeof kc.applyOptions === 'function') await kc.applyOptions.call(this.#kc, opts);
    else {
      await this.#kc.applyToHTTPSOptions(opts);
      delete opts.agent;
      delete opts.auth;
    }
    const user = this.#kc.getCurrentUser();
    const headers = opts.headers as Record<string, string | number>;
    if (user?.username && !headers.Authorization) {
      headers.Authorization = `Basic ${Buffer.from(`${user.username}:${user.password ?? ''}`).toString('base64')}`;
    }
  }

  /**
   * agentFor returns the client's connection pool, moving the TLS options from the request to it; new TLS
   * material (a rotated certificate file) gets a new pool, and the old one's idle connections time out.
   */
  #agentFor(protocol: string, opts: https.RequestOptions): http.Agent {
    const tls: Record<string, unknown> = {};
    const hash = createHash('sha256').update(protocol);
    for (const k of TLS_OPTIONS) {
      const v = opts[k];
      delete opts[k];
      if (v === undefined || protocol !== 'https:') continue;
      tls[k] = v;
      hash.update(`\0${k}\0`).update(Buffer.isBuffer(v) || typeof v === 'string' ? v : JSON.stringify(v));
    }
    const key = hash.digest('hex');
    if (this.#pool.agent && key === this.#pool.agentKey) return this.#pool.agent;
    const pool = {
      keepAlive: true,
      maxSockets: this.#maxSockets,
      maxFreeSockets: this.#maxSockets,
      timeout: this.#idleSocketMs,
      scheduling: 'lifo' as const,
    };
    this.#pool.agent = protocol === 'https:' ? new https.Agent({ ...pool, ...tls }) : new http.Agent(pool);
    this.#pool.agentKey = key;
    return this.#pool.agent;
  }

  /** resourcePath finds the REST path of a kind through discovery (cached), with the namespace and name. */
  async resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string> {
    const key = `${apiVersion}/${kind}`;
    let r = this.#pool.resources.get(key);
    if (!r) {
      const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      const list = await this.request<{ resources: { name: string; kind: string; namespaced: boolean }[] }>(
        'GET',
        base,
      );
      for (const res of list.resources) {
        if (!res.name.includes('/'))
          this.#pool.resources.set(`${apiVersion}/${res.kind}`, { base, plural: res.name, namespaced: res.namespaced });
      }
      r = this.#pool.resources.get(key);
      if (!r) throw new KubeError(404, 'NotFound', `the server does not serve ${kind} in ${apiVersion}`);
    }
    const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
    return `${r.base}${ns}/${r.plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  /** forget drops cached discovery, e.g. after new CRDs are established. */
  forget(): void {
    this.#pool.resources.clear();
  }

  /**
   * apply server-side applies an object under the client's field manager (or `opts.fieldManager`), forcing conflicts.
   */
  async apply<T extends KubeObject>(
    obj: T,
    opts: { fieldManager?: string; force?: boolean; metadataOnly?: boolean } = {},
  ): Promise<T> {
    const path = await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name);
    const manager = encodeURIComponent(opts.fieldManager ?? this.fieldManager);
    const query = `?fieldManager=${manager}&force=${opts.force ?? true}`;
    // metadataOnly asks the server to answer with the object's metadata alone (a CRD's answer is hundreds of KB).
    return this.request<T>(
      'PATCH',
      path + query,
      obj,
      'application/apply-patch+yaml',
      opts.metadataOnly ? METADATA_ONLY : undefined,
    );
  }

  /** get reads an object, or returns undefined when it does not exist. */
  async get<T = any>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', await this.resourcePath(apiVersion, kind, namespace, name));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * list returns the items of a kind, in a namespace or across all; with `metadataOnly`, their metadata alone
   * (a list of Secrets then carries none of their data).
   */
  async list<T = any>(
    apiVersion: string,
    kind: string,
    namespace?: string,
    query = '',
    opts: { metadataOnly?: boolean } = {},
  ): Promise<T[]> {
    const path = (await this.resourcePath(apiVersion, kind, namespace)) + query;
    const res = await this.request<{ items: T[] }>(
      'GET',
      path,
      undefined,
      undefined,
      opts.metadataOnly ? METADATA_LIST : undefined,
    );
    return res.items ?? [];
  }

  /** create creates an object; a 409 surfaces as KubeError with code 409. */
  async create<T extends KubeObject>(obj: T): Promise<T> {
    return this.request<T>('POST', await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace), obj);
  }

  /** mergePatch sends a JSON merge patch to an object or, with `subresource`, to e.g. its status. */
  async mergePatch<T = any>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource = '',
  ): Promise<T> {
    const path = await this.resourcePath(apiVersion, kind, namespace, name);
    return this.request<T>(
      'PATCH',
      subresource ? `${path}/${subresource}` : path,
      patch,
      'application/merge-patch+json',
    );
  }

  /** delete removes an object; one that is already gone is not an error. */
  async delete(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<void> {
    try {
      await this.request('DELETE', await this.resourcePath(apiVersion, kind, namespace, name), {
        propagationPolicy: 'Background',
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/** withDeadline settles like the promise, or rejects with the given error when the deadline comes first. */
async function withDeadline<T>(p: Promise<T>, deadline: number, err: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(err()), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** clip makes text from the server fit a message: one line, printable, bounded. */
function clip(text: string, max: number): string {
  const line = text.replace(/[\x00-\x1f\x7f]+/g, ' ');
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
