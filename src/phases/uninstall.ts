import type { KubeObject } from '../kube/client.ts';
import { componentObjects } from '../manifests/files.ts';
import type { Context, KubeApi, ProviderKeys } from './context.ts';
import { providerPhaseError } from './errors.ts';

/**
 * uninstallFlux removes Flux from the target in the order `flux uninstall` uses: the finalizers of every
 * Flux custom resource first (their controllers may be gone already), then the resources, the components,
 * the CRDs and last the namespace. Objects already gone are skipped, so it can be retried at any point.
 */
export async function uninstallFlux(ctx: Context, target: KubeApi): Promise<void> {
  const objects = componentObjects(ctx.opts.flux);
  const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');
  for (const crd of crds) {
    const served = crd.spec.versions.find((v: any) => v.storage)?.name;
    const apiVersion = `${crd.spec.group}/${served}`;
    // Their metadata is all that is needed (names, finalizers): a cluster's many Flux objects stay a small answer.
    const items = await target
      .list<KubeObject>(apiVersion, crd.spec.names.kind, undefined, '', { metadataOnly: true })
      .catch(() => []);
    for (const item of items) {
      const { namespace, name } = item.metadata;
      if (item.metadata.finalizers?.length)
        await target.mergePatch(apiVersion, crd.spec.names.kind, namespace, name, { metadata: { finalizers: null } });
      await target.delete(apiVersion, crd.spec.names.kind, namespace, name);
    }
  }
  await target.delete('v1', 'Secret', ctx.opts.sync.namespace, ctx.opts.sync.secretName);
  for (const o of objects.filter((o) => o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition').reverse())
    await target.delete(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
  for (const crd of crds) await target.delete(crd.apiVersion, crd.kind, undefined, crd.metadata.name);
  await target.delete('v1', 'Namespace', undefined, ctx.opts.flux.namespace);
  ctx.log.info({ namespace: ctx.opts.flux.namespace }, 'uninstalled Flux from the target cluster');
}

/**
 * removeDeployKeys removes Flux's keys (current, next and previous) from the git host through its API, for
 * the Uninstall deletion policy; without a provider there is nothing to remove.
 */
export async function removeDeployKeys(ctx: Context, provider: ProviderKeys | undefined): Promise<void> {
  if (!provider) return;
  try {
    for (const key of await ctx.identity.allKeys()) await provider.remove(key);
  } catch (err) {
    throw providerPhaseError(err, ctx.clock.now());
  }
  ctx.log.info('removed the deploy keys from the git host');
}
