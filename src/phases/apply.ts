import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { KubeError, type KubeObject } from '../kube/client.ts';
import { encodeSecret } from '../kube/objects.ts';
import { componentObjects, componentsDigest } from '../manifests/files.ts';
import { syncObjects } from '../manifests/sync.ts';
import { RECONCILE_REQUESTED_AT } from '../api/types.ts';
import type { Context, KubeApi } from './context.ts';
import { applyError } from './errors.ts';
import type { FluxSecret, Sops, Step } from './types.ts';

const ESTABLISH_TIMEOUT_MS = 60_000;

/** Components is what applyComponents found: whether Flux manages its own components, and what had drifted. */
export interface Components {
  target: KubeApi;
  selfManaged: boolean;
  drifted: string[];
}

/**
 * applyComponents server-side applies Flux's components — the CRDs (waiting until they are served), the
 * namespace, then the rest — only until Flux manages itself; from then on it hands their fields over to Flux.
 * While Flux starts, a pass finds the same components applied (status.appliedComponents) and only checks
 * they are all there: the CRDs are a megabyte a target, and applying them again costs its API server a
 * CPU-second. They are applied again when they change, when one is missing, and once per resync period.
 */
export async function applyComponents(ctx: Context, target: KubeApi): Promise<Step<Components>> {
  const { opts } = ctx;
  try {
    const namespace: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: opts.flux.namespace } };
    // Once applied, what is missing or changed is drift: looked at before anything is applied again.
    const drifted = wasApplied(ctx) ? await drift(target, [namespace]) : [];
    const { selfManaged, missing } = await fluxManagesItself(ctx, target);
    const objects = componentObjects(opts.flux);
    const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');
    if (missing) drifted.push(`${missing} (missing: Flux's components applied again)`);
    const digest = componentsDigest(opts.flux);
    const current = !selfManaged && drifted.length === 0 && isCurrent(ctx, digest);
    if (current) drifted.push(...(await absent(ctx, target, crds)).map((name) => `${name} (missing)`));
    if (selfManaged) await handOver(target, objects);
    else if (!current || drifted.length > 0) {
      // What can go together goes together: all CRDs, then the namespace, then the rest. Only the metadata
      // comes back: a CRD's whole answer is hundreds of KB, times every target at once.
      const apply = (o: KubeObject) => target.apply(o, { metadataOnly: true });
      await Promise.all(crds.map(apply));
      await waitEstablished(ctx, target, crds);
      target.forget();
      const rest = objects.filter((o) => o.kind !== 'CustomResourceDefinition');
      for (const o of rest.filter((o) => o.kind === 'Namespace')) await apply(o);
      await Promise.all(rest.filter((o) => o.kind !== 'Namespace').map(apply));
      const appliedComponents = {
        version: opts.flux.version,
        digest,
        appliedAt: new Date(ctx.clock.now()).toISOString(),
      };
      return { result: { target, selfManaged, drifted }, status: { appliedComponents } };
    }
    return { result: { target, selfManaged, drifted } };
  } catch (err) {
    throw applyError(err);
  }
}

/** isCurrent is true when the last pass applied these very components (by digest) within the resync period. */
function isCurrent(ctx: Context, digest: string): boolean {
  const last = ctx.cb.status?.appliedComponents;
  return last?.digest === digest && ctx.clock.now() - Date.parse(last.appliedAt) < ctx.resyncMs;
}

/** absent names the components' CRDs the target does not serve and their controllers' missing Deployments. */
async function absent(ctx: Context, target: KubeApi, crds: KubeObject[]): Promise<string[]> {
  const [unservedCrds, deployments] = await Promise.all([unserved(target, crds), missingControllers(ctx, target)]);
  return [...unservedCrds.map((crd) => `CustomResourceDefinition ${crd}`), ...deployments];
}

