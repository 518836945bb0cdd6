/**
 * The fleet: extra target clusters beside the lab's target (`labUp({ targets: N })`, `lab:up --targets N`,
 * `LAB_TARGETS=N`). Target i (1…N) is a kube-apiserver on the lab's etcd under `--etcd-prefix=/lab-target-<i>`,
 * with a pki of its own (`<dir>/targets/<i>/pki`: its own CA, serving and admin certificates, service-account key
 * pair), so no credential of one target works in another, and an admin kubeconfig with everything inline
 * (`<dir>/target-<i>.kubeconfig`). Index 0 names the lab's own target cluster (`LAB_TARGET_KUBECONFIG`).
 *
 * No kube-controller-manager by default: Flux's objects are applied server-side and need none; without one a
 * deleted namespace stays Terminating, owner references are not collected and namespaces get no `default`
 * ServiceAccount. `targetControllers: true` (`--target-controllers`) gives every extra target one (about 80 MiB
 * more each).
 *
 * The extra API servers run lighter than the main two: no watch cache (lists and watches are served from etcd) and
 * no API priority and fairness (LIGHT_APISERVER_ARGS; halves their idle CPU), and GOGC=50 (about 20% less RSS).
 */
import fs from 'node:fs';
import path from 'node:path';
import { startApiserver, startControllerManager, type ClusterSpec } from './cluster.ts';
import type { LabEnv } from './env.ts';
import { labCreds, pkiCreds, type KubeCreds } from './kube.ts';
import { makePki } from './pki.ts';
import { childEnv, running } from './process.ts';

/** LabTarget is one target cluster of the lab: 0 is the lab's target, 1…N the extra ones. */
export interface LabTarget {
  index: number;
  /** Admin kubeconfig, credentials inline. */
  kubeconfig: string;
  /** https://127.0.0.1:PORT */
  server: string;
}

/** Flags of the extra targets' API servers, to keep them small (see the module comment). */
export const LIGHT_APISERVER_ARGS = ['--watch-cache=false', '--enable-priority-and-fairness=false'];
/** Environment of the extra targets' API servers beside the usual: a GC that runs at half the heap growth. */
export const LIGHT_APISERVER_ENV = { GOGC: '50' };

/**
 * targetName is the name of extra target i: its processes are `target-<i>-apiserver`, `target-<i>-source-controller`, …
 */
export function targetName(i: number): string {
  return `target-${i}`;
}

/** targetCluster is the ClusterSpec of extra target i (i ≥ 1) of the lab in `dir`. */
export function targetCluster(dir: string, i: number): ClusterSpec {
  if (!Number.isInteger(i) || i < 1) throw new Error(`extra targets are numbered from 1: ${i}`);
  const root = path.join(dir, 'targets', String(i));
  return {
    name: targetName(i),
    pki: path.join(root, 'pki'),
    sa: 'target',
    kubeconfig: path.join(dir, `${targetName(i)}.kubeconfig`),
    contextName: `lab-${targetName(i)}`,
    etcdPrefix: `/lab-${targetName(i)}`,
    stateDir: root,
    apiserverArgs: LIGHT_APISERVER_ARGS,
    apiserverEnv: childEnv(LIGHT_APISERVER_ENV),
  };
}

function words(v: string | undefined): string[] {
  return (v ?? '').split(/\s+/).filter(Boolean);
}

/** labTargets are the lab's extra targets 1…N (LAB_TARGET_KUBECONFIGS and LAB_TARGET_SERVERS); empty without. */
export function labTargets(env: LabEnv): LabTarget[] {
  const kubeconfigs = words(env.LAB_TARGET_KUBECONFIGS);
  const servers = words(env.LAB_TARGET_SERVERS);
  if (kubeconfigs.length !== servers.length)
    throw new Error(`LAB_TARGET_KUBECONFIGS and LAB_TARGET_SERVERS differ in length`);
  return kubeconfigs.map((kubeconfig, k) => ({ index: k + 1, kubeconfig, server: servers[k] }));
}

