import { ConditionTypes, findCondition, Reasons } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import {
  API_VERSION,
  CLUSTER_NAME_LABEL,
  KIND,
  SET_KIND,
  type ClusterBootstrap,
  type ClusterBootstrapSet,
  type ClusterBootstrapSpec,
  type LabelSelector,
} from '../api/types.ts';
import { validate, type Policy } from '../api/validate.ts';
import { newestVersion, resolveVersion } from '../api/versions.ts';
import { shippedVersions } from '../manifests/components.ts';
import { KubeError } from '../kube/client.ts';
import { guarded, reasonOf } from '../cancel.ts';
import type { KubeApi } from '../phases/context.ts';
import { ownerReference } from '../kube/objects.ts';
import type { Logger } from '../logger.ts';
import type { Outcome } from './queue.ts';
import { markCondition, writeStatus } from './status.ts';

/** SET_FIELD_MANAGER owns the fields of the ClusterBootstraps a set keeps. */
export const SET_FIELD_MANAGER = 'flux-bootstrap-operator-set';
/** SET_LABEL names the set a ClusterBootstrap belongs to. */
export const SET_LABEL = 'fluxbootstrap.dev/set';
/** CLUSTER_NAME is what a template writes for the cluster's name. */
export const CLUSTER_NAME = '${CLUSTER_NAME}';

/** POLL_MS is how often a set looks for clusters that newly match (Clusters are listed, not watched). */
const POLL_MS = 15_000;

/** SelectedCluster is a cluster a set's selector matches, and whether it can be bootstrapped yet. */
interface SelectedCluster {
  name: string;
  /** ready is true once the control plane is initialized and the kubeconfig Secret exists. */
  ready: boolean;
}

export interface SetReconcilerOptions {
  mgmt: KubeApi;
  log: Logger;
  policy?: Policy;
  /** clusterBootstraps lists the ClusterBootstraps in the informer's cache. */
  clusterBootstraps: () => ClusterBootstrap[];
}

/**
 * SetReconciler keeps one ClusterBootstrap per cluster a ClusterBootstrapSet selects — a Cluster API Cluster
 * whose control plane is initialized and whose kubeconfig Secret exists, or a kubeconfig Secret — made from the
 * set's template with the cluster's name, owned by the set and labelled with the cluster. A template change
 * rolls out to all of them; a cluster that stops matching has its ClusterBootstrap deleted, which carries out
 * that ClusterBootstrap's deletion policy. A cluster another set (or a person) already bootstraps is left to it
 * and reported.
 */
export class SetReconciler {
  readonly #o: SetReconcilerOptions;

  constructor(opts: SetReconcilerOptions) {
    this.#o = opts;
  }