/** missingControllers names the Deployments of Flux's controllers that are not in the target. */
async function missingControllers(ctx: Context, target: KubeApi): Promise<string[]> {
  const { namespace, components } = ctx.opts.flux;
  const found = await Promise.all(components.map((c) => target.get('apps/v1', 'Deployment', namespace, c)));
  return components.filter((_, i) => !found[i]).map((c) => `Deployment ${namespace}/${c}`);
}

/**
 * applySync applies Flux's git Secret, the SOPS age key Secret with spec.sops (`age.agekey`, and `previous.agekey`
 * while a rotation retires the old key), and the sync objects (the GitRepository asked to fetch again at
 * `refetchAt`, when a rotation switched Flux's key).
 */
export async function applySync(
  ctx: Context,
  components: Components,
  secretData: FluxSecret,
  refetchAt?: string,
  sops?: Sops,
): Promise<Step> {
  const { opts } = ctx;
  const { target, selfManaged } = components;
  try {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: opts.sync.secretName, namespace: opts.sync.namespace },
      type: 'Opaque',
      stringData: secretData,
    };
    const ageKeys: KubeObject | undefined = sops && {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: opts.sync.decryption!.secretName, namespace: opts.sync.namespace },
      type: 'Opaque',
      // data, not stringData: a key left out of a server-side apply of `data` is removed (the retired key).
      data: encodeSecret({
        'age.agekey': `${sops.current.identity}\n`,
        ...(sops.previous && { 'previous.agekey': `${sops.previous.identity}\n` }),
      }),
    };
    // After a key rotation, Flux is asked to fetch again at once with its new key.
    const sync = syncObjects(opts.sync).map((o) =>
      refetchAt && o.kind === 'GitRepository'
        ? { ...o, metadata: { ...o.metadata, annotations: { [RECONCILE_REQUESTED_AT]: refetchAt } } }
        : o,
    ) as KubeObject[];
    // A rotation changes the age key Secret on purpose: looked at for drift only when none is under way.
    const watched = [secret, ...(ageKeys && !sops!.previous ? [ageKeys] : []), ...sync];
    const drifted = [...components.drifted, ...(wasApplied(ctx) ? await drift(target, watched) : [])];
    await Promise.all([secret, ...(ageKeys ? [ageKeys] : [])].map((s) => target.apply(s)));
    await Promise.all(sync.map((o) => target.apply(o)));
    if (drifted.length > 0)
      await ctx.record('Warning', 'DriftRepaired', `repaired in the target cluster: ${drifted.join(', ')}`);
    return {
      result: undefined,
      message: selfManaged
        ? 'identity and sync applied; Flux manages its components from git'
        : `Flux ${opts.flux.version} components, identity and sync applied`,
    };
  } catch (err) {
    throw applyError(err);
  }
}

/** wasApplied is true when the last reconcile found Flux's objects applied: from then on a difference is drift. */
function wasApplied(ctx: Context): boolean {
  return ctx.cb.status?.conditions?.some((c) => c.type === 'Applied' && c.status === 'True') ?? false;
}

/**
 * drift names the objects the operator keeps that are missing in the target, or whose fields it sets differ
 * from what it would set (a Secret's data, the sync objects' spec); other fields are left to their owners.
 */
async function drift(target: KubeApi, wanted: KubeObject[]): Promise<string[]> {
  const lives = await Promise.all(
    wanted.map((w) => target.get(w.apiVersion, w.kind, w.metadata.namespace, w.metadata.name)),
  );
  return wanted.flatMap((want, i) => {
    const live = lives[i];
    const name = want.metadata.namespace
      ? `${want.kind} ${want.metadata.namespace}/${want.metadata.name}`
      : `${want.kind} ${want.metadata.name}`;
    if (!live || live.metadata?.deletionTimestamp) return [`${name} (missing)`];
    const data = want.data ?? encodeSecret(want.stringData ?? {});
    const changed =
      Object.entries(data).some(([k, v]) => (live.data?.[k] ?? '') !== v) ||
      (want.spec && Object.entries(want.spec).some(([k, v]) => JSON.stringify(live.spec?.[k]) !== JSON.stringify(v)));
    return changed ? [`${name} (changed)`] : [];
  });
}

