/**
 * The lab: real components as local processes on 127.0.0.1, no Docker, no network.
 *
 * - one etcd serving two kube-apiservers with distinct `--etcd-prefix`: the *management* and the *target* cluster
 *   (secure serving, certificates made at run time with openssl, RBAC, admin client certificate in
 *   `.lab/mgmt.kubeconfig` / `.lab/target.kubeconfig`, TokenRequest enabled) — cluster.ts, pki.ts;
 * - one kube-controller-manager per cluster with only the namespace, garbage-collector and service-account
 *   controllers, so deleted namespaces finalize, owner references are collected and ServiceAccounts get tokens;
 * - an OpenSSH sshd (own config, host keys and port) serving bare repos under `.lab/git/` through the git-only
 *   system user `fluxlab` — git.ts;
 * - on demand (`fluxStart`), Flux's source-controller and kustomize-controller out-of-cluster against the target,
 *   and a small stand-in kubelet (kubelet.ts) that reports their Deployments available — flux.ts;
 * - on demand (`labUp({ gitea: true })`), Gitea with its built-in SSH server, HTTP API and HTTPS — gitea.ts;
 * - on demand (`labUp({ targets: N })`), N extra target kube-apiservers on the same etcd, each with its own pki and
 *   inline admin kubeconfig (LAB_TARGET_KUBECONFIGS, LAB_TARGET_SERVERS) — fleet.ts; `fluxStart({ targets })` runs
 *   Flux for any of them;
 * - on demand (`labUp({ capi: true })`), Cluster API's Cluster CRD from its Go module in the management cluster —
 *   capi.ts.
 *
 * Everything runs detached (it outlives the node process that started it); PIDs are in `.lab/pids/`, logs in
 * `.lab/logs/` (process.ts), the environment in `.lab/env` (env.ts, shell-sourceable). Ports come from
 * ports.ts: reserved machine-wide and outside the kernel's ephemeral range, and a process that finds its port
 * taken anyway is started again on another, so labs in different dirs run side by side. Needs root (creates the
 * `fluxlab` user, runs sshd).
 *
 * This module starts and stops the whole lab (`labUp`, `labDown`) and re-exports the lab's public surface.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ensureBinaries } from './bin.ts';
import { ensureClusterApiCRDs, installClusterApiCRDs } from './capi.ts';
import { startApiserver, startControllerManager, startEtcd } from './cluster.ts';
import { labDir, logger, readLabEnvOrNull, writeLabEnv, type LabEnv, type LabOptions } from './env.ts';
import {
  hasControllerManager,
  labTargets,
  makeTargetPki,
  startTargets,
  targetCluster,
  targetCreds,
  targetEnv,
  targetProcesses,
  targetsRunning,
  type LabTarget,
} from './fleet.ts';
import { FLUX_PROCESSES, fluxProcesses, isFluxProcess } from './flux.ts';
import { GITEA_PROCESSES, giteaRunning, startGitea, type GiteaEnv } from './gitea.ts';
import { ensureGitUser, gitSshCommand, GIT_SHELL, GIT_USER, SSHD, startGitServer, type GitServer } from './git.ts';
import { kubeRequest, labCreds, sleep } from './kube.ts';
import { makePki } from './pki.ts';
import { alive, run, running, stopProcesses, strays } from './process.ts';

export { BINARIES, ensureBinaries, ensureHelm, type BinaryName } from './bin.ts';
export { DEFAULT_LAB_DIR, PROJECT_ROOT, readLabEnv, type LabEnv, type LabOptions } from './env.ts';
export { fluxRunning, fluxStart, fluxStop, type FluxInfo, type FluxStartOptions } from './flux.ts';
export { labTarget, labTargets, targetCreds, type LabTarget } from './fleet.ts';
export { CLUSTER_API_VERSION, CLUSTER_CRD_FILE, ensureClusterApiCRDs, installClusterApiCRDs } from './capi.ts';
export { authorizeKey, createRepo, gitSshCommand, GIT_USER } from './git.ts';
export {
  approvePull,
  closePull,
  createGiteaRepo,
  giteaRequest,
  giteaReviewer,
  listPulls,
  mergePull,
  protectBranch,
  GITEA_OWNER,
  GITEA_PROCESSES,
  GITEA_REVIEWER,
  type LabPull,
  type MergeStyle,
} from './gitea.ts';
export { freePorts } from './ports.ts';
export { labPids, rssKiB } from './process.ts';

const CORE = [
  'etcd',
  'mgmt-apiserver',
  'target-apiserver',
  'mgmt-controller-manager',
  'target-controller-manager',
  'sshd',
];

/** A lab's state dir (possibly half-made): has pids/, env or sshd config. */
function looksLikeLab(dir: string): boolean {
  return ['pids', 'env', 'ssh'].some((e) => fs.existsSync(path.join(dir, e)));
}

