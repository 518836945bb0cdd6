/**
 * The clusters of the lab: one etcd serving kube-apiservers with distinct `--etcd-prefix` (management, target, and
 * the extra targets of fleet.ts), and kube-controller-managers with only the namespace, garbage-collector and
 * service-account controllers. Each is started on free ports with startServer (a new port when one is taken).
 */
import fs from 'node:fs';
import path from 'node:path';
import { httpRequest, kubeRequest, pkiCreds } from './kube.ts';
import { kubeconfig } from './pki.ts';
import { startDetached, startServer } from './process.ts';

/** startEtcd starts the lab's etcd (data in `<dir>/etcd`) and waits for its /health; returns its client URL. */
export async function startEtcd(dir: string, bin: string, log: (line: string) => void): Promise<string> {
  const [client] = await startServer(dir, 'etcd', {
    ports: 2,
    start: ([client, peer]) => {
      fs.rmSync(path.join(dir, 'etcd'), { recursive: true, force: true }); // nothing from an attempt on other ports
      startDetached(dir, 'etcd', path.join(bin, 'etcd'), [
        '--name=lab',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${client}`,
        `--advertise-client-urls=http://127.0.0.1:${client}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=lab=http://127.0.0.1:${peer}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync',
        '--log-level=warn',
      ]);
    },
    ready: async ([client]) => {
      const r = await httpRequest(`http://127.0.0.1:${client}/health`, { timeoutMs: 2000 });
      return r.status === 200 && r.json?.health === 'true';
    },
    timeoutMs: 30_000,
    intervalMs: 100,
    log,
  });
  return `http://127.0.0.1:${client}`;
}

/** ClusterSpec says where one lab cluster keeps its files and data. */
export interface ClusterSpec {
  /** Its processes are `<name>-apiserver` and `<name>-controller-manager`. */
  name: string;
  /** Folder made by makePki: ca.crt, serving.{crt,key}, admin.{crt,key}, `<sa>-sa.{key,pub}`. */
  pki: string;
  /** Prefix of its service-account key pair in `pki`. */
  sa: string;
  /** Where its admin kubeconfig (credentials inline) is written. */
  kubeconfig: string;
  /** Cluster, user and context name in the kubeconfig. */
  contextName: string;
  etcdPrefix: string;
  /** Folder for the certificates the processes make themselves (apiserver-certs/, controller-manager-certs/). */
  stateDir: string;
  /** Further kube-apiserver flags. */
  apiserverArgs?: string[];
  /** Environment of the kube-apiserver (default childEnv()). */
  apiserverEnv?: NodeJS.ProcessEnv;
}

/**
 * labCluster is the spec of the lab's management or target cluster (`<dir>/pki`, `/lab-<name>`,
 * `<dir>/<name>.kubeconfig`).
 */
export function labCluster(dir: string, name: 'mgmt' | 'target'): ClusterSpec {
  return {
    name,
    pki: path.join(dir, 'pki'),
    sa: name,
    kubeconfig: path.join(dir, `${name}.kubeconfig`),
    contextName: `lab-${name}`,
    etcdPrefix: `/lab-${name}`,
    stateDir: path.join(dir, name),
  };
}

/**
 * startApiserver starts the kube-apiserver of a cluster (`mgmt` or `target`, or a ClusterSpec) on its etcd prefix,
 * writes its kubeconfig and waits for /readyz; returns its https://127.0.0.1:PORT.
 */
export async function startApiserver(
  dir: string,
  bin: string,
  cluster: 'mgmt' | 'target' | ClusterSpec,
  etcdUrl: string,
  log: (line: string) => void,
): Promise<string> {
  const c = typeof cluster === 'string' ? labCluster(dir, cluster) : cluster;
  const pki = c.pki;
  const [port] = await startServer(dir, `${c.name}-apiserver`, {
    ports: 1,
    start: ([port]) => {
      const server = `https://127.0.0.1:${port}`;
      fs.writeFileSync(c.kubeconfig, kubeconfig(c.contextName, server, pki), { mode: 0o600 });
      startDetached(
        dir,
        `${c.name}-apiserver`,
        path.join(bin, 'kube-apiserver'),
        [
          `--etcd-servers=${etcdUrl}`,
          `--etcd-prefix=${c.etcdPrefix}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          `--secure-port=${port}`,
          `--cert-dir=${path.join(c.stateDir, 'apiserver-certs')}`,
          `--tls-cert-file=${path.join(pki, 'serving.crt')}`,
          `--tls-private-key-file=${path.join(pki, 'serving.key')}`,
          `--client-ca-file=${path.join(pki, 'ca.crt')}`,
          `--service-account-issuer=${server}`,
          `--service-account-key-file=${path.join(pki, `${c.sa}-sa.pub`)}`,
          `--service-account-signing-key-file=${path.join(pki, `${c.sa}-sa.key`)}`,
          '--service-cluster-ip-range=10.0.0.0/24',
          '--authorization-mode=RBAC',
          '--endpoint-reconciler-type=none',
          '--allow-privileged=true',
          '--profiling=false',
          '--v=1',
          ...(c.apiserverArgs ?? []),
        ],
        c.apiserverEnv,
      );
    },
    ready: async ([port]) =>
      (await kubeRequest(pkiCreds(pki, `https://127.0.0.1:${port}`), 'GET', '/readyz')).status === 200,
    timeoutMs: 120_000,
    log,
  });
  return `https://127.0.0.1:${port}`;
}

/**
 * startControllerManager starts the kube-controller-manager of a cluster (name or ClusterSpec) and waits for its
 * /healthz.
 */
export async function startControllerManager(
  dir: string,
  bin: string,
  cluster: 'mgmt' | 'target' | ClusterSpec,
  log: (line: string) => void,
): Promise<void> {
  const c = typeof cluster === 'string' ? labCluster(dir, cluster) : cluster;
  const pki = c.pki;
  await startServer(dir, `${c.name}-controller-manager`, {
    ports: 1,
    start: ([port]) => {
      startDetached(dir, `${c.name}-controller-manager`, path.join(bin, 'kube-controller-manager'), [
        `--kubeconfig=${c.kubeconfig}`,
        '--controllers=namespace,garbagecollector,serviceaccount-token,serviceaccount',
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${path.join(c.stateDir, 'controller-manager-certs')}`,
        `--service-account-private-key-file=${path.join(pki, `${c.sa}-sa.key`)}`,
        `--root-ca-file=${path.join(pki, 'ca.crt')}`,
        '--use-service-account-credentials=false',
        '--profiling=false',
        '--v=1',
      ]);
    },
    ready: async ([port]) =>
      (await httpRequest(`https://127.0.0.1:${port}/healthz`, { insecure: true, timeoutMs: 2000 })).status === 200,
    timeoutMs: 60_000,
    log,
  });
}
