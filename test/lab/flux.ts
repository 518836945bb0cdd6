/**
 * Flux on demand: source-controller and kustomize-controller out-of-cluster against the lab's target cluster (or
 * any of the extra targets of fleet.ts, one pair per target), and the stand-in kubelet (kubelet.ts) that reports
 * their Deployments available.
 *
 * Their metrics and health servers bind port 0 and the health port is read back from /proc; only
 * source-controller's artifact server needs its port up front (kustomize-controller must know it), so it starts
 * with startServer (a new port when the one picked is taken).
 */
import fs from 'node:fs';
import path from 'node:path';
import { labDir, logger, readLabEnv, type LabEnv, type LabOptions } from './env.ts';
import { labTarget, targetCreds, targetName } from './fleet.ts';
import { httpRequest, kubeRequest } from './kube.ts';
import { listeningPorts } from './ports.ts';
import { childEnv, running, startDetached, startServer, stopProcesses, waitFor } from './process.ts';

/** FLUX_PROCESSES are the lab processes fluxStart starts for the lab's target (target 0). */
export const FLUX_PROCESSES = ['source-controller', 'kustomize-controller', 'kubelet'];
/** A Flux process of any target: `source-controller`, …, or `target-<i>-source-controller`, … */
const FLUX_PROCESS = /^(target-\d+-)?(source-controller|kustomize-controller|kubelet)$/;

/** fluxProcesses are the names of the Flux processes of target i (0: FLUX_PROCESSES; i: `target-<i>-…`). */
export function fluxProcesses(i = 0): string[] {
  return i === 0 ? FLUX_PROCESSES : FLUX_PROCESSES.map((n) => `${targetName(i)}-${n}`);
}

/** isFluxProcess tells whether the lab process `name` is one of some target's Flux processes. */
export function isFluxProcess(name: string): boolean {
  return FLUX_PROCESS.test(name);
}

/** Flux's state of target i: `<dir>/flux` for target 0, `<dir>/flux/target-<i>` for the others. */
function fluxDir(dir: string, i: number): string {
  return i === 0 ? path.join(dir, 'flux') : path.join(dir, 'flux', targetName(i));
}

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

/** FluxInfo is what `fluxStart` started for one target. */
export interface FluxInfo {
  /** The target: 0 the lab's target cluster, 1…N an extra one (fleet.ts). */
  target: number;
  /** host:port where source-controller serves artifacts. */
  storageAddr: string;
  sourceControllerHealth: string;
  kustomizeControllerHealth: string;
}