async function healthyLab(dir: string): Promise<LabEnv | null> {
  const env = readLabEnvOrNull(dir);
  if (!env) return null;
  if (CORE.some((n) => running(dir, n) === undefined)) return null;
  try {
    const targets = labTargets(env);
    if (!targetsRunning(dir, targets.length)) return null;
    const creds = [
      labCreds(dir, env.LAB_MGMT_SERVER),
      labCreds(dir, env.LAB_TARGET_SERVER),
      ...targets.map((t) => targetCreds(env, t.index)),
    ];
    for (const c of creds) {
      const r = await kubeRequest(c, 'GET', '/readyz');
      if (r.status !== 200) return null;
    }
  } catch {
    return null;
  }
  return env;
}

/** LabUpOptions are labUp's options. */
export interface LabUpOptions extends LabOptions {
  /** Also start Gitea (gitea.ts; built on first use, which takes minutes); on a lab already up, add it. */
  gitea?: boolean;
  /**
   * Extra target clusters 1…N (fleet.ts) beside the lab's target; on a lab already up with fewer, the missing ones
   * are added (never removed).
   */
  targets?: number;
  /** A kube-controller-manager for each extra target too (namespace deletion, garbage collection); default none. */
  targetControllers?: boolean;
  /**
   * Install Cluster API's Cluster CRD (capi.ts, from its Go module) in the management cluster; on a lab already up too.
   */
  capi?: boolean;
}

async function ensureGiteaBinary(log: (line: string) => void): Promise<string> {
  const mod = await import('./build.ts');
  return mod.ensureGitea({ log });
}

