import dotI, { ResourceEventType, type ResourceEvent } from '@dot-i/k8s-operator';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, RECONCILE_REQUESTED_AT, VERSION, type ClusterBootstrap } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { frameworkLogger, type Logger } from '../logger.ts';
import type { WorkQueue } from './queue.ts';

// dot-i is CommonJS with `exports.default`: under Node's ESM loader the default import is module.exports.
const Operator = dotI.default;

/**
 * ClusterBootstrapOperator turns @dot-i/k8s-operator's watch into keys on our work queue. dot-i runs every
 * event through one sequential queue and has no retries; so its callback only enqueues `namespace/name`,
 * and the reconciler reads the latest object itself. A periodic re-list adds every key again, so an event
 * missed while a watch restarts is caught up.
 */
export class ClusterBootstrapOperator extends Operator {
  readonly #queue: WorkQueue;
  readonly #mgmt: KubeClient;
  /** #scopes are the watched namespaces; undefined stands for all of them. */
  readonly #scopes: (string | undefined)[];
  readonly #log: Logger;
  readonly #resyncMs: number;

  constructor(opts: { kubeConfig: KubeConfig; mgmt: KubeClient; queue: WorkQueue; namespaces: string[]; log: Logger; resyncMs: number }) {
    super(frameworkLogger(opts.log));
    // dot-i loads the default kubeconfig in its constructor; use the one the operator was configured with.
    this.kubeConfig = opts.kubeConfig;
    this.k8sApi = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#queue = opts.queue;
    this.#mgmt = opts.mgmt;
    this.#scopes = opts.namespaces.length > 0 ? opts.namespaces : [undefined];
    this.#log = opts.log;
    this.#resyncMs = opts.resyncMs;
  }

  /** init starts one watch per watched namespace (or one across all) and the periodic re-list. */
  protected async init(): Promise<void> {
    for (const ns of this.#scopes) await this.watchResource(GROUP, VERSION, PLURAL, async (e) => this.#onEvent(e), ns);
    setInterval(() => void this.#enqueueAll(), this.#resyncMs).unref();
  }

  /** client-node 1.x has no CoreV1Api.basePath, which dot-i builds its URLs from. */
  protected override getCustomResourceApiUri(group: string, version: string, plural: string, namespace?: string): string {
    const ns = namespace ? `namespaces/${namespace}/` : '';
    return `${this.#mgmt.server}/apis/${group}/${version}/${ns}${plural}`;
  }

  #onEvent(e: ResourceEvent): void {
    if (e.type === ResourceEventType.Deleted) return;
    const cb = e.object as ClusterBootstrap;
    // A status-only change (our own status write) needs no reconcile: the generation did not move, and no
    // new reconcile was requested through the annotation.
    const statusOnly =
      e.type === ResourceEventType.Modified &&
      !cb.metadata.deletionTimestamp &&
      cb.metadata.generation === cb.status?.observedGeneration &&
      cb.metadata.annotations?.[RECONCILE_REQUESTED_AT] === cb.status?.lastHandledReconcileAt;
    if (!statusOnly) this.#queue.add(`${cb.metadata.namespace}/${cb.metadata.name}`);
  }

  async #enqueueAll(): Promise<void> {
    try {
      for (const ns of this.#scopes) for (const cb of await this.#mgmt.list<ClusterBootstrap>(API_VERSION, KIND, ns)) this.#queue.add(`${cb.metadata.namespace}/${cb.metadata.name}`);
    } catch (err) {
      this.#log.warn({ err }, 're-list of ClusterBootstraps failed');
    }
  }
}
