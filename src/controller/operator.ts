import dotI from '@dot-i/k8s-operator';
import { CoreV1Api, makeInformer, type Informer, type KubeConfig, type KubernetesListObject, type ObjectCache } from '@kubernetes/client-node';
import { GROUP, PLURAL, RECONCILE_REQUESTED_AT, VERSION, type ClusterBootstrap } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { frameworkLogger, type Logger } from '../logger.ts';
import type { WorkQueue } from './queue.ts';

// dot-i is CommonJS with `exports.default`: under Node's ESM loader the default import is module.exports.
const Operator = dotI.default;

const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;

type CBInformer = Informer<ClusterBootstrap & { metadata: any }> & ObjectCache<ClusterBootstrap & { metadata: any }>;
interface InformerState {
  informer: CBInformer;
  synced: boolean;
  failures: number;
  failingSince?: number;
}

/**
 * ClusterBootstrapOperator feeds the work queue from client-node's informer (list, then watch from the
 * resourceVersion, re-list on 410 Gone), one per watched namespace or one across all. dot-i stays the
 * operator's base, but its own watch — which exits the process on any error — is not used: a failed informer
 * is restarted with backoff, and the process never exits for it. The informer's cache answers what the
 * reconciler needs to list, and a periodic resync adds every cached key again.
 */
export class ClusterBootstrapOperator extends Operator {
  readonly #queue: WorkQueue;
  readonly #mgmt: KubeClient;
  readonly #kc: KubeConfig;
  /** #scopes are the watched namespaces; undefined stands for all of them. */
  readonly #scopes: (string | undefined)[];
  readonly #log: Logger;
  readonly #resyncMs: number;
  readonly #informers: InformerState[] = [];

  constructor(opts: { kubeConfig: KubeConfig; mgmt: KubeClient; queue: WorkQueue; namespaces: string[]; log: Logger; resyncMs: number }) {
    super(frameworkLogger(opts.log));
    // dot-i loads the default kubeconfig in its constructor; use the one the operator was configured with.
    this.kubeConfig = opts.kubeConfig;
    this.k8sApi = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#kc = opts.kubeConfig;
    this.#queue = opts.queue;
    this.#mgmt = opts.mgmt;
    this.#scopes = opts.namespaces.length > 0 ? opts.namespaces : [undefined];
    this.#log = opts.log;
    this.#resyncMs = opts.resyncMs;
  }

  /** synced is true when every informer has listed and is watching. */
  get synced(): boolean {
    return this.#informers.length > 0 && this.#informers.every((i) => i.synced);
  }

  /** failingForMs is how long the longest-failing informer has been failing, 0 when none is. */
  get failingForMs(): number {
    return Math.max(0, ...this.#informers.map((i) => (i.failingSince ? Date.now() - i.failingSince : 0)));
  }

  /** list returns every ClusterBootstrap in the informers' caches. */
  list(): ClusterBootstrap[] {
    return this.#informers.flatMap((i) => i.informer.list());
  }

  /** init starts one informer per watched namespace (or one across all) and the periodic resync. */
  protected async init(): Promise<void> {
    for (const ns of this.#scopes) {
      const path = `/apis/${GROUP}/${VERSION}/${ns ? `namespaces/${ns}/` : ''}${PLURAL}`;
      const informer = makeInformer(this.#kc, path, () => this.#mgmt.request<KubernetesListObject<ClusterBootstrap & { metadata: any }>>('GET', path)) as CBInformer;
      const state: InformerState = { informer, synced: false, failures: 0 };
      this.#informers.push(state);
      informer.on('add', (cb) => this.#enqueue(cb));
      informer.on('update', (cb) => this.#onUpdate(cb));
      informer.on('error', (err) => this.#restart(state, path, err));
      void this.#begin(state, path);
    }
    setInterval(() => this.#resync(), this.#resyncMs).unref();
  }

  /** #begin starts (or restarts) an informer; it is synced once its list succeeded and its watch began. */
  async #begin(state: InformerState, path: string): Promise<void> {
    const failuresBefore = state.failures;
    await state.informer.start().catch((err) => this.#restart(state, path, err));
    if (state.failures !== failuresBefore) return;
    if (state.failures > 0) this.#log.info({ path, failures: state.failures }, 'watching ClusterBootstraps again');
    state.synced = true;
    state.failures = 0;
    state.failingSince = undefined;
  }

  /** #restart schedules a failed informer's restart with exponential backoff; it keeps its cache and resourceVersion. */
  #restart(state: InformerState, path: string, err: unknown): void {
    state.synced = false;
    state.failures++;
    state.failingSince ??= Date.now();
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (state.failures - 1));
    // One line per failure at first, then one a minute at most: an outage is said, not shouted.
    if (state.failures <= 3 || delay >= RESTART_MAX_MS) this.#log.warn({ err, path, failures: state.failures, retryInMs: delay }, 'the ClusterBootstrap watch failed; restarting it');
    setTimeout(() => void this.#begin(state, path), delay).unref();
  }

  #onUpdate(cb: ClusterBootstrap): void {
    // A status-only change (our own status write) needs no reconcile: the generation did not move, and no
    // new reconcile was requested through the annotation.
    const statusOnly =
      !cb.metadata.deletionTimestamp &&
      cb.metadata.generation === cb.status?.observedGeneration &&
      cb.metadata.annotations?.[RECONCILE_REQUESTED_AT] === cb.status?.lastHandledReconcileAt;
    if (!statusOnly) this.#enqueue(cb);
  }

  #enqueue(cb: ClusterBootstrap): void {
    this.#queue.add(`${cb.metadata.namespace}/${cb.metadata.name}`);
  }

  #resync(): void {
    for (const cb of this.list()) this.#enqueue(cb);
  }
}