/**
 * labUp starts the lab in `opts.dir` (default `<project root>/.lab`): builds missing binaries, makes certificates
 * and keys, starts etcd, both API servers, both controller managers and sshd detached, waits until each answers
 * (etcd /health, API server /readyz, controller manager /healthz, `git ls-remote` over ssh), then writes
 * `<dir>/env`. Returns the env. On a lab that is already up this is a no-op returning its env; a broken or
 * half-started lab in that dir is stopped and started afresh. With `gitea: true` it also starts Gitea (gitea.ts; on a
 * lab that is up without it, only Gitea) and adds the LAB_GITEA_* entries to the env. With `targets: N` it starts N
 * extra target API servers (fleet.ts) in parallel with the main two (on a lab that is up with fewer, the missing
 * ones) and adds LAB_TARGET_KUBECONFIGS / LAB_TARGET_SERVERS; with `capi: true` it applies Cluster API's Cluster
 * CRD to the management cluster (capi.ts) and adds LAB_CAPI_CRDS. A lab counts as up only when every recorded
 * process of its extra targets runs too.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabEnv> {
  const dir = labDir(opts);
  const log = logger(opts);
  const want = opts.targets ?? 0;
  if (!Number.isInteger(want) || want < 0) throw new Error(`targets must be a whole number ≥ 0: ${opts.targets}`);
  const existing = await healthyLab(dir);
  if (existing) return completeLab(dir, existing, opts, log);
  if (looksLikeLab(dir)) {
    log(`cleaning a stale lab in ${dir}`);
    await labDown({ dir, log });
  }
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (it creates the fluxlab user and runs sshd)');
  for (const [file, pkg] of [
    [SSHD, 'openssh-server'],
    [GIT_SHELL, 'git'],
    ['/usr/bin/ssh-keygen', 'openssh-client'],
    ['/usr/bin/openssl', 'openssl'],
  ]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: apt-get install -y ${pkg}`);
  }
  const t0 = Date.now();
  for (const sub of ['pids', 'logs', 'pki', 'ssh', 'git', 'keys', 'flux', 'mgmt', 'target'])
    fs.mkdirSync(path.join(dir, sub), { recursive: true });
  // the git user reads authorized_keys and the repos under this dir: it must be able to traverse every parent
  fs.chmodSync(dir, 0o755);
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    if ((fs.statSync(p).mode & 0o001) === 0)
      throw new Error(`${p} is not traversable by the ${GIT_USER} user (needs o+x)`);
    if (p === path.dirname(p)) break;
  }
  fs.chmodSync(path.join(dir, 'pki'), 0o700);
  fs.chmodSync(path.join(dir, 'keys'), 0o700);

  let gitServer: Promise<GitServer> | undefined;
  let giteaServer: Promise<GiteaEnv> | undefined;
  try {
    // binaries, keys and certificates (independent, in parallel)
    log('binaries: ensuring (a cold build takes long)');
    const sshDir = path.join(dir, 'ssh');
    const writer = path.join(dir, 'keys', 'writer');
    const extra = Array.from({ length: want }, (_, k) => k + 1);
    const [bin, giteaBin, capiCrds] = await Promise.all([
      ensureBinaries({ dir, log }),
      opts.gitea ? ensureGiteaBinary(log) : undefined,
      opts.capi ? ensureClusterApiCRDs({ log }) : undefined,
      makePki(path.join(dir, 'pki')),
      ...extra.map((i) => makeTargetPki(dir, i)),
      ensureGitUser(log),
      run('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        '',
        '-C',
        'lab-host',
        '-f',
        path.join(sshDir, 'ssh_host_ed25519_key'),
      ]),
      run('ssh-keygen', [
        '-q',
        '-t',
        'ecdsa',
        '-b',
        '256',
        '-N',
        '',
        '-C',
        'lab-host',
        '-f',
        path.join(sshDir, 'ssh_host_ecdsa_key'),
      ]),
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-writer', '-f', writer]),
    ]);
    log(`binaries ready in ${bin} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    // the git server is independent of the clusters: it comes up while they do
    gitServer = startGitServer(dir, writer, log);
    gitServer.catch(() => {}); // awaited below; this keeps an early failure from counting as unhandled meanwhile
    if (giteaBin) {
      giteaServer = startGitea(dir, giteaBin, writer, log); // independent too
      giteaServer.catch(() => {});
    }
    const etcdUrl = await startEtcd(dir, bin, log);
    log(`etcd up at ${etcdUrl}`);
    // the extra targets start with the main clusters, all at once
    const fleet = startTargets(dir, bin, etcdUrl, extra, { controllers: opts.targetControllers, log });
    fleet.catch(() => {}); // awaited below
    const [mgmtServer, targetServer] = await Promise.all(
      (['mgmt', 'target'] as const).map((c) => startApiserver(dir, bin, c, etcdUrl, log)),
    );
    log(`API servers ready: mgmt ${mgmtServer}, target ${targetServer}`);
    await Promise.all((['mgmt', 'target'] as const).map((c) => startControllerManager(dir, bin, c, log)));
    log('controller managers healthy');
    if (capiCrds) await installClusterApiCRDs(labCreds(dir, mgmtServer), { log });
    const targets = await fleet;
    const git = await gitServer;
    log(`git server up: ${git.url}`);
    const gitea = await giteaServer;

    const env: LabEnv = {
      LAB_DIR: dir,
      LAB_BIN: bin,
      LAB_LOGS: path.join(dir, 'logs'),
      LAB_MGMT_KUBECONFIG: path.join(dir, 'mgmt.kubeconfig'),
      LAB_TARGET_KUBECONFIG: path.join(dir, 'target.kubeconfig'),
      LAB_MGMT_SERVER: mgmtServer,
      LAB_TARGET_SERVER: targetServer,
      LAB_CA_FILE: path.join(dir, 'pki', 'ca.crt'),
      LAB_ETCD_URL: etcdUrl,
      LAB_GIT_URL: git.url,
      LAB_GIT_BASE_URL: `ssh://${GIT_USER}@127.0.0.1:${git.port}`,
      LAB_GIT_HOST: '127.0.0.1',
      LAB_GIT_PORT: String(git.port),
      LAB_GIT_USER: GIT_USER,
      LAB_GIT_ROOT: path.join(dir, 'git'),
      LAB_GIT_WRITER_KEY: writer,
      LAB_GIT_WRITER_PUBKEY: `${writer}.pub`,
      LAB_GIT_KNOWN_HOSTS: git.knownHosts,
      LAB_GIT_SSH_COMMAND: gitSshCommand(writer, git.knownHosts),
      ...gitea,
      ...targetEnv(targets),
      ...(capiCrds ? { LAB_CAPI_CRDS: capiCrds } : {}),
    };
    writeLabEnv(dir, env);
    log(`lab up in ${((Date.now() - t0) / 1000).toFixed(1)} s; env in ${path.join(dir, 'env')}`);
    return env;
  } catch (err) {
    log(`lab up failed, stopping what started (logs stay in ${path.join(dir, 'logs')})`);
    await gitServer?.catch(() => {}); // settled, so that it starts nothing after the stop
    await giteaServer?.catch(() => {});
    await stopAll(dir).catch(() => {});
    throw err;
  }
}

/**
 * labDown stops every process of the lab in `opts.dir` by its recorded PID (SIGTERM, SIGKILL after a few seconds),
 * waits until they are gone, and removes the dir. Stray processes whose command line still names the lab dir are
 * stopped too. A lab that is not there is fine.
 */
