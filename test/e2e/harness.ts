/**
 * The end-to-end harness: the operator as a real child process (`node src/main.ts`) against the lab's real
 * API servers and ssh git server. One lab serves every e2e file (test/setup.ts starts it before the suite
 * and stops it after); each file works in namespaces of its own and runs an operator that watches only them.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLabEnv, authorizeKey, createRepo, PROJECT_ROOT, type LabEnv } from '../lab/lab.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { freePorts } from '../lab/lab.ts';
import {
  API_VERSION,
  KIND,
  RECONCILE_REQUESTED_AT,
  type ClusterBootstrap,
  type ClusterBootstrapSpec,
} from '../../src/api/types.ts';
import yaml from 'js-yaml';
import { after, before } from 'node:test';
import { createServer, type Server, type Socket } from 'node:net';
import { NODE_ENV, NODE_FLAGS } from '../node-runtime.ts';

/** E2E_LAB_DIR is the lab of the e2e suite, one per checkout. */
export const E2E_LAB_DIR =
  process.env.E2E_LAB_DIR ??
  join(tmpdir(), `fbo-e2e-${createHash('sha256').update(PROJECT_ROOT).digest('hex').slice(0, 8)}`);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** lab reads the env of the running e2e lab. */
export function lab(): LabEnv {
  return readLabEnv(E2E_LAB_DIR);
}

/** mgmt and target are admin clients of the lab's two clusters. */
export const mgmt = () => KubeClient.fromTrustedKubeconfig(readFileSync(lab().LAB_MGMT_KUBECONFIG, 'utf8'));
export const target = () => KubeClient.fromTrustedKubeconfig(readFileSync(lab().LAB_TARGET_KUBECONFIG, 'utf8'));

/** waitFor polls until `fn` returns a truthy value, or fails with the last value seen. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<Exclude<T, false | undefined>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Exclude<T, false | undefined>;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last: ` +
          `${last instanceof Error ? last.message : JSON.stringify(last)?.slice(0, 500)}`,
      );
    await sleep(250);
  }
}

/** installCRD applies crds/ to the management cluster and waits until the API serves ClusterBootstraps. */
export async function installCRD(client = mgmt()): Promise<void> {
  for (const file of ['fluxbootstrap.dev_clusterbootstraps.yaml', 'fluxbootstrap.dev_clusterbootstrapsets.yaml'])
    await client.apply(yaml.load(readFileSync(join(PROJECT_ROOT, 'crds', file), 'utf8')) as any, {
      fieldManager: 'e2e',
    });
  await waitFor('the ClusterBootstrap CRD to be served', async () => {
    client.forget();
    return client.list(API_VERSION, KIND, 'default').then(() => true);
  });
}

