/**
 * Where a lab lives and what it tells its users: the lab dir, and the shell-sourceable `<dir>/env` file.
 */
import fs from 'node:fs';
import path from 'node:path';

/** PROJECT_ROOT is the project root: two levels up from test/lab. */
export const PROJECT_ROOT = path.resolve(import.meta.dirname, '..', '..');
/** DEFAULT_LAB_DIR is where the lab lives unless told otherwise: `<project root>/.lab`. */
export const DEFAULT_LAB_DIR = path.join(PROJECT_ROOT, '.lab');

/** LabOptions are the options shared by the lab functions. */
export interface LabOptions {
  /** The lab's state folder; default `<project root>/.lab`. Must be an absolute-able path without spaces. */
  dir?: string;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

/** LabEnv is the contents of `.lab/env`. */
export interface LabEnv {
  /** The lab's state folder (absolute). */
  LAB_DIR: string;
  /**
   * Folder with links to all six binaries (etcd, kube-apiserver, kube-controller-manager, kubectl, source-controller,
   * kustomize-controller).
   */
  LAB_BIN: string;
  /** Folder with every component's log. */
  LAB_LOGS: string;
  /** Admin kubeconfig of the management cluster. */
  LAB_MGMT_KUBECONFIG: string;
  /** Admin kubeconfig of the target cluster. */
  LAB_TARGET_KUBECONFIG: string;
  /** https://127.0.0.1:PORT of the management API server. */
  LAB_MGMT_SERVER: string;
  /** https://127.0.0.1:PORT of the target API server. */
  LAB_TARGET_SERVER: string;
  /** CA that signed both API servers' serving certificates. */
  LAB_CA_FILE: string;
  /** http://127.0.0.1:PORT of etcd. */
  LAB_ETCD_URL: string;
  /** ssh:// URL of the (initially empty) gitops repo, e.g. ssh://fluxlab@127.0.0.1:PORT/gitops.git. */
  LAB_GIT_URL: string;
  /** ssh://fluxlab@127.0.0.1:PORT — append `/<name>.git` for repos made with createRepo. */
  LAB_GIT_BASE_URL: string;
  LAB_GIT_HOST: string;
  LAB_GIT_PORT: string;
  LAB_GIT_USER: string;
  /** Folder holding the bare repos. */
  LAB_GIT_ROOT: string;
  /** Private key with read-write access to every lab repo. */
  LAB_GIT_WRITER_KEY: string;
  LAB_GIT_WRITER_PUBKEY: string;
  /** known_hosts with the lab sshd's host keys (`[127.0.0.1]:PORT type key`). */
  LAB_GIT_KNOWN_HOSTS: string;
  /** A GIT_SSH_COMMAND that uses the writer key and checks the host key strictly. */
  LAB_GIT_SSH_COMMAND: string;
  // Gitea (only in labs started with `gitea: true`; gitea.ts)
  /** http://127.0.0.1:PORT of Gitea's web server. */
  LAB_GITEA_URL?: string;
  /** http://127.0.0.1:PORT/api/v1 */
  LAB_GITEA_API?: string;
  /** An API token of the admin user, scope all (`Authorization: token …`, or as the password of basic auth). */
  LAB_GITEA_TOKEN?: string;
  /** The admin user: owner of `fleet`; its ssh key is the writer key. */
  LAB_GITEA_OWNER?: string;
  /** The admin user's password. */
  LAB_GITEA_PASSWORD?: string;
  /** ssh:// URL of the (initially empty, private) repo `fleet` on Gitea's built-in SSH server. */
  LAB_GITEA_REPO_URL?: string;
  /** https:// clone URL of `fleet` (certificate signed by LAB_CA_FILE). */
  LAB_GITEA_HTTPS_URL?: string;
  /** known_hosts file with Gitea's SSH host keys (`[127.0.0.1]:PORT type key`, from ssh-keyscan). */
  LAB_GITEA_KNOWN_HOSTS?: string;
  // the fleet (only in labs started with `targets: N`; fleet.ts)
  /** Admin kubeconfigs (credentials inline) of the extra targets 1…N, space-separated, in order. */
  LAB_TARGET_KUBECONFIGS?: string;
  /** https://127.0.0.1:PORT of the extra targets 1…N, space-separated, in the same order. */
  LAB_TARGET_SERVERS?: string;
  // Cluster API (only in labs started with `capi: true`; capi.ts)
  /** Folder with Cluster API's CRDs (from its Go module); the Cluster CRD is installed in the management cluster. */
  LAB_CAPI_CRDS?: string;
}

const ENV_KEYS: (keyof LabEnv)[] = [
  'LAB_DIR',
  'LAB_BIN',
  'LAB_LOGS',
  'LAB_MGMT_KUBECONFIG',
  'LAB_TARGET_KUBECONFIG',
  'LAB_MGMT_SERVER',
  'LAB_TARGET_SERVER',
  'LAB_CA_FILE',
  'LAB_ETCD_URL',
  'LAB_GIT_URL',
  'LAB_GIT_BASE_URL',
  'LAB_GIT_HOST',
  'LAB_GIT_PORT',
  'LAB_GIT_USER',
  'LAB_GIT_ROOT',
  'LAB_GIT_WRITER_KEY',
  'LAB_GIT_WRITER_PUBKEY',
  'LAB_GIT_KNOWN_HOSTS',
  'LAB_GIT_SSH_COMMAND',
  'LAB_GITEA_URL',
  'LAB_GITEA_API',
  'LAB_GITEA_TOKEN',
  'LAB_GITEA_OWNER',
  'LAB_GITEA_PASSWORD',
  'LAB_GITEA_REPO_URL',
  'LAB_GITEA_HTTPS_URL',
  'LAB_GITEA_KNOWN_HOSTS',
  'LAB_TARGET_KUBECONFIGS',
  'LAB_TARGET_SERVERS',
  'LAB_CAPI_CRDS',
];

/** labDir is the absolute lab dir of `opts.dir` (default `<project root>/.lab`); throws on spaces or quotes. */
export function labDir(opts?: { dir?: string }): string {
  const dir = path.resolve(opts?.dir ?? DEFAULT_LAB_DIR);
  if (!/^[A-Za-z0-9._\/+@-]+$/.test(dir)) throw new Error(`lab dir must be a plain path (no spaces or quotes): ${dir}`);
  return dir;
}

/** logger is `opts.log`, or a function that drops the line. */
export function logger(opts?: LabOptions): (line: string) => void {
  return opts?.log ?? (() => {});
}

function quoteEnv(v: string): string {
  return /^[A-Za-z0-9_.\/:@+,=-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

/** writeLabEnv writes `<dir>/env` (atomically, shell-quoted). */
export function writeLabEnv(dir: string, env: LabEnv): void {
  const lines = ['# flux lab environment (test/lab/lab.ts); shell-sourceable'];
  for (const k of ENV_KEYS) if (env[k] !== undefined) lines.push(`${k}=${quoteEnv(env[k])}`);
  const tmp = path.join(dir, 'env.tmp');
  fs.writeFileSync(tmp, lines.join('\n') + '\n');
  fs.renameSync(tmp, path.join(dir, 'env'));
}

/** readLabEnv reads `<dir>/env` (default dir `<project root>/.lab`); throws when the lab is not up. */
export function readLabEnv(dir?: string): LabEnv {
  const d = labDir({ dir });
  const file = path.join(d, 'env');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new Error(`no lab environment at ${file}: run \`npm run lab:up\` (or labUp()) first`);
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2];
    if (v.startsWith("'")) v = v.slice(1, -1).replace(/'\\''/g, "'");
    env[m[1]] = v;
  }
  return env as unknown as LabEnv;
}

/** readLabEnvOrNull is readLabEnv, or null when the lab has no env file. */
export function readLabEnvOrNull(dir: string): LabEnv | null {
  try {
    return readLabEnv(dir);
  } catch {
    return null;
  }
}
