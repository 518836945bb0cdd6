import dotI from '@dot-i/k8s-operator';
import {
  CoreV1Api,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type KubernetesListObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import {
  GROUP,
  KIND,
  PLURAL,
  RECONCILE_REQUESTED_AT,
  SET_KIND,
  SET_PLURAL,
  VERSION,
  type ClusterBootstrap,
} from '../api/types.ts';
import { KubeClient } from '../kube/client.ts';
import { frameworkLogger, type Logger } from '../logger.ts';
import type { WorkQueue } from './queue.ts';
import type { PathIndex } from './paths.ts';

// dot-i is CommonJS with `exports.default`: under Node's ESM loader the default import is module.exports.
const Operator = dotI.default;

const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;

type CBInformer = Informer<ClusterBootstrap & { metadata: any }> & ObjectCache<ClusterBootstrap & { metadata: any }>;
interface InformerState {
  /** kind is what the informer watches: ClusterBootstraps, or ClusterBootstrapSets. */
  kind: 'cb' | 'set';
  path: string;
  informer?: CBInformer;
  synced: boolean;
  failures: number;
  failingSince?: number;
}

const PROBE_EVERY_MS = 10_000;

/**
 * ClusterBootstrapOperator feeds the work queue from client-node's informer (list, then watch from the
 * resourceVersion, re-list on 410 Gone), one per watched namespace or one across all. dot-i stays the
 * operator's base, but its own watch — which exits the process on any error — is not used: a failed informer
 * is restarted with backoff, and the process never exits for it. The informer's cache answers what the
 * reconciler needs to list, and a periodic resync adds every cached key again.
 */
export class ClusterBootstrapOperator extends Operator {
  readonly #queue: WorkQueue<ResourceKey>;
  readonly #paths?: PathIndex;
  readonly #mgmt: KubeClient;
  readonly #kc: KubeConfig;
  /** #scopes are the watched namespaces; undefined stands for all of them. */
  readonly #scopes: (string | undefined)[];
  readonly #log: Logger;
  readonly #resyncMs: number;
  readonly #informers: InformerState[] = [];
  #reachable = true;
  #probing = false;
  /** #prober asks the API server whether it answers, with a short deadline of its own. */
  readonly #prober: KubeClient;

  constructor(opts: {
    kubeConfig: KubeConfig;
    mgmt: KubeClient;
    queue: WorkQueue<ResourceKey>;
    /** paths is kept up to date with every ClusterBootstrap the informers see (path conflicts). */
    paths?: PathIndex;
    namespaces: string[];
    log: Logger;
    resyncMs: number;
  }) {
    super(frameworkLogger(opts.log));
    // dot-i loads the default kubeconfig in its constructor; use the one the operator was configured with.
    this.kubeConfig = opts.kubeConfig;
    this.k8sApi = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#kc = opts.kubeConfig;
    this.#prober = new KubeClient(opts.kubeConfig, { timeoutMs: 5_000, maxAttempts: 1 });
    this.#queue = opts.queue;
    this.#paths = opts.paths;
    this.#mgmt = opts.mgmt;
    this.#scopes = opts.namespaces.length > 0 ? opts.namespaces : [undefined];
    this.#log = opts.log;
    this.#resyncMs = opts.resyncMs;
  }

  /** synced is true when every informer has listed and is watching, and the API server answers. */
  get synced(): boolean {
    const cbs = this.#informers.filter((i) => i.kind === 'cb');
    return this.#reachable && cbs.length > 0 && cbs.every((i) => i.synced);
  }

  /** failingForMs is how long the longest-failing informer has been failing, 0 when none is. */
  get failingForMs(): number {
    return Math.max(
      0,
      ...this.#informers.filter((i) => i.kind === 'cb').map((i) => (i.failingSince ? Date.now() - i.failingSince : 0)),
    );
  }

  /** list returns every ClusterBootstrap in the informers' caches. */
  list(): ClusterBootstrap[] {
    return this.#informers.filter((i) => i.kind === 'cb').flatMap((i) => i.informer?.list() ?? []);
  }

  /** init starts one informer per watched namespace (or one across all), the API probe and the periodic resync. */
  protected async init(): Promise<void> {
    for (const ns of this.#scopes)
      for (const [kind, plural] of [
        ['cb', PLURAL],
        ['set', SET_PLURAL],
      ] as const) {
        const state: InformerState = {
          kind,
          path: `/apis/${GROUP}/${VERSION}/${ns ? `namespaces/${ns}/` : ''}${plural}`,
          synced: false,
          failures: 0,
        };
        this.#informers.push(state);
        void this.#connect(state);
      }
    setInterval(() => void this.#probe(), PROBE_EVERY_MS).unref();
    setInterval(() => this.#resync(), this.#resyncMs).unref();
  }

  /**
   * #connect starts a fresh informer for a scope (a full list, then a watch) in place of the one before. A
   * failed informer is restarted with backoff from where it was (its resourceVersion and cache); a fresh one
   * is made after an outage of the API server, when a watch may hang on a connection that is gone.
   */
  async #connect(state: InformerState): Promise<void> {
    void state.informer?.stop();
    const informer = makeInformer(this.#kc, state.path, () => listPages(this.#mgmt, state.path)) as CBInformer;
    state.informer = informer;
    state.synced = false;
    const current = () => state.informer === informer;
    if (state.kind === 'set') {
      const enqueue = (set: { metadata: { namespace?: string; name: string } }) =>
        current() && this.#queue.add(setKey(set.metadata.namespace!, set.metadata.name));
      informer.on('add', enqueue);
      informer.on('update', enqueue);
    } else {
      informer.on('add', (cb) => current() && (this.#paths?.upsert(cb), this.#enqueue(cb, true)));
      informer.on('update', (cb) => current() && (this.#paths?.upsert(cb), this.#onUpdate(cb)));
      informer.on('delete', (cb) => current() && this.#paths?.remove(cb));
    }
    informer.on('error', (err) => current() && this.#restart(state, err));
    await this.#begin(state, informer);
  }

  /** #begin starts (or restarts) an informer; it is synced once its list succeeded and its watch began. */
  async #begin(state: InformerState, informer: CBInformer): Promise<void> {
    const failuresBefore = state.failures;
    await informer.start().catch((err) => this.#restart(state, err));
    if (state.failures !== failuresBefore || state.informer !== informer) return;
    if (state.failures > 0)
      this.#log.info({ path: state.path, failures: state.failures }, 'watching ClusterBootstraps again');
    state.synced = true;
    state.failures = 0;
    state.failingSince = undefined;
  }

  /**
   * #restart schedules a failed informer's restart with exponential backoff; it keeps its cache and resourceVersion.
   */
  #restart(state: InformerState, err: unknown): void {
    state.synced = false;
    state.failures++;
    state.failingSince ??= Date.now();
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (state.failures - 1));
    // One line per failure at first, then one each time the backoff is at its cap: an outage is said, not shouted.
    if (state.failures <= 3 || delay >= RESTART_MAX_MS)
      this.#log.warn(
        { err, path: state.path, failures: state.failures, retryInMs: delay },
        `the ${state.kind === 'set' ? 'ClusterBootstrapSet' : 'ClusterBootstrap'} watch failed; restarting it`,
      );
    const informer = state.informer!;
    setTimeout(() => state.informer === informer && void this.#begin(state, informer), delay).unref();
  }

  /**
   * #probe asks the API server whether it answers. While it does not, the operator is not ready; when it
   * answers again after an outage, every informer is made afresh (a full list enqueues every resource).
   */
  async #probe(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    const reachable = await this.#prober.request('GET', '/version').then(
      () => true,
      () => false,
    );
    this.#probing = false;
    if (reachable === this.#reachable) return;
    this.#reachable = reachable;
    if (!reachable) {
      this.#log.warn('the management API server does not answer: not ready until it does');
      return;
    }
    this.#log.info('the management API server answers again: watching afresh');
    for (const state of this.#informers) void this.#connect(state);
  }

  #onUpdate(cb: ClusterBootstrap): void {
    // A status-only change (our own status write) needs no reconcile: the generation did not move, and no
    // new reconcile was requested through the annotation.
    const statusOnly =
      !cb.metadata.deletionTimestamp &&
      cb.metadata.generation === cb.status?.observedGeneration &&
      cb.metadata.annotations?.[RECONCILE_REQUESTED_AT] === cb.status?.lastHandledReconcileAt;
    if (!statusOnly) this.#enqueue(cb, true);
  }

  /** #enqueue adds a ClusterBootstrap (and the set that owns it); `urgent` for new work, not for a resync. */
  #enqueue(cb: ClusterBootstrap, urgent = false): void {
    this.#queue.add({ kind: KIND, namespace: cb.metadata.namespace, name: cb.metadata.name }, 0, { urgent });
    // The set that owns it counts its Ready ones.
    const owner = cb.metadata.ownerReferences?.find((r) => r.kind === SET_KIND && r.controller);
    if (owner) this.#queue.add(setKey(cb.metadata.namespace, owner.name));
  }

  #resync(): void {
    for (const cb of this.list()) this.#enqueue(cb);
    for (const i of this.#informers.filter((i) => i.kind === 'set'))
      for (const set of i.informer?.list() ?? []) this.#queue.add(setKey(set.metadata.namespace!, set.metadata.name));
  }
}

/** LIST_PAGE is how many objects one list call asks for: a page of the largest ClusterBootstraps is a few MB. */
const LIST_PAGE = 100;

/**
 * listPages lists a collection a page at a time (limit/continue), so that no one answer grows with the
 * fleet or with what tenants put in their objects; the pages are one snapshot, at the first page's version.
 */
export async function listPages<T extends KubernetesObject>(
  mgmt: Pick<KubeClient, 'request'>,
  path: string,
  limit = LIST_PAGE,
): Promise<KubernetesListObject<T>> {
  type Page = { items?: T[]; metadata?: { resourceVersion?: string; continue?: string } };
  const first = await mgmt.request<Page>('GET', `${path}?limit=${limit}`);
  const items = [...(first.items ?? [])];
  for (let page = first; page.metadata?.continue;) {
    page = await mgmt.request<Page>(
      'GET',
      `${path}?limit=${limit}&continue=${encodeURIComponent(page.metadata.continue)}`,
    );
    items.push(...(page.items ?? []));
  }
  return { ...first, items, metadata: { resourceVersion: first.metadata?.resourceVersion } } as KubernetesListObject<T>;
}

/** ResourceKey is a work-queue key: a ClusterBootstrap or a ClusterBootstrapSet, by namespace and name. */
export interface ResourceKey {
  kind: typeof KIND | typeof SET_KIND;
  namespace: string;
  name: string;
}

/** keyId is a ResourceKey's identity in the work queue. */
export const keyId = (key: ResourceKey) => `${key.kind}/${key.namespace}/${key.name}`;

/** setKey is the work-queue key of a ClusterBootstrapSet. */
export const setKey = (namespace: string, name: string): ResourceKey => ({ kind: SET_KIND, namespace, name });
