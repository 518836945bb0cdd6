import type { Logger } from '../logger.ts';
import type { BootstrapOptions } from '../api/validate.ts';
import type { ClusterBootstrap } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Repositories } from '../git/repository.ts';

/** Context is what every phase of one reconcile sees: the resource as read, its options and the clients. */
export interface Context {
  /** cb is the resource as read at the start of the reconcile; its status is what the last reconcile wrote. */
  cb: ClusterBootstrap;
  opts: BootstrapOptions;
  mgmt: KubeClient;
  repos: Repositories;
  log: Logger;
  /** targetClient returns a client for a kubeconfig, or for the operator's own cluster when it is undefined. */
  targetClient: (kubeconfig: string | undefined) => KubeClient;
  /** resyncMs is how often a Ready resource is looked at again; Flux's components are applied at least this often. */
  resyncMs: number;
  /** record writes an Event on the ClusterBootstrap; a failure to write it is logged, never thrown. */
  record: (type: 'Normal' | 'Warning', reason: string, message: string) => Promise<void>;
}
