/**
 * The two clusters of the lab: one etcd serving two kube-apiservers with distinct `--etcd-prefix` (management
 * and target), and one kube-controller-manager per cluster with only the namespace, garbage-collector and
 * service-account controllers. Each is started on free ports with startServer (a new port when one is taken).
 */
import fs from 'node:fs';
import path from 'node:path';
import { httpRequest, kubeRequest, labCreds } from './kube.ts';
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

/**
 * startApiserver starts the kube-apiserver of cluster `name` (mgmt or target) on etcd prefix `/lab-<name>`, writes
 * `<dir>/<name>.kubeconfig` and waits for /readyz; returns its https://127.0.0.1:PORT.
 */
export async function startApiserver(dir: string, bin: string, name: string, etcdUrl: string, log: (line: string) => void): Promise<string> {
  const pki = path.join(dir, 'pki');
  const [port] = await startServer(dir, `${name}-apiserver`, {
    ports: 1,
    start: ([port]) => {
      const server = `https://127.0.0.1:${port}`;
      fs.writeFileSync(path.join(dir, `${name}.kubeconfig`), kubeconfig(`lab-${name}`, server, pki), { mode: 0o600 });
      startDetached(dir, `${name}-apiserver`, path.join(bin, 'kube-apiserver'), [
        `--etcd-servers=${etcdUrl}`,
        `--etcd-prefix=/lab-${name}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${path.join(dir, name, 'apiserver-certs')}`,
        `--tls-cert-file=${path.join(pki, 'serving.crt')}`,
        `--tls-private-key-file=${path.join(pki, 'serving.key')}`,
        `--client-ca-file=${path.join(pki, 'ca.crt')}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${path.join(pki, `${name}-sa.pub`)}`,
        `--service-account-signing-key-file=${path.join(pki, `${name}-sa.key`)}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--endpoint-reconciler-type=none',
        '--allow-privileged=true',
        '--profiling=false',
        '--v=1',
      ]);
    },
    ready: async ([port]) => (await kubeRequest(labCreds(dir, `https://127.0.0.1:${port}`), 'GET', '/readyz')).status === 200,
    timeoutMs: 120_000,
    log,
  });
  return `https://127.0.0.1:${port}`;
}

/** startControllerManager starts the kube-controller-manager of cluster `name` and waits for its /healthz. */
export async function startControllerManager(dir: string, bin: string, name: string, log: (line: string) => void): Promise<void> {
  const pki = path.join(dir, 'pki');
  await startServer(dir, `${name}-controller-manager`, {
    ports: 1,
    start: ([port]) => {
      startDetached(dir, `${name}-controller-manager`, path.join(bin, 'kube-controller-manager'), [
        `--kubeconfig=${path.join(dir, `${name}.kubeconfig`)}`,
        '--controllers=namespace,garbagecollector,serviceaccount-token,serviceaccount',
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${path.join(dir, name, 'controller-manager-certs')}`,
        `--service-account-private-key-file=${path.join(pki, `${name}-sa.key`)}`,
        `--root-ca-file=${path.join(pki, 'ca.crt')}`,
        '--use-service-account-credentials=false',
        '--profiling=false',
        '--v=1',
      ]);
    },
    ready: async ([port]) => (await httpRequest(`https://127.0.0.1:${port}/healthz`, { insecure: true, timeoutMs: 2000 })).status === 200,
    timeoutMs: 60_000,
    log,
  });
}