/** labTarget is target i of the lab: 0 the lab's target cluster, 1…N an extra one. */
export function labTarget(env: LabEnv, i: number): LabTarget {
  if (i === 0) return { index: 0, kubeconfig: env.LAB_TARGET_KUBECONFIG, server: env.LAB_TARGET_SERVER };
  const t = labTargets(env)[i - 1];
  if (!Number.isInteger(i) || !t)
    throw new Error(`the lab in ${env.LAB_DIR} has no target ${i} (it has 0…${labTargets(env).length})`);
  return t;
}

/** targetCreds are the admin credentials of target i (0 = the lab's target). */
export function targetCreds(env: LabEnv, i: number): KubeCreds {
  const t = labTarget(env, i);
  return i === 0 ? labCreds(env.LAB_DIR, t.server) : pkiCreds(targetCluster(env.LAB_DIR, i).pki, t.server);
}

/** targetProcesses are the names of the cluster processes of extra target i (not its Flux processes). */
export function targetProcesses(i: number): string[] {
  return [`${targetName(i)}-controller-manager`, `${targetName(i)}-apiserver`];
}

/** Whether extra target i of the lab in `dir` has a controller manager (recorded, running or not). */
export function hasControllerManager(dir: string, i: number): boolean {
  return fs.existsSync(path.join(dir, 'pids', `${targetName(i)}-controller-manager`));
}

/** targetsRunning tells whether every recorded process of the extra targets 1…n is running. */
export function targetsRunning(dir: string, n: number): boolean {
  for (let i = 1; i <= n; i++) {
    if (running(dir, `${targetName(i)}-apiserver`) === undefined) return false;
    if (hasControllerManager(dir, i) && running(dir, `${targetName(i)}-controller-manager`) === undefined) return false;
  }
  return true;
}

/** makeTargetPki makes extra target i's own pki (its CA is `flux-lab-target-<i>-ca`). */
export async function makeTargetPki(dir: string, i: number): Promise<void> {
  const c = targetCluster(dir, i);
  fs.rmSync(c.stateDir, { recursive: true, force: true });
  fs.mkdirSync(c.stateDir, { recursive: true });
  await makePki(c.pki, { ca: `flux-lab-${targetName(i)}-ca`, sa: [c.sa] });
}

/**
 * startTargets starts the extra targets `indexes` in parallel, their pki made already (makeTargetPki), and with
 * `controllers` a controller manager for each; returns them once every API server answers /readyz (and every
 * controller manager /healthz). The caller stops them on failure.
 */
export async function startTargets(
  dir: string,
  bin: string,
  etcdUrl: string,
  indexes: number[],
  opts: { controllers?: boolean; log: (line: string) => void },
): Promise<LabTarget[]> {
  const started = await Promise.all(
    indexes.map(async (i) => {
      const c = targetCluster(dir, i);
      const server = await startApiserver(dir, bin, c, etcdUrl, opts.log);
      if (opts.controllers) await startControllerManager(dir, bin, c, opts.log);
      return { index: i, kubeconfig: c.kubeconfig, server };
    }),
  );
  if (indexes.length) opts.log(`extra targets ready: ${started.map((t) => `${t.index} ${t.server}`).join(', ')}`);
  return started;
}

/** targetEnv are the LAB_TARGET_KUBECONFIGS / LAB_TARGET_SERVERS entries for `targets` (ordered 1…N), or none. */
export function targetEnv(targets: LabTarget[]): Pick<LabEnv, 'LAB_TARGET_KUBECONFIGS' | 'LAB_TARGET_SERVERS'> {
  const sorted = [...targets].sort((a, b) => a.index - b.index);
  sorted.forEach((t, k) => {
    if (t.index !== k + 1) throw new Error(`extra targets must be 1…N without gaps: ${sorted.map((s) => s.index)}`);
  });
  if (!sorted.length) return {};
  return {
    LAB_TARGET_KUBECONFIGS: sorted.map((t) => t.kubeconfig).join(' '),
    LAB_TARGET_SERVERS: sorted.map((t) => t.server).join(' '),
  };
}