  async reconcile(namespace: string, name: string, signal = new AbortController().signal): Promise<Outcome> {
    const mgmt = guarded(this.#o.mgmt.withSignal?.(signal) ?? this.#o.mgmt, signal);
    const log = this.#o.log.child({ namespace, name, kind: SET_KIND });
    const set = await mgmt.get<ClusterBootstrapSet>(API_VERSION, SET_KIND, namespace, name);
    // A deleted set's ClusterBootstraps go with it (owner references).
    if (!set || set.metadata.deletionTimestamp) return { kind: 'done' };
    const status: NonNullable<ClusterBootstrapSet['status']> = {
      ...set.status,
      observedGeneration: set.metadata.generation,
    };
    const gen = set.metadata.generation;
    try {
      validate(this.#desired(set, 'cluster').cb, this.#o.policy);
      const selected = await this.#select(mgmt, set);
      const here = new Map(
        this.#o
          .clusterBootstraps()
          .filter((cb) => cb.metadata.namespace === namespace)
          .map((cb) => [cb.metadata.name, cb]),
      );
      const owned = [...here.values()].filter((cb) => ownedBy(cb, set));
      const conflicts: string[] = [];
      const { versions, progress } = rollout(
        set,
        selected.filter((c) => c.ready).map((c) => c.name),
        here,
      );
      if (progress) status.rollout = progress;
      else delete status.rollout;
      for (const cluster of selected.filter((c) => c.ready)) {
        // The cache may lag: one it does not show is looked up on the server before anything is applied, so a
        // ClusterBootstrap someone else made (by hand, another set) is never overwritten.
        const existing =
          here.get(cluster.name) ?? (await mgmt.get<ClusterBootstrap>(API_VERSION, KIND, namespace, cluster.name));
        if (existing && !ownedBy(existing, set)) {
          conflicts.push(cluster.name);
          continue;
        }
        await this.#apply(mgmt, set, cluster.name, versions.get(cluster.name));
      }
      const keep = new Set(selected.filter((c) => c.ready).map((c) => c.name));
      for (const cb of owned.filter((cb) => !keep.has(cb.metadata.name) && !cb.metadata.deletionTimestamp)) {
        log.info(
          { clusterBootstrap: cb.metadata.name },
          'the cluster no longer matches: deleting its ClusterBootstrap',
        );
        await mgmt.delete(API_VERSION, KIND, namespace, cb.metadata.name);
      }
      const mine = owned.filter((cb) => keep.has(cb.metadata.name));
      const notReady = mine
        .map((cb) => ({ name: cb.metadata.name, ready: findCondition(cb.status?.conditions, ConditionTypes.Ready) }))
        .filter((x) => x.ready?.status !== 'True')
        .map((x) => ({
          name: x.name,
          reason: x.ready?.reason ?? Reasons.Progressing,
          message: (x.ready?.message ?? 'not reconciled yet').slice(0, 512),
        }));
      Object.assign(status, {
        selected: selected.length,
        ready: mine.length - notReady.length,
        waiting: selected.filter((c) => !c.ready).map((c) => c.name),
        notReady: notReady.slice(0, 50),
        sopsRecipients: mine.flatMap((cb) =>
          cb.status?.sops?.recipient ? [{ name: cb.metadata.name, recipient: cb.status.sops.recipient }] : [],
        ),
        conflicts,
      });
      const rolling = status.rollout && status.rollout.pending > 0;
      const done = status.ready === selected.length && conflicts.length === 0 && !rolling;
      const message = done
        ? `all ${selected.length} selected clusters are bootstrapped and Ready`
        : `${status.ready} of ${selected.length} selected clusters Ready` +
          (status.waiting!.length
            ? `; waiting for ${status.waiting!.length} (control plane or kubeconfig Secret)`
            : '') +
          (conflicts.length
            ? `; ${conflicts.length} bootstrapped by another set or by hand: ${conflicts.join(', ')}`
            : '') +
          (rolling
            ? `; rolling out Flux ${status.rollout!.version}: ${status.rollout!.updated} updated, ` +
              `${status.rollout!.pending} to go` +
              (status.rollout!.blockedBy?.length ? `, held up by ${status.rollout!.blockedBy.join(', ')}` : '')
            : '');
      markCondition(
        status,
        gen,
        ConditionTypes.Ready,
        done ? 'True' : 'False',
        done ? Reasons.Succeeded : conflicts.length ? Reasons.PathConflict : Reasons.Progressing,
        message,
      );
      status.conditions = (status.conditions ?? []).filter((c) => c.type !== ConditionTypes.Stalled);
      status.message = message;
    } catch (err) {
      const pe =
        err instanceof PhaseError
          ? err
          : new PhaseError(
              err instanceof KubeError && err.code === 403 ? Reasons.Forbidden : Reasons.InternalError,
              'reconciling the set failed',
              { cause: err },
            );
      const message = errorMessage(pe);
      markCondition(status, gen, ConditionTypes.Ready, 'False', pe.reason, message);
      if (pe.terminal) markCondition(status, gen, ConditionTypes.Stalled, 'True', pe.reason, message);
      status.message = message;
      log.warn({ err: pe, reason: pe.reason }, message);
      if (signal.aborted) return { kind: 'retry', error: reasonOf(signal) };
      await writeStatus(mgmt, set, status);
      return pe.terminal ? { kind: 'stalled', error: pe } : { kind: 'retry', error: pe };
    }
    await writeStatus(mgmt, set, status);
    return { kind: 'resync', afterMs: POLL_MS };
  }

  /** #desired is the ClusterBootstrap the set wants for a cluster: its template, with the cluster's name. */
  #desired(set: ClusterBootstrapSet, cluster: string): { cb: ClusterBootstrap } {
    const spec = JSON.parse(
      JSON.stringify(set.spec.template.spec).replaceAll(CLUSTER_NAME, cluster),
    ) as ClusterBootstrapSpec;
    spec.target ??= { kubeconfigSecretRef: { name: `${cluster}-kubeconfig` } };
    // The set's clusters share one head branch, so the changes ready together share one pull request.
    const pr = spec.git.pullRequest;
    if (pr?.enabled) {
      pr.branch ??= `flux-bootstrap/${set.metadata.namespace}-${set.metadata.name}`;
      pr.title ??= `Bootstrap Flux {version} on the clusters of ClusterBootstrapSet ${set.metadata.name}`;
    }
    return {
      cb: {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: {
          name: cluster,
          namespace: set.metadata.namespace,
          uid: '',
          labels: {
            ...set.spec.template.metadata?.labels,
            [CLUSTER_NAME_LABEL]: cluster,
            [SET_LABEL]: set.metadata.name,
          },
          annotations: set.spec.template.metadata?.annotations,
          ownerReferences: [ownerReference(set)],
        } as ClusterBootstrap['metadata'],
        spec,
      },
    };
  }

  async #apply(mgmt: KubeApi, set: ClusterBootstrapSet, cluster: string, version?: string): Promise<void> {
    const { cb } = this.#desired(set, cluster);
    if (version) cb.spec.flux = { ...cb.spec.flux, version };
    const { uid: _uid, ...metadata } = cb.metadata;
    await mgmt.apply({ ...cb, metadata } as any, { fieldManager: SET_FIELD_MANAGER, force: true });
  }

