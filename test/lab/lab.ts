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
 * - on demand (`labUp({ gitea: true })`), Gitea with its built-in SSH server, HTTP API and HTTPS — gitea.ts.
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
import { startApiserver, startControllerManager, startEtcd } from './cluster.ts';
import { labDir, logger, readLabEnvOrNull, writeLabEnv, type LabEnv, type LabOptions } from './env.ts';
import { FLUX_PROCESSES } from './flux.ts';
import { GITEA_PROCESSES, giteaRunning, startGitea, type GiteaEnv } from './gitea.ts';
import { ensureGitUser, gitSshCommand, GIT_SHELL, GIT_USER, SSHD, startGitServer, type GitServer } from './git.ts';
import { kubeRequest, labCreds, sleep } from './kube.ts';
import { makePki } from './pki.ts';
import { alive, run, running, stopProcesses, strays } from './process.ts';

export { BINARIES, ensureBinaries, ensureHelm, type BinaryName } from './bin.ts';
export { DEFAULT_LAB_DIR, PROJECT_ROOT, readLabEnv, type LabEnv, type LabOptions } from './env.ts';
export { fluxRunning, fluxStart, fluxStop, type FluxInfo } from './flux.ts';
export { authorizeKey, createRepo, gitSshCommand, GIT_USER } from './git.ts';
export { createGiteaRepo, giteaRequest, GITEA_OWNER, GITEA_PROCESSES } from './gitea.ts';
export { freePorts } from './ports.ts';
export { labPids } from './process.ts';

const CORE = ['etcd', 'mgmt-apiserver', 'target-apiserver', 'mgmt-controller-manager', 'target-controller-manager', 'sshd'];

/** A lab's state dir (possibly half-made): has pids/, env or sshd config. */
function looksLikeLab(dir: string): boolean {
  return ['pids', 'env', 'ssh'].some((e) => fs.existsSync(path.join(dir, e)));
}

async function healthyLab(dir: string): Promise<LabEnv | null> {
  const env = readLabEnvOrNull(dir);
  if (!env) return null;
  if (CORE.some((n) => running(dir, n) === undefined)) return null;
  try {
    for (const server of [env.LAB_MGMT_SERVER, env.LAB_TARGET_SERVER]) {
      const r = await kubeRequest(labCreds(dir, server), 'GET', '/readyz');
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
 * lab that is up without it, only Gitea) and adds the LAB_GITEA_* entries to the env.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabEnv> {
  const dir = labDir(opts);
  const log = logger(opts);
  const existing = await healthyLab(dir);
  if (existing && (!opts.gitea || giteaRunning(dir, existing))) {
    log(`lab already up in ${dir}`);
    return existing;
  }
  if (existing) {
    log(`lab already up in ${dir}; starting Gitea`);
    try {
      const gitea = await startGitea(dir, await ensureGiteaBinary(log), existing.LAB_GIT_WRITER_KEY, log);
      const env = { ...existing, ...gitea };
      writeLabEnv(dir, env);
      return env;
    } catch (err) {
      await stopProcesses(dir, GITEA_PROCESSES).catch(() => {});
      throw err;
    }
  }
  if (looksLikeLab(dir)) {
    log(`cleaning a stale lab in ${dir}`);
    await labDown({ dir, log });
  }
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (it creates the fluxlab user and runs sshd)');
  for (const [file, pkg] of [[SSHD, 'openssh-server'], [GIT_SHELL, 'git'], ['/usr/bin/ssh-keygen', 'openssh-client'], ['/usr/bin/openssl', 'openssl']]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: apt-get install -y ${pkg}`);
  }
  const t0 = Date.now();
  for (const sub of ['pids', 'logs', 'pki', 'ssh', 'git', 'keys', 'flux', 'mgmt', 'target']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  // the git user reads authorized_keys and the repos under this dir: it must be able to traverse every parent
  fs.chmodSync(dir, 0o755);
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    if ((fs.statSync(p).mode & 0o001) === 0) throw new Error(`${p} is not traversable by the ${GIT_USER} user (needs o+x)`);
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
    const [bin, giteaBin] = await Promise.all([
      ensureBinaries({ dir, log }),
      opts.gitea ? ensureGiteaBinary(log) : undefined,
      makePki(path.join(dir, 'pki')),
      ensureGitUser(log),
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lab-host', '-f', path.join(sshDir, 'ssh_host_ed25519_key')]),
      run('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'lab-host', '-f', path.join(sshDir, 'ssh_host_ecdsa_key')]),
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
    const [mgmtServer, targetServer] = await Promise.all(['mgmt', 'target'].map((c) => startApiserver(dir, bin, c, etcdUrl, log)));
    log(`API servers ready: mgmt ${mgmtServer}, target ${targetServer}`);
    await Promise.all(['mgmt', 'target'].map((c) => startControllerManager(dir, bin, c, log)));
    log('controller managers healthy');
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
    };
    writeLabEnv(dir, env);
    log(`lab up in ${((Date.now() - t0) / 1000).toFixed(1)} s; env in ${path.join(dir, 'env')}`);
    return env;
  } catch (err) {
    log(`lab up failed, stopping what started (logs stay in ${path.join(dir, 'logs')})`);
    await gitServer?.catch(() => {}); // settled, so that it starts nothing after the stop
    await giteaServer?.catch(() => {});
    await stopProcesses(dir, [...FLUX_PROCESSES, ...GITEA_PROCESSES, ...CORE]).catch(() => {});
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
  if (!looksLikeLab(dir) && fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not a lab dir (no pids/ or env): not removing it`);
  const t0 = Date.now();
  let recorded: string[] = [];
  try {
    recorded = fs.readdirSync(path.join(dir, 'pids'));
  } catch {
    /* none */
  }
  const known = [...FLUX_PROCESSES, ...GITEA_PROCESSES, ...CORE];
  const extra = recorded.filter((n) => !known.includes(n));
  // clients first, etcd last
  await stopProcesses(dir, [...FLUX_PROCESSES, ...GITEA_PROCESSES, ...extra]);
  await stopProcesses(dir, CORE.filter((n) => n !== 'etcd'));
  await stopProcesses(dir, ['etcd']);
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