/**
 * fluxManagesItself is true once Flux's own Kustomization has applied a revision and every controller's
 * Deployment is there: from then on Flux reconciles its components from git, and the operator stops
 * applying them so as not to fight it. A controller deleted behind Flux's back cannot bring itself back,
 * so then the operator applies the components again (drift repair).
 */
async function fluxManagesItself(ctx: Context, target: KubeApi): Promise<{ selfManaged: boolean; missing?: string }> {
  const ks = await target
    .get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', ctx.opts.flux.namespace, ctx.opts.sync.name)
    .catch(() => undefined);
  if (!ks?.status?.lastAppliedRevision) return { selfManaged: false };
  const [missing] = await missingControllers(ctx, target);
  return missing ? { selfManaged: false, missing } : { selfManaged: true };
}

/**
 * handOver leaves the components to Flux once it manages itself: the operator's field manager is removed
 * from every component object, so kustomize-controller alone owns their fields and a field a later Flux
 * release drops is removed from the cluster. One object is looked at first; the rest only when it still
 * names the operator (after a first bootstrap, or after a drift repair applied them again).
 */
async function handOver(target: KubeApi, objects: KubeObject[]): Promise<void> {
  const owns = (o: any) => (o?.metadata?.managedFields ?? []).some((f: any) => f.manager === target.fieldManager);
  const probe = objects.find((o) => o.kind === 'Deployment');
  if (probe && !owns(await target.get(probe.apiVersion, probe.kind, probe.metadata.namespace, probe.metadata.name)))
    return;
  await Promise.all(
    objects.map(async (o) => {
      const live = await target.get(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
      if (!owns(live)) return;
      const rest = live.metadata.managedFields.filter((f: any) => f.manager !== target.fieldManager);
      const path = await target.resourcePath(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
      // A JSON patch guarded by the resourceVersion; an empty list would be ignored, [{}] clears them all.
      const patch = [
        { op: 'test', path: '/metadata/resourceVersion', value: live.metadata.resourceVersion },
        { op: 'replace', path: '/metadata/managedFields', value: rest.length > 0 ? rest : [{}] },
      ];
      await target.request('PATCH', path, patch, 'application/json-patch+json');
    }),
  );
}

/**
 * waitEstablished waits until the API server serves every CRD's kinds (see unserved).
 */
async function waitEstablished(ctx: Context, target: KubeApi, crds: KubeObject[]): Promise<void> {
  const deadline = ctx.clock.now() + ESTABLISH_TIMEOUT_MS;
  for (;;) {
    const missing = await unserved(target, crds);
    if (missing.length === 0) return;
    if (ctx.clock.now() > deadline)
      throw new PhaseError(
        Reasons.ApplyFailed,
        `CRD ${missing[0]} is not Established after ${ESTABLISH_TIMEOUT_MS / 1000} s`,
      );
    await ctx.clock.sleep(100);
  }
}

/**
 * unserved names the CRDs whose kinds the API server does not serve yet: the discovery document of each group
 * version lists a CRD's resource only once the CRD is Established, and is a few KB where the CRD is hundreds.
 */
async function unserved(target: KubeApi, crds: KubeObject[]): Promise<string[]> {
  const wanted = new Map<string, { plural: string; crd: string }[]>();
  for (const crd of crds)
    for (const v of (crd.spec?.versions ?? []).filter((v: any) => v.served)) {
      const path = `/apis/${crd.spec.group}/${v.name}`;
      wanted.set(path, [...(wanted.get(path) ?? []), { plural: crd.spec.names.plural, crd: crd.metadata.name }]);
    }
  const missing = await Promise.all(
    [...wanted].map(async ([path, resources]) => {
      const doc = await target
        .request('GET', path)
        .catch((err) => (err instanceof KubeError && err.code === 404 ? undefined : Promise.reject(err)));
      return resources.filter((r) => !doc?.resources?.some((s: any) => s.name === r.plural)).map((r) => r.crd);
    }),
  );
  return [...new Set(missing.flat())];
}
