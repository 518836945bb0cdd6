import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { parse } from 'yaml';
import { KubeConfig } from '@kubernetes/client-node';
import type { Cluster, Context, User } from '@kubernetes/client-node';

/** MAX_KUBECONFIG_BYTES is the largest kubeconfig read from a Secret (a Secret itself holds at most 1 MiB). */
export const MAX_KUBECONFIG_BYTES = 1024 * 1024;

/**
 * KubeconfigError is a kubeconfig the operator refuses. `field` names the offending field
 * (`users[0].user.exec`); the message names the field and the rule, never a value, so it is safe for a
 * status condition and a log line.
 */
export class KubeconfigError extends Error {
  readonly field: string;
  constructor(field: string, rule: string, options?: ErrorOptions) {
    super(`${field} ${rule}`, options);
    this.name = 'KubeconfigError';
    this.field = field;
  }
}

/** TargetKubeconfigOptions are the operator flags that widen what a target kubeconfig may do. */
export interface TargetKubeconfigOptions {
  /** allowExec lets `users[].user.exec` credential plugins run in the operator (Flux's --insecure-kubeconfig-exec). */
  allowExec?: boolean;
  /** allowInsecureTLS lets `insecure-skip-tls-verify: true` through (Flux's --insecure-kubeconfig-tls). */
  allowInsecureTLS?: boolean;
}

type Obj = Record<string, unknown>;

// Fields that make client-node read a file of the operator's, run a command or talk to someone else.
const REFUSED_CLUSTER: Record<string, string> = {
  'certificate-authority': 'is not allowed: it is a file path on the operator; use certificate-authority-data',
  'proxy-url': 'is not allowed: the operator connects to the API server directly',
};
const REFUSED_USER: Record<string, string> = {
  'client-certificate': 'is not allowed: it is a file path on the operator; use client-certificate-data',
  'client-key': 'is not allowed: it is a file path on the operator; use client-key-data',
  'token-file': 'is not allowed: it is a file path on the operator; use token',
  tokenFile: 'is not allowed: it is a file path on the operator; use token',
  'auth-provider':
    'is not allowed: auth providers run commands and read files on the operator; use token or client certificates',
  exec:
    'is not allowed: credential plugins would run in the operator unless it is started with exec kubeconfigs ' +
    'allowed; use token or client certificates',
};
// Fields that are carried over, or that client-node ignores and are harmless.
const CLUSTER_FIELDS = new Set([
  'server',
  'certificate-authority-data',
  'tls-server-name',
  'insecure-skip-tls-verify',
  'extensions',
  'disable-compression',
]);
const USER_FIELDS = new Set([
  'client-certificate-data',
  'client-key-data',
  'token',
  'username',
  'password',
  'as',
  'exec',
  'extensions',
]);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const own = (o: Obj, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);
// A value that ends up in an HTTP header: one line of visible ASCII, so it cannot add headers or break the request.
const HEADER_SAFE = /^[\x21-\x7e]+$/;
const HEADER_SAFE_SPACES = /^[\x20-\x7e]+$/;

/**
 * parseTargetKubeconfig reads a kubeconfig that someone other than the operator wrote (a target cluster's
 * kubeconfig Secret) and returns a KubeConfig holding only its current context, cluster and user, built from
 * inline data. It refuses, with a KubeconfigError, every field that would make client-node read the
 * operator's files (`*-file`, `certificate-authority`, `client-key`, `tokenFile`…), run a command (`exec`
 * unless `allowExec`, `auth-provider`), go through a proxy (`proxy-url`) or skip TLS verification (unless
 * `allowInsecureTLS`); the raw text never reaches client-node's own loader.
 */