export async function labDown(opts: LabOptions = {}): Promise<void> {
  const dir = labDir(opts);
  const log = logger(opts);
  if (!fs.existsSync(dir)) {
    log(`no lab in ${dir}`);
    return;
  }
  if (!looksLikeLab(dir) && fs.readdirSync(dir).length > 0)
    throw new Error(`${dir} is not a lab dir (no pids/ or env): not removing it`);
  const t0 = Date.now();
  let recorded: string[] = [];
  try {
    recorded = fs.readdirSync(path.join(dir, 'pids'));
  } catch {
    /* none */
  }
  await stopAll(dir, recorded);
  const left = strays(dir);
  if (left.length) {
    log(`stopping stray processes of this lab: ${left.join(' ')}`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const deadline = Date.now() + 5000;
    while (left.some(alive) && Date.now() < deadline) await sleep(50);
  }
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  log(`lab down in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/**
 * Stops every process of the lab (those named in `recorded` too): Flux's of every target and Gitea first, then
 * controller managers, then API servers and sshd, etcd last.
 */
async function stopAll(dir: string, recorded: string[] = []): Promise<void> {
  let names = recorded;
  if (!names.length) {
    try {
      names = fs.readdirSync(path.join(dir, 'pids'));
    } catch {
      /* none */
    }
  }
  const all = [...new Set([...FLUX_PROCESSES, ...GITEA_PROCESSES, ...CORE, ...names])];
  const clients = all.filter((n) => isFluxProcess(n) || GITEA_PROCESSES.includes(n));
  const managers = all.filter((n) => !clients.includes(n) && n.endsWith('-controller-manager'));
  const rest = all.filter((n) => !clients.includes(n) && !managers.includes(n) && n !== 'etcd');
  await stopProcesses(dir, clients);
  await stopProcesses(dir, managers);
  await stopProcesses(dir, rest);
  await stopProcesses(dir, ['etcd']);
}

/**
 * completeLab brings a lab that is up to what `opts` asks for: Gitea, extra targets up to `opts.targets` (and their
 * controller managers with `targetControllers`), Cluster API's CRD; returns its env, written anew when it changed.
 * What it starts is stopped again when it fails.
 */
async function completeLab(
  dir: string,
  existing: LabEnv,
  opts: LabUpOptions,
  log: (line: string) => void,
): Promise<LabEnv> {
  let env = existing;
  const have = labTargets(env);
  const want = opts.targets ?? 0;
  const missingControllers = opts.targetControllers ? have.filter((t) => !hasControllerManager(dir, t.index)) : [];
  const needGitea = opts.gitea && !giteaRunning(dir, env);
  const needCapi = opts.capi && !env.LAB_CAPI_CRDS;
  if (!needGitea && want <= have.length && !missingControllers.length && !needCapi) {
    log(`lab already up in ${dir}`);
    return env;
  }
  if (needGitea) {
    log(`lab already up in ${dir}; starting Gitea`);
    try {
      const gitea = await startGitea(dir, await ensureGiteaBinary(log), env.LAB_GIT_WRITER_KEY, log);
      env = { ...env, ...gitea };
      writeLabEnv(dir, env);
    } catch (err) {
      await stopProcesses(dir, GITEA_PROCESSES).catch(() => {});
      throw err;
    }
  }
  if (want > have.length || missingControllers.length) {
    const added = Array.from({ length: Math.max(0, want - have.length) }, (_, k) => have.length + k + 1);
    log(
      `lab already up in ${dir}; adding ` +
        `${added.length ? `targets ${added.join(', ')}` : ''}${missingControllers.length ? ` controller managers of targets ${missingControllers.map((t) => t.index).join(', ')}` : ''}`,
    );
    try {
      await Promise.all(added.map((i) => makeTargetPki(dir, i)));
      const [started] = await Promise.all([
        startTargets(dir, env.LAB_BIN, env.LAB_ETCD_URL, added, { controllers: opts.targetControllers, log }),
        ...missingControllers.map((t) => startControllerManager(dir, env.LAB_BIN, targetCluster(dir, t.index), log)),
      ]);
      env = { ...env, ...targetEnv([...have, ...(started as LabTarget[])]) };
      writeLabEnv(dir, env);
    } catch (err) {
      await stopProcesses(dir, [
        ...added.flatMap((i) => [...fluxProcesses(i), ...targetProcesses(i)]),
        ...missingControllers.map((t) => targetProcesses(t.index)[0]),
      ]).catch(() => {});
      throw err;
    }
  }
  if (needCapi) {
    await installClusterApiCRDs(labCreds(dir, env.LAB_MGMT_SERVER), { log });
    env = { ...env, LAB_CAPI_CRDS: await ensureClusterApiCRDs() };
    writeLabEnv(dir, env);
  }
  return env;
}
