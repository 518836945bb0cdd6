import yaml from 'js-yaml';
import { ConditionTypes, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { KubeClient, KubeError, type KubeObject } from '../kube/client.ts';
import { componentsFor } from '../manifests/components.ts';
import { syncObjects } from '../manifests/sync.ts';
import { decodeSecret, type Context } from './context.ts';

const ESTABLISH_TIMEOUT_MS = 60_000;

/**
 * connectTarget builds a client for the target cluster from the kubeconfig Secret (Cluster API's
 * `<cluster>-kubeconfig`, key `value`), or for the operator's own cluster when spec.target is omitted, and
 * checks that the API server answers.
 */
export async function connectTarget(ctx: Context): Promise<KubeClient> {
  const { opts, cb } = ctx;
  let kubeconfig: string | undefined;
  if (opts.target) {
    const ref = `Secret ${cb.metadata.namespace}/${opts.target.secretName}`;
    const secret = await ctx.mgmt.get('v1', 'Secret', cb.metadata.namespace, opts.target.secretName);
    if (!secret) throw new PhaseError(ConditionTypes.Applied, Reasons.KubeconfigSecretMissing, `${ref} (spec.target.kubeconfigSecretRef) does not exist`, { retryAfterMs: 30_000 });
    kubeconfig = decodeSecret(secret)[opts.target.key];
    if (!kubeconfig) throw new PhaseError(ConditionTypes.Applied, Reasons.KubeconfigInvalid, `${ref} has no key "${opts.target.key}" holding a kubeconfig`, { retryAfterMs: 60_000 });
  }
  let client: KubeClient;
  try {
    client = ctx.targetClient(kubeconfig);
  } catch {
    // The parser's message may quote the kubeconfig, credentials included: it stays out of status and logs.
    throw new PhaseError(ConditionTypes.Applied, Reasons.KubeconfigInvalid, `the kubeconfig in Secret ${opts.target?.secretName} (key ${opts.target?.key}) cannot be read: it must be a kubeconfig YAML with a current context`, { retryAfterMs: 60_000 });
  }
  try {
    await client.request('GET', '/version');
  } catch (cause) {
    throw new PhaseError(ConditionTypes.Applied, Reasons.TargetUnreachable, `the target cluster's API server ${client.server} does not answer`, { cause });
  }
  return client;
}

/** componentObjects parses the rendered gotk-components.yaml into objects, as Flux's install applies them. */
export function componentObjects(ctx: Context): KubeObject[] {
  const text = componentsFor(ctx.opts.flux);
  return (yaml.loadAll(text) as KubeObject[]).filter((o) => o && o.kind);
}

/**
 * fluxManagesItself is true once Flux's own Kustomization has applied a revision and every controller's
 * Deployment is there: from then on Flux reconciles its components from git, and the operator stops
 * applying them so as not to fight it. A controller deleted behind Flux's back cannot bring itself back,
 * so then the operator applies the components again (drift repair).
 */
export async function fluxManagesItself(ctx: Context, target: KubeClient): Promise<boolean> {
  const { namespace } = ctx.opts.flux;
  const ks = await target.get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', namespace, ctx.opts.sync.name).catch(() => undefined);
  if (!ks?.status?.lastAppliedRevision) return false;
  for (const component of ctx.opts.flux.components) if (!(await target.get('apps/v1', 'Deployment', namespace, component))) return false;
  return true;
}

/**
 * applyToTarget server-side applies, in order: the CRDs (waiting until Established), the namespace and the
 * rest of the components — only until Flux manages itself — then Flux's git Secret and the sync objects.
 * It says whether Flux managed itself, that is whether the components were left to it.
 */
export async function applyToTarget(ctx: Context, target: KubeClient, secretData: Record<string, string>): Promise<{ selfManaged: boolean }> {
  const { opts } = ctx;
  try {
    const selfManaged = await fluxManagesItself(ctx, target);
    if (!selfManaged) {
      const objects = componentObjects(ctx);
      const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');
      for (const crd of crds) await target.apply(crd);
      await waitEstablished(target, crds.map((c) => c.metadata.name));
      target.forget();
      const rest = objects.filter((o) => o.kind !== 'CustomResourceDefinition');
      for (const o of rest.filter((o) => o.kind === 'Namespace')) await target.apply(o);
      for (const o of rest.filter((o) => o.kind !== 'Namespace')) await target.apply(o);
    }
    await target.apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: opts.sync.secretName, namespace: opts.flux.namespace },
      type: 'Opaque',
      stringData: secretData,
    });
    for (const o of syncObjects({ ...opts.sync, namespace: opts.flux.namespace, url: opts.git.url, branch: opts.git.branch, path: opts.git.path }))
      await target.apply(o as KubeObject);
    return { selfManaged };
  } catch (err) {
    if (err instanceof PhaseError) throw err;
    const reason = err instanceof KubeError && err.code === 0 ? Reasons.TargetUnreachable : Reasons.ApplyFailed;
    throw new PhaseError(ConditionTypes.Applied, reason, 'applying Flux to the target cluster failed', { cause: err });
  }
}

async function waitEstablished(target: KubeClient, names: string[]): Promise<void> {
  const deadline = Date.now() + ESTABLISH_TIMEOUT_MS;
  for (const name of names) {
    for (;;) {
      const crd = await target.get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', undefined, name);
      if (crd?.status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new PhaseError(ConditionTypes.Applied, Reasons.ApplyFailed, `CRD ${name} is not Established after ${ESTABLISH_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