export function parseTargetKubeconfig(text: string, opts: TargetKubeconfigOptions = {}): KubeConfig {
  if (typeof text !== 'string' || text.trim() === '') throw new KubeconfigError('kubeconfig', 'is empty');
  if (Buffer.byteLength(text) > MAX_KUBECONFIG_BYTES)
    throw new KubeconfigError('kubeconfig', `is larger than ${MAX_KUBECONFIG_BYTES} bytes`);
  let doc: unknown;
  try {
    // Core schema (no custom tags), and a bound on aliases: a few hundred bytes of aliases can expand to gigabytes.
    doc = parse(text, { schema: 'core', maxAliasCount: 100, prettyErrors: false, uniqueKeys: false });
  } catch (err) {
    // The parser's message quotes the offending line, which may hold a credential: only its position is kept.
    const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const at = pos ? ` (line ${pos.line}, column ${pos.col})` : '';
    const why = /alias/i.test((err as Error).message) ? 'uses too many YAML aliases' : `is not valid YAML${at}`;
    throw new KubeconfigError('kubeconfig', why);
  }
  if (!isObj(doc)) throw new KubeconfigError('kubeconfig', 'is not a YAML mapping');

  const current = own(doc, 'current-context');
  if (typeof current !== 'string' || current === '') throw new KubeconfigError('current-context', 'is missing');
  const ctx = findNamed(doc, 'contexts', current, 'context', 'current-context');
  const clusterName = own(ctx.value, 'cluster');
  if (typeof clusterName !== 'string' || clusterName === '')
    throw new KubeconfigError(`${ctx.path}.cluster`, 'is missing');
  const cluster = checkCluster(findNamed(doc, 'clusters', clusterName, 'cluster', `${ctx.path}.cluster`), opts);
  const userName = own(ctx.value, 'user');
  if (userName !== undefined && userName !== null && typeof userName !== 'string')
    throw new KubeconfigError(`${ctx.path}.user`, 'is not a string');
  // A context without a user is anonymous; it still gets a user entry, because client-node applies the
  // cluster's CA only when there is one.
  const user = userName
    ? checkUser(findNamed(doc, 'users', userName, 'user', `${ctx.path}.user`), opts)
    : { name: 'anonymous' };

  const kc = new KubeConfig();
  const context: Context = { name: 'target', cluster: cluster.name, user: user.name };
  kc.loadFromOptions({ clusters: [cluster], users: [user], contexts: [context], currentContext: context.name });
  return kc;
}

/** findNamed returns the first entry of a named list (`contexts`, `clusters`, `users`) with that name. */
function findNamed(
  doc: Obj,
  list: string,
  name: string,
  inner: string,
  refField: string,
): { path: string; value: Obj } {
  const entries = own(doc, list);
  if (entries !== undefined && entries !== null && !Array.isArray(entries))
    throw new KubeconfigError(list, 'is not a list');
  const i = (entries ?? []).findIndex((e) => isObj(e) && own(e, 'name') === name);
  if (i < 0) throw new KubeconfigError(refField, `names no entry of ${list}`);
  const value = own((entries as Obj[])[i], inner);
  const path = `${list}[${i}].${inner}`;
  if (!isObj(value)) throw new KubeconfigError(path, 'is missing');
  return { path, value };
}

