/**
 * Flux on demand: source-controller and kustomize-controller out-of-cluster against the lab's target cluster, and
 * the stand-in kubelet (kubelet.ts) that reports their Deployments available.
 *
 * Their metrics and health servers bind port 0 and the health port is read back from /proc; only
 * source-controller's artifact server needs its port up front (kustomize-controller must know it), so it starts
 * with startServer (a new port when the one picked is taken).
 */
import fs from 'node:fs';
import path from 'node:path';
import { labDir, logger, readLabEnv, type LabOptions } from './env.ts';
import { httpRequest, kubeRequest, labCreds } from './kube.ts';
import { listeningPorts } from './ports.ts';
import { childEnv, running, startDetached, startServer, stopProcesses, waitFor } from './process.ts';

/** FLUX_PROCESSES are the lab processes fluxStart starts. */
export const FLUX_PROCESSES = ['source-controller', 'kustomize-controller', 'kubelet'];
/** Flux CRDs that must be established before the controllers can start. */
const FLUX_CRDS = [
  'buckets.source.toolkit.fluxcd.io',
  'externalartifacts.source.toolkit.fluxcd.io',
  'gitrepositories.source.toolkit.fluxcd.io',
  'helmcharts.source.toolkit.fluxcd.io',
  'helmrepositories.source.toolkit.fluxcd.io',
  'ocirepositories.source.toolkit.fluxcd.io',
  'kustomizations.kustomize.toolkit.fluxcd.io',
];

/** FluxInfo is what `fluxStart` started. */
export interface FluxInfo {
  /** host:port where source-controller serves artifacts. */
  storageAddr: string;
  sourceControllerHealth: string;
  kustomizeControllerHealth: string;
}

/**
 * The health endpoint (http://127.0.0.1:PORT) of controller `name`, which serves it on a port of its own choosing:
 * the one among its listening ports, other than `except`, that answers /readyz with 200. Undefined until then.
 */
async function readyHealth(dir: string, name: string, except: number[] = []): Promise<string | undefined> {
  const pid = running(dir, name);
  if (pid === undefined) return undefined;
  for (const port of listeningPorts(pid).filter((p) => !except.includes(p))) {
    const url = `http://127.0.0.1:${port}`;
    const r = await httpRequest(`${url}/readyz`, { timeoutMs: 2000 }).catch(() => undefined);
    if (r?.status === 200) return url;
  }
  return undefined;
}

/**
 * fluxStart starts Flux's source-controller and kustomize-controller out-of-cluster against the target cluster
 * (`RUNTIME_NAMESPACE=flux-system`, artifacts served on 127.0.0.1), plus the stand-in kubelet that reports their
 * Deployments in flux-system available. Waits (up to `timeoutMs`, default 5 min) for the Flux CRDs to be
 * established in the target first, then for both controllers' health endpoints. No-op when already running.
 */
export async function fluxStart(opts: LabOptions & { timeoutMs?: number } = {}): Promise<FluxInfo> {
  const dir = labDir(opts);
  const log = logger(opts);
  const env = readLabEnv(dir);
  const infoFile = path.join(dir, 'flux', 'ports.json');
  if (FLUX_PROCESSES.every((n) => running(dir, n) !== undefined) && fs.existsSync(infoFile)) {
    return JSON.parse(fs.readFileSync(infoFile, 'utf8')) as FluxInfo;
  }
  await stopProcesses(dir, FLUX_PROCESSES);
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const target = labCreds(dir, env.LAB_TARGET_SERVER);
  log('flux: waiting for the Flux CRDs in the target cluster');
  await waitFor('Flux CRDs established in the target cluster', async () => {
    const r = await kubeRequest(target, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
    if (r.status !== 200) return false;
    const established = new Set<string>(
      (r.json.items ?? [])
        .filter((crd: any) => (crd.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True'))
        .map((crd: any) => crd.metadata.name),
    );
    return FLUX_CRDS.every((n) => established.has(n));
  }, { timeoutMs, dir, intervalMs: 1000 });

  const storagePath = path.join(dir, 'flux', 'storage');
  fs.mkdirSync(storagePath, { recursive: true });
  const fluxEnv = childEnv({ KUBECONFIG: env.LAB_TARGET_KUBECONFIG, RUNTIME_NAMESPACE: 'flux-system' });
  const common = ['--metrics-addr=127.0.0.1:0', '--health-addr=127.0.0.1:0', '--events-addr=', '--enable-leader-election=false', '--watch-all-namespaces=true', '--log-level=info'];
  try {
    const [storage] = await startServer(dir, 'source-controller', {
      ports: 1,
      start: ([storage]) => {
        startDetached(dir, 'source-controller', path.join(env.LAB_BIN, 'source-controller'), [
          `--storage-path=${storagePath}`,
          `--storage-addr=127.0.0.1:${storage}`,
          `--storage-adv-addr=127.0.0.1:${storage}`,
          ...common,
        ], fluxEnv);
      },
      ready: async ([storage]) => (await readyHealth(dir, 'source-controller', [storage])) !== undefined,
      timeoutMs: 60_000,
      log,
    });
    const storageAddr = `127.0.0.1:${storage}`;
    startDetached(dir, 'kustomize-controller', path.join(env.LAB_BIN, 'kustomize-controller'), common, { ...fluxEnv, SOURCE_CONTROLLER_LOCALHOST: storageAddr });
    startDetached(dir, 'kubelet', process.execPath, [path.join(import.meta.dirname, 'kubelet.ts'), '--dir', dir]);
    await waitFor('kustomize-controller /readyz', async () => (await readyHealth(dir, 'kustomize-controller')) !== undefined,
      { timeoutMs: 60_000, dir, proc: 'kustomize-controller' });
    const info: FluxInfo = {
      storageAddr,
      sourceControllerHealth: (await readyHealth(dir, 'source-controller', [storage]))!,
      kustomizeControllerHealth: (await readyHealth(dir, 'kustomize-controller'))!,
    };
    fs.writeFileSync(infoFile, JSON.stringify(info, null, 2) + '\n');
    log(`flux: source-controller (artifacts at http://${storageAddr}) and kustomize-controller running`);
    return info;
  } catch (err) {
    await stopProcesses(dir, FLUX_PROCESSES).catch(() => {});
    throw err;
  }
}

/** fluxStop stops the Flux controllers and the stand-in kubelet (the Flux objects in the target stay). */
export async function fluxStop(opts: LabOptions = {}): Promise<void> {
  const dir = labDir(opts);
  await stopProcesses(dir, FLUX_PROCESSES);
  fs.rmSync(path.join(dir, 'flux', 'ports.json'), { force: true });
  logger(opts)('flux: stopped');
}

/** fluxRunning tells whether the Flux controllers of the lab in `dir` are running. */
export function fluxRunning(dir?: string): boolean {
  const d = labDir({ dir });
  return FLUX_PROCESSES.every((n) => running(d, n) !== undefined);
}