/** FluxStartOptions are fluxStart's options. */
export interface FluxStartOptions extends LabOptions {
  /** How long to wait for the Flux CRDs in a target; default 5 min. */
  timeoutMs?: number;
  /** The targets to run Flux for (0 the lab's target, 1…N the extra ones); without it, target 0 alone. */
  targets?: number[];
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
 * fluxStart starts Flux's source-controller and kustomize-controller out-of-cluster against a target cluster
 * (`RUNTIME_NAMESPACE=flux-system`, artifacts served on 127.0.0.1), plus the stand-in kubelet that reports their
 * Deployments in flux-system available: for the lab's target, or with `targets: [i, …]` one such trio per target
 * (all at once; 0 is the lab's target, 1…N the extra ones of fleet.ts), each with its own ports and state
 * (`<dir>/flux/target-<i>/`). Waits (up to `timeoutMs`, default 5 min) for the Flux CRDs to be established in each
 * target first, then for the controllers' health endpoints. A target whose Flux runs already is left as it is.
 * Without `targets` it returns the FluxInfo of the lab's target, with `targets` one per target in that order. When
 * one target fails, the Flux processes of every target asked for are stopped.
 */
export function fluxStart(opts?: FluxStartOptions & { targets?: undefined }): Promise<FluxInfo>;
export function fluxStart(opts: FluxStartOptions & { targets: number[] }): Promise<FluxInfo[]>;
export async function fluxStart(opts: FluxStartOptions = {}): Promise<FluxInfo | FluxInfo[]> {
  const dir = labDir(opts);
  const env = readLabEnv(dir);
  const targets = opts.targets ?? [0];
  if (new Set(targets).size !== targets.length)
    throw new Error(`fluxStart: a target given twice: ${targets.join(', ')}`);
  for (const i of targets) labTarget(env, i); // throws on a target the lab does not have
  const results = await Promise.allSettled(targets.map((i) => fluxStartOne(dir, env, i, opts)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopProcesses(dir, targets.flatMap(fluxProcesses)).catch(() => {});
    throw failed.reason;
  }
  const infos = results.map((r) => (r as PromiseFulfilledResult<FluxInfo>).value);
  return opts.targets ? infos : infos[0];
}

async function fluxStartOne(dir: string, env: LabEnv, i: number, opts: FluxStartOptions): Promise<FluxInfo> {
  const base = logger(opts);
  const log = (line: string) => base(i === 0 ? line : `(target ${i}) ${line}`);
  const [sourceName, kustomizeName, kubeletName] = fluxProcesses(i);
  const state = fluxDir(dir, i);
  const infoFile = path.join(state, 'ports.json');
  if (fluxProcesses(i).every((n) => running(dir, n) !== undefined) && fs.existsSync(infoFile)) {
    return { target: i, ...JSON.parse(fs.readFileSync(infoFile, 'utf8')) } as FluxInfo;
  }
  await stopProcesses(dir, fluxProcesses(i));
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const target = labTarget(env, i);
  const creds = targetCreds(env, i);
  log('flux: waiting for the Flux CRDs in the target cluster');
  await waitFor(
    `Flux CRDs established in target cluster ${i} (${target.server})`,
    async () => {
      const r = await kubeRequest(creds, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
      if (r.status !== 200) return false;
      const established = new Set<string>(
        (r.json.items ?? [])
          .filter((crd: any) =>
            (crd.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True'),
          )
          .map((crd: any) => crd.metadata.name),
      );
      return FLUX_CRDS.every((n) => established.has(n));
    },
    { timeoutMs, dir, intervalMs: 1000 },
  );

  const storagePath = path.join(state, 'storage');
  fs.mkdirSync(storagePath, { recursive: true });
  const fluxEnv = childEnv({ KUBECONFIG: target.kubeconfig, RUNTIME_NAMESPACE: 'flux-system' });
  const common = [
    '--metrics-addr=127.0.0.1:0',
    '--health-addr=127.0.0.1:0',
    '--events-addr=',
    '--enable-leader-election=false',
    '--watch-all-namespaces=true',
    '--log-level=info',
  ];
  try {
    const [storage] = await startServer(dir, sourceName, {
      ports: 1,
      start: ([storage]) => {
        startDetached(
          dir,
          sourceName,
          path.join(env.LAB_BIN, 'source-controller'),
          [
            `--storage-path=${storagePath}`,
            `--storage-addr=127.0.0.1:${storage}`,
            `--storage-adv-addr=127.0.0.1:${storage}`,
            ...common,
          ],
          fluxEnv,
        );
      },
      ready: async ([storage]) => (await readyHealth(dir, sourceName, [storage])) !== undefined,
      timeoutMs: 60_000,
      log,
    });
    const storageAddr = `127.0.0.1:${storage}`;
    startDetached(dir, kustomizeName, path.join(env.LAB_BIN, 'kustomize-controller'), common, {
      ...fluxEnv,
      SOURCE_CONTROLLER_LOCALHOST: storageAddr,
    });
    startDetached(dir, kubeletName, process.execPath, [
      path.join(import.meta.dirname, 'kubelet.ts'),
      '--dir',
      dir,
      '--target',
      String(i),
    ]);
    await waitFor(`${kustomizeName} /readyz`, async () => (await readyHealth(dir, kustomizeName)) !== undefined, {
      timeoutMs: 60_000,
      dir,
      proc: kustomizeName,
    });
    const info: FluxInfo = {
      target: i,
      storageAddr,
      sourceControllerHealth: (await readyHealth(dir, sourceName, [storage]))!,
      kustomizeControllerHealth: (await readyHealth(dir, kustomizeName))!,
    };
    fs.writeFileSync(infoFile, JSON.stringify(info, null, 2) + '\n');
    log(`flux: source-controller (artifacts at http://${storageAddr}) and kustomize-controller running`);
    return info;
  } catch (err) {
    await stopProcesses(dir, fluxProcesses(i)).catch(() => {});
    throw err;
  }
}

/** The lab processes recorded in `<dir>/pids` (running or not). */
function recorded(dir: string): string[] {
  try {
    return fs.readdirSync(path.join(dir, 'pids'));
  } catch {
    return [];
  }
}

/**
 * fluxStop stops the Flux controllers and stand-in kubelets of every target (the Flux objects in the targets stay),
 * or with `targets` those of these targets only.
 */
export async function fluxStop(opts: LabOptions & { targets?: number[] } = {}): Promise<void> {
  const dir = labDir(opts);
  const names = opts.targets
    ? opts.targets.flatMap(fluxProcesses)
    : [...new Set([...FLUX_PROCESSES, ...recorded(dir).filter(isFluxProcess)])];
  await stopProcesses(dir, names);
  let targets = opts.targets;
  if (!targets) {
    let subs: string[] = [];
    try {
      subs = fs.readdirSync(path.join(dir, 'flux'));
    } catch {
      /* no flux state */
    }
    targets = [
      0,
      ...subs
        .map((f) => /^target-(\d+)$/.exec(f))
        .filter((m) => m !== null)
        .map((m) => Number(m[1])),
    ];
  }
  for (const i of targets) fs.rmSync(path.join(fluxDir(dir, i), 'ports.json'), { force: true });
  logger(opts)(`flux: stopped${opts.targets ? ` (targets ${opts.targets.join(', ')})` : ''}`);
}

/**
 * fluxRunning tells whether the Flux controllers of target `target` (default 0, the lab's target) of the lab in `dir`
 * run.
 */
export function fluxRunning(dir?: string, target = 0): boolean {
  const d = labDir({ dir });
  return fluxProcesses(target).every((n) => running(d, n) !== undefined);
}