/** checkCluster allows only an http(s) server and inline TLS data. */
function checkCluster({ path, value }: { path: string; value: Obj }, opts: TargetKubeconfigOptions): Cluster {
  for (const key of Object.keys(value)) {
    if (value[key] === null || value[key] === undefined) continue;
    const field = `${path}.${key}`;
    if (Object.hasOwn(REFUSED_CLUSTER, key)) throw new KubeconfigError(field, REFUSED_CLUSTER[key]);
    if (!CLUSTER_FIELDS.has(key))
      throw new KubeconfigError(
        field,
        'is not supported: only server, certificate-authority-data and tls-server-name are read',
      );
  }
  const server = own(value, 'server');
  if (typeof server !== 'string' || server === '') throw new KubeconfigError(`${path}.server`, 'is missing');
  // A bare `?` or `#` leaves URL's search and hash empty, so they are refused in the text itself.
  if (/[?#\s]/.test(server)) throw new KubeconfigError(`${path}.server`, 'must not have a query, a fragment or spaces');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new KubeconfigError(`${path}.server`, 'is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new KubeconfigError(`${path}.server`, 'must be an https:// or http:// URL');
  if (url.username || url.password) throw new KubeconfigError(`${path}.server`, 'must not carry credentials');
  // Every call goes below the server's path: only the root, or a Rancher-style cluster proxy, may be named.
  if (!/^\/?$|^\/k8s\/clusters\/[A-Za-z0-9-]{1,63}\/?$/.test(url.pathname))
    throw new KubeconfigError(
      `${path}.server`,
      'must be the API server itself (no path other than /k8s/clusters/<id>)',
    );

  const skip = own(value, 'insecure-skip-tls-verify');
  if (skip !== undefined && skip !== null && typeof skip !== 'boolean')
    throw new KubeconfigError(`${path}.insecure-skip-tls-verify`, 'is not a boolean');
  if (skip === true && !opts.allowInsecureTLS) {
    throw new KubeconfigError(
      `${path}.insecure-skip-tls-verify`,
      'is not allowed: the operator verifies the API server; give certificate-authority-data',
    );
  }
  const caData = optionalString(value, path, 'certificate-authority-data');
  if (caData !== undefined)
    checkPem(`${path}.certificate-authority-data`, () => {
      const pem = Buffer.from(caData, 'base64');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('not PEM');
      return new X509Certificate(pem);
    });
  const tlsServerName = optionalString(value, path, 'tls-server-name');
  if (tlsServerName !== undefined && !/^[A-Za-z0-9.:\-[\]]+$/.test(tlsServerName))
    throw new KubeconfigError(`${path}.tls-server-name`, 'is not a host name');
  return { name: 'target', server: server.replace(/\/+$/, ''), caData, tlsServerName, skipTLSVerify: skip === true };
}

/** checkUser allows inline client certificates, a token, basic auth, impersonation and, when allowed, exec. */
function checkUser({ path, value }: { path: string; value: Obj }, opts: TargetKubeconfigOptions): User {
  for (const key of Object.keys(value)) {
    if (value[key] === null || value[key] === undefined) continue;
    const field = `${path}.${key}`;
    if (key === 'exec' && opts.allowExec) continue;
    if (Object.hasOwn(REFUSED_USER, key)) throw new KubeconfigError(field, REFUSED_USER[key]);
    if (!USER_FIELDS.has(key)) {
      throw new KubeconfigError(
        field,
        'is not supported: only client-certificate-data, client-key-data, token, username, password and as are read',
      );
    }
  }
  const certData = optionalString(value, path, 'client-certificate-data');
  const keyData = optionalString(value, path, 'client-key-data');
  if ((certData === undefined) !== (keyData === undefined)) {
    throw new KubeconfigError(
      `${path}.${certData === undefined ? 'client-certificate-data' : 'client-key-data'}`,
      'is missing: a client certificate needs both',
    );
  }
  if (certData !== undefined && keyData !== undefined) {
    checkPem(`${path}.client-certificate-data`, () =>
      tls.createSecureContext({ cert: Buffer.from(certData, 'base64'), key: Buffer.from(keyData, 'base64') }),
    );
  }
  const token = optionalString(value, path, 'token', HEADER_SAFE);
  const username = optionalString(value, path, 'username', HEADER_SAFE_SPACES);
  const password = optionalString(value, path, 'password', HEADER_SAFE_SPACES);
  const impersonateUser = optionalString(value, path, 'as', HEADER_SAFE_SPACES);
  const exec = own(value, 'exec');
  if (exec !== undefined && exec !== null && !isObj(exec))
    throw new KubeconfigError(`${path}.exec`, 'is not a mapping');
  const user: User = {
    name: 'target',
    certData,
    keyData,
    token,
    username,
    password,
    impersonateUser,
    exec: exec ?? undefined,
  };
  return user;
}

/** optionalString reads a string field, refusing other types and, with a pattern, values that do not match it. */
function optionalString(o: Obj, path: string, key: string, pattern?: RegExp): string | undefined {
  const v = own(o, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new KubeconfigError(`${path}.${key}`, 'is not a string');
  if (pattern && !pattern.test(v)) throw new KubeconfigError(`${path}.${key}`, 'must be one line of printable ASCII');
  return v;
}

/** checkPem refuses base64 data that is not a usable PEM certificate or key; OpenSSL's text is not kept. */
function checkPem(field: string, load: () => unknown): void {
  try {
    load();
  } catch {
    throw new KubeconfigError(field, 'is not base64 PEM data that TLS can use');
  }
}