/** namespace creates a fresh namespace with a unique suffix and returns its name. */
export async function namespace(prefix: string, client = mgmt()): Promise<string> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 7)}`;
  await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  return name;
}

/** secret creates a Secret from string data. */
export async function secret(ns: string, name: string, data: Record<string, string>, client = mgmt()): Promise<void> {
  await client.apply(
    { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data },
    { fieldManager: 'e2e' },
  );
}

/** pushSecret holds the lab's writer key: what a platform team gives the operator. */
export async function pushSecret(ns: string, name = 'git-push'): Promise<string> {
  await secret(ns, name, { identity: readFileSync(lab().LAB_GIT_WRITER_KEY, 'utf8') });
  return name;
}

/**
 * targetKubeconfigSecret stores the target cluster's kubeconfig as Cluster API does (`<cluster>-kubeconfig`, key
 * `value`).
 */
export async function targetKubeconfigSecret(
  ns: string,
  cluster: string,
  kubeconfig = readFileSync(lab().LAB_TARGET_KUBECONFIG, 'utf8'),
): Promise<string> {
  const name = `${cluster}-kubeconfig`;
  await secret(ns, name, { value: kubeconfig });
  return name;
}

/** listener counts the connections a hostile endpoint receives; it accepts and never answers. */
export function listener(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => (n++, sockets.add(s), s.on('close', () => sockets.delete(s))));
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as any).port, connections: () => n }),
    ),
  );
}

/** repo makes a fresh empty repository on the lab's git server. */
export async function repo(prefix: string): Promise<string> {
  return createRepo(`${prefix}-${Math.random().toString(36).slice(2, 7)}`, { dir: E2E_LAB_DIR });
}

/** authorize registers a public key read-only on the lab's git server, as a user registers a deploy key. */
export function authorize(publicKey: string): void {
  authorizeKey(publicKey, { access: 'ro', dir: E2E_LAB_DIR });
}

/** applyCB creates or updates a ClusterBootstrap. */
export async function applyCB(
  ns: string,
  name: string,
  spec: Partial<ClusterBootstrapSpec> & { git: ClusterBootstrapSpec['git'] },
  client = mgmt(),
) {
  return client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: ns }, spec } as any, {
    fieldManager: 'e2e',
  });
}

/** getCB reads a ClusterBootstrap. */
export async function getCB(ns: string, name: string, client = mgmt()): Promise<ClusterBootstrap> {
  const cb = await client.get<ClusterBootstrap>(API_VERSION, KIND, ns, name);
  if (!cb) throw new Error(`ClusterBootstrap ${ns}/${name} not found`);
  return cb;
}

/** condition returns one condition of a ClusterBootstrap. */
export function condition(cb: ClusterBootstrap, type: string) {
  return cb.status?.conditions?.find((c) => c.type === type);
}

/** waitCondition waits until a condition has the status (and reason, if given). */
export async function waitCondition(
  ns: string,
  name: string,
  type: string,
  status: string,
  reason?: string,
  timeoutMs = 90_000,
): Promise<ClusterBootstrap> {
  return waitFor(
    `${ns}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`,
    async () => {
      const cb = await getCB(ns, name);
      const c = condition(cb, type);
      return c?.status === status && (!reason || c.reason === reason) ? cb : (false as const);
    },
    timeoutMs,
  );
}

/** reconcileNow asks for a reconcile as `flux reconcile` does, and waits until it was handled. */
export async function reconcileNow(ns: string, name: string): Promise<void> {
  const at = `${Date.now()}`;
  await mgmt().mergePatch(API_VERSION, KIND, ns, name, {
    metadata: { annotations: { [RECONCILE_REQUESTED_AT]: at } },
  });
  await waitFor(
    'the reconcile request to be handled',
    async () => (await getCB(ns, name)).status?.lastHandledReconcileAt === at,
  );
}

/** authorizeWhenPublished waits for the public key in status and registers it on the lab's git server. */
export async function authorizeWhenPublished(ns: string, name: string): Promise<string> {
  const cb = await waitFor(`${ns}/${name} to publish its public key`, async () => {
    const cb = await getCB(ns, name);
    return cb.status?.identity?.publicKey ? cb : false;
  });
  authorize(cb.status!.identity!.publicKey);
  return cb.status!.identity!.publicKey;
}

/** git runs git against the lab's git server with the writer key. */
export function git(args: string[], cwd?: string): string {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GIT_SSH_COMMAND: lab().LAB_GIT_SSH_COMMAND,
  };
  return execFileSync('git', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** clone clones a lab repository into a temporary folder. */
export function clone(url: string): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'e2e-clone-')), 'repo');
  git(['clone', '-q', url, dir]);
  return dir;
}

export interface RunningOperator {
  proc: ChildProcess;
  logs: string[];
  metricsUrl: string;
  healthUrl: string;
  /** stop sends SIGTERM and waits for the exit code. */
  stop(): Promise<number | null>;
  /** kill sends SIGKILL: a crash. */
  kill(): Promise<void>;
}

/**
 * startOperator runs `node src/main.ts` (or the given script: the bench runs the build that ships, `dist/main.js`)
 * against the management cluster, watching the given namespaces.
 * Its pino lines are kept in `logs` (and echoed when E2E_VERBOSE is set).
 */
export async function startOperator(opts: {
  namespaces: string[];
  /** targetless are the namespaces allowed to omit spec.target (default: all watched ones). */
  targetless?: string[];
  kubeconfig?: string;
  leaderElect?: boolean;
  leaseNamespace?: string;
  workDir?: string;
  args?: string[];
  /** nodeArgs go to node before the script (V8 flags, say). */
  nodeArgs?: string[];
  script?: string;
}): Promise<RunningOperator> {
  const [metricsPort, healthPort] = await freePorts(2);
  const args = [
    ...NODE_FLAGS,
    ...(opts.nodeArgs ?? []),
    opts.script ?? join(PROJECT_ROOT, 'src', 'main.ts'),
    `--watch-namespaces=${opts.namespaces.join(',')}`,
    `--metrics-addr=127.0.0.1:${metricsPort}`,
    `--health-addr=127.0.0.1:${healthPort}`,
    `--leader-elect=${opts.leaderElect ?? false}`,
    `--leader-election-namespace=${opts.leaseNamespace ?? opts.namespaces[0]}`,
    `--work-dir=${opts.workDir ?? mkdtempSync(join(tmpdir(), 'fbo-work-'))}`,
    '--resync-period=1m',
    '--log-level=debug',
    // The suite's own namespaces may bootstrap the lab's management cluster; the security tests pass their own list.
    `--allow-targetless-namespaces=${(opts.targetless ?? opts.namespaces).join(',')}`,
    ...(opts.args ?? []),
  ];
  const env: NodeJS.ProcessEnv = {
    ...NODE_ENV,
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    KUBECONFIG: opts.kubeconfig ?? lab().LAB_MGMT_KUBECONFIG,
  };
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
      logs.push(line);
      if (process.env.E2E_VERBOSE) process.stderr.write(`[operator ${proc.pid}] ${line}\n`);
    }
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const healthUrl = `http://127.0.0.1:${healthPort}`;
  await waitFor('the operator to answer /healthz', async () => (await fetch(`${healthUrl}/healthz`)).ok, 30_000);
  return {
    proc,
    logs,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    healthUrl,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * operatorSuite registers what most e2e files start with: the CRD, a fresh namespace holding the push
 * Secret, one operator watching that namespace (stopped after the file), then the file's own setup. Read
 * `ns` and `operator` in tests.
 */
export function operatorSuite(
  prefix: string,
  setup?: (ns: string) => Promise<void>,
  opts: { targetless?: string[] } = {},
): { ns: string; operator: RunningOperator } {
  const suite = {} as { ns: string; operator: RunningOperator };
  // One hook: node:test runs a file's top-level before hooks concurrently, so the file's own setup goes here.
  before(async () => {
    await installCRD();
    suite.ns = await namespace(prefix);
    await pushSecret(suite.ns);
    suite.operator = await startOperator({ namespaces: [suite.ns], targetless: opts.targetless });
    await setup?.(suite.ns);
  });
  after(async () => {
    await suite.operator?.stop();
  });
  return suite;
}

/** kubectl runs the lab's kubectl against the management cluster. */
export function kubectl(args: string[], kubeconfig = lab().LAB_MGMT_KUBECONFIG): string {
  return execFileSync(join(lab().LAB_BIN, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * serviceAccountKubeconfig writes a kubeconfig for the management cluster that carries nothing but a fresh token
 * of a ServiceAccount (`kubectl create token`), as a pod of it would run with, and returns its path.
 */
export function serviceAccountKubeconfig(
  sa: string,
  namespace: string,
  dir = mkdtempSync(join(tmpdir(), 'e2e-sa-kubeconfig-')),
): string {
  const token = kubectl(['create', 'token', sa, '-n', namespace, '--duration=1h']).trim();
  const path = join(dir, 'kubeconfig');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'mgmt', cluster: { server: lab().LAB_MGMT_SERVER, 'certificate-authority': lab().LAB_CA_FILE } },
    ],
    users: [{ name: sa, user: { token } }],
    contexts: [{ name: sa, context: { cluster: 'mgmt', user: sa } }],
    'current-context': sa,
  };
  writeFileSync(path, yaml.dump(config), { mode: 0o600 });
  return path;
}

/** writeFile is a small helper for tests that write into clones. */
export { writeFileSync as writeFile };