  /** #select lists the clusters the set's selector matches, and whether each can be bootstrapped yet. */
  async #select(mgmt: KubeApi, set: ClusterBootstrapSet): Promise<SelectedCluster[]> {
    const ns = set.metadata.namespace;
    if (set.spec.kubeconfigSecretSelector) {
      // Metadata alone: the set needs the Secrets' names and labels, never their kubeconfigs.
      const secrets = await mgmt.list<any>(
        'v1',
        'Secret',
        ns,
        `?labelSelector=${encodeURIComponent(selectorQuery(set.spec.kubeconfigSecretSelector))}`,
        { metadataOnly: true },
      );
      return secrets.map((s) => ({
        name: s.metadata.labels?.[CLUSTER_NAME_LABEL] ?? s.metadata.name.replace(/-kubeconfig$/, ''),
        ready: true,
      }));
    }
    const query = `?labelSelector=${encodeURIComponent(selectorQuery(set.spec.clusterSelector ?? {}))}`;
    let clusters: any[] | undefined;
    for (const version of ['v1beta2', 'v1beta1']) {
      try {
        clusters = await mgmt.list<any>(`cluster.x-k8s.io/${version}`, 'Cluster', ns, query);
        break;
      } catch (err) {
        if (!(err instanceof KubeError && err.code === 404)) throw err;
      }
    }
    if (!clusters)
      throw new PhaseError(
        Reasons.InvalidSpec,
        'spec.clusterSelector selects Cluster API Clusters, but this cluster does not serve cluster.x-k8s.io: ' +
          'install Cluster API, or use spec.kubeconfigSecretSelector',
      );
    const selected: SelectedCluster[] = [];
    for (const c of clusters) {
      // v1beta2 says status.initialization.controlPlaneInitialized; v1beta1 status.controlPlaneReady.
      const initialized =
        c.status?.initialization?.controlPlaneInitialized === true || c.status?.controlPlaneReady === true;
      const secret = initialized ? await mgmt.get('v1', 'Secret', ns, `${c.metadata.name}-kubeconfig`) : undefined;
      selected.push({ name: c.metadata.name, ready: !!secret });
    }
    return selected;
  }
}

