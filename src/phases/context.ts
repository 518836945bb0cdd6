import type { Logger } from '../logger.ts';
import type { BootstrapOptions } from '../api/validate.ts';
import type { ClusterBootstrap, ClusterBootstrapStatus } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Repositories } from '../git/repository.ts';

/** Context is what every phase of one reconcile sees: the resource, its options, the clients, the status so far. */
export interface Context {
  cb: ClusterBootstrap;
  opts: BootstrapOptions;
  mgmt: KubeClient;
  repos: Repositories;
  log: Logger;
  /** targetClient returns a client for a kubeconfig, or for the operator's own cluster when it is undefined. */
  targetClient: (kubeconfig: string | undefined) => KubeClient;
  /** status collects what the phases found; the reconciler writes it once at the end. */
  status: ClusterBootstrapStatus;
}

/** ownerReference makes a management-cluster object belong to its ClusterBootstrap, so it goes when it goes. */
export function ownerReference(cb: ClusterBootstrap) {
  return { apiVersion: cb.apiVersion, kind: cb.kind, name: cb.metadata.name, uid: cb.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** decodeSecret returns a Secret's data as UTF-8 strings. */
export function decodeSecret(secret: { data?: Record<string, string> } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret?.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}
