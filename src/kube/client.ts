import https from 'node:https';
import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/types.ts';

/** KubeObject is any Kubernetes object, as JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
}

/** KubeError is a failed API call: the HTTP status, the Status reason and its message. */
export class KubeError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'KubeError';
    this.code = code;
    this.reason = reason;
  }
}

/** isNotFound is true for a 404 from the API server. */
const isNotFound = (err: unknown): boolean => err instanceof KubeError && err.code === 404;

interface Resource {
  base: string;
  plural: string;
  namespaced: boolean;
}

/**
 * KubeClient is a small REST client on top of client-node's KubeConfig (which handles every auth method).
 * It sends objects as JSON exactly as given — client-node's typed serialiser drops fields its models do
 * not know, which would corrupt Flux's manifests — and finds resource paths through discovery.
 */
export class KubeClient {
  readonly server: string;
  readonly #kc: KubeConfig;
  readonly #resources = new Map<string, Resource>();
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, opts: { timeoutMs?: number } = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster?.server) throw new Error('the kubeconfig has no current cluster with a server address');
    this.#kc = kc;
    this.server = cluster.server.replace(/\/+$/, '');
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** fromKubeconfig builds a client from kubeconfig YAML, as found in a Cluster API `<cluster>-kubeconfig` Secret. */
  static fromKubeconfig(text: string): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromString(text);
    return new KubeClient(kc);
  }

  /** fromDefault builds a client from $KUBECONFIG, ~/.kube/config or the in-cluster service account. */
  static fromDefault(): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return new KubeClient(kc);
  }

  /** request sends one API call and returns the decoded JSON body; non-2xx answers throw KubeError. */
  async request<T = any>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const url = new URL(this.server + path);
    const opts: https.RequestOptions = { method, headers: { Accept: 'application/json' }, timeout: this.#timeoutMs };
    await this.#kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) Object.assign(opts.headers!, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(payload) });
    const transport = url.protocol === 'http:' ? http : https;
    return new Promise<T>((resolve, reject) => {
      const req = transport.request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new KubeError(0, 'ConnectionError', `${method} ${path}: ${err.message}`, err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) return resolve(json as T);
          const message = json?.message ?? (text.slice(0, 200) || `HTTP ${code}`);
          reject(new KubeError(code, json?.reason ?? 'Unknown', `${method} ${path}: ${message}`));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer in ${this.#timeoutMs} ms`)));
      req.on('error', (err) => reject(new KubeError(0, 'ConnectionError', `${method} ${this.server}${path}: ${err.message}`, err)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** resourcePath finds the REST path of a kind through discovery (cached), with the namespace and name. */
  async resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string> {
    const key = `${apiVersion}/${kind}`;
    let r = this.#resources.get(key);
    if (!r) {
      const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      const list = await this.request<{ resources: { name: string; kind: string; namespaced: boolean }[] }>('GET', base);
      for (const res of list.resources) {
        if (!res.name.includes('/')) this.#resources.set(`${apiVersion}/${res.kind}`, { base, plural: res.name, namespaced: res.namespaced });
      }
      r = this.#resources.get(key);
      if (!r) throw new KubeError(404, 'NotFound', `the server does not serve ${kind} in ${apiVersion}`);
    }
    const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
    return `${r.base}${ns}/${r.plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  /** forget drops cached discovery, e.g. after new CRDs are established. */
  forget(): void {
    this.#resources.clear();
  }

  /** apply server-side applies an object under the operator's field manager, forcing conflicts. */
  async apply<T extends KubeObject>(obj: T, opts: { fieldManager?: string; force?: boolean } = {}): Promise<T> {
    const path = await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name);
    const query = `?fieldManager=${encodeURIComponent(opts.fieldManager ?? FIELD_MANAGER)}&force=${opts.force ?? true}`;
    return this.request<T>('PATCH', path + query, obj, 'application/apply-patch+yaml');
  }

  /** get reads an object, or returns undefined when it does not exist. */
  async get<T = any>(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', await this.resourcePath(apiVersion, kind, namespace, name));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** list returns the items of a kind, in a namespace or across all. */
  async list<T = any>(apiVersion: string, kind: string, namespace?: string, query = ''): Promise<T[]> {
    const res = await this.request<{ items: T[] }>('GET', (await this.resourcePath(apiVersion, kind, namespace)) + query);
    return res.items ?? [];
  }

  /** create creates an object; a 409 surfaces as KubeError with code 409. */
  async create<T extends KubeObject>(obj: T): Promise<T> {
    return this.request<T>('POST', await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace), obj);
  }

  /** mergePatch sends a JSON merge patch to an object or, with `subresource`, to e.g. its status. */
  async mergePatch<T = any>(apiVersion: string, kind: string, namespace: string | undefined, name: string, patch: unknown, subresource = ''): Promise<T> {
    const path = await this.resourcePath(apiVersion, kind, namespace, name);
    return this.request<T>('PATCH', subresource ? `${path}/${subresource}` : path, patch, 'application/merge-patch+json');
  }

  /** delete removes an object; one that is already gone is not an error. */
  async delete(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<void> {
    try {
      await this.request('DELETE', await this.resourcePath(apiVersion, kind, namespace, name), { propagationPolicy: 'Background' });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