/** ownedBy is true when the set is the ClusterBootstrap's controlling owner. */
export function ownedBy(
  cb: { metadata: { ownerReferences?: { uid: string; controller?: boolean }[] } },
  set: ClusterBootstrapSet,
): boolean {
  return (cb.metadata.ownerReferences ?? []).some((r) => r.uid === set.metadata.uid && r.controller);
}

/** selectorQuery writes a label selector in the API's query syntax. */
export function selectorQuery(s: LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    if (e.operator === 'In') parts.push(`${e.key} in (${(e.values ?? []).join(',')})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${(e.values ?? []).join(',')})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

/**
 * rollout decides the Flux version of each of a set's clusters when spec.rollout.maxUnavailable is set: the template's
 * version (an exact one or a range, resolved among the shipped versions) is given to new clusters at once, and to
 * the others a few at a time — never more than maxUnavailable of them on the new version and not yet Ready with
 * it. A cluster Stalled on the new version stops the rollout until it is fixed. Without the knob every cluster gets
 * the template's version as it is (and resolves a range itself).
 */
export function rollout(
  set: ClusterBootstrapSet,
  clusters: string[],
  existing: Map<string, ClusterBootstrap>,
): { versions: Map<string, string>; progress?: NonNullable<ClusterBootstrapSet['status']>['rollout'] } {
  const versions = new Map<string, string>();
  const max = set.spec.rollout?.maxUnavailable;
  const wanted = set.spec.template.spec.flux?.version;
  const shipped = shippedVersions();
  const target = resolveVersion(wanted ?? newestVersion(shipped), shipped);
  if (!max || !target) return { versions };
  const on = (cb: ClusterBootstrap) => resolveVersion(cb.spec.flux?.version ?? newestVersion(shipped), shipped);
  const readyAt = (cb: ClusterBootstrap) =>
    cb.status?.fluxVersion === target &&
    findCondition(cb.status?.conditions, ConditionTypes.Ready)?.status === 'True' &&
    cb.status.observedGeneration === cb.metadata.generation;
  const mine = clusters
    .map((name) => existing.get(name))
    .filter((cb): cb is ClusterBootstrap => !!cb && ownedBy(cb, set));
  const moving = mine.filter((cb) => on(cb) === target && !readyAt(cb));
  const stalled = moving.filter(
    (cb) => findCondition(cb.status?.conditions, ConditionTypes.Stalled)?.status === 'True',
  );
  let slots = stalled.length > 0 ? 0 : max - moving.length;
  let pending = 0;
  for (const name of [...clusters].sort()) {
    const cb = existing.get(name);
    const current = cb && ownedBy(cb, set) ? on(cb) : undefined;
    if (!current || current === target) versions.set(name, target);
    else if (slots > 0) {
      versions.set(name, target);
      slots--;
    } else {
      // Held back: pinned to what it runs now, so a range does not move it on its own.
      versions.set(name, cb!.status?.fluxVersion ?? current);
      pending++;
    }
  }
  // What is on the new version and not Ready with it yet, now that the batch is chosen.
  const unready = [...versions]
    .filter(([name, v]) => v === target && !(existing.get(name) && readyAt(existing.get(name)!)))
    .map(([name]) => name);
  const blockedBy = stalled.length > 0 ? stalled.map((cb) => cb.metadata.name) : pending > 0 ? unready : [];
  return {
    versions,
    progress: {
      version: target,
      updated: [...versions.values()].filter((v) => v === target).length,
      pending: pending + unready.length,
      ...(blockedBy.length > 0 && { blockedBy: blockedBy.slice(0, 20) }),
    },
  };
}
