import { ConditionTypes, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { backoffWhileWaiting, type Context, type KubeApi } from './context.ts';
import type { Step } from './types.ts';

function readyCondition(obj: any): { status?: string; message?: string; reason?: string } {
  return obj?.status?.conditions?.find((c: any) => c.type === 'Ready') ?? {};
}

/**
 * observeFlux checks, as flux2's bootstrap does, that Flux's GitRepository and Kustomization are Ready at
 * the revision the branch holds (`<branch>@sha1:<sha>`), with their generation observed. Until then the
 * phase is retried, less often the longer Flux takes; a suspended Kustomization fails with a message that
 * says so. After a key rotation (`refetchAt`), the GitRepository must also have fetched again, with the new key.
 */
export async function observeFlux(ctx: Context, target: KubeApi, head: string, refetchAt?: string): Promise<Step> {
  const { namespace: ns, name, branch } = ctx.opts.sync;
  const want = `${branch}@sha1:${head}`;
  // Flux is looked at again after 10 s, then less often the longer it takes (at most every minute).
  const retryAfterMs = backoffWhileWaiting(ctx, ConditionTypes.FluxReady, Reasons.FluxNotReady, 10_000, 60_000);
  const wait = (message: string) => new PhaseError(Reasons.FluxNotReady, message, { retryAfterMs });
  const repo = await target.get('source.toolkit.fluxcd.io/v1', 'GitRepository', ns, name);
  const ks = await target.get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', ns, name);
  if (!repo || !ks) throw wait(`GitRepository and Kustomization ${ns}/${name} are not in the target cluster yet`);
  if (ks.spec?.suspend)
    throw wait(`Kustomization ${ns}/${name} is suspended: resume it with flux resume kustomization`);
  for (const [kind, obj] of [
    ['GitRepository', repo],
    ['Kustomization', ks],
  ] as const) {
    const ready = readyCondition(obj);
    if (obj.status?.observedGeneration !== obj.metadata.generation || ready.status !== 'True')
      throw wait(
        `${kind} ${ns}/${name} is not ` +
          `ready${ready.message ? `: ${ready.message}` : ' yet (are the Flux controllers running?)'}`,
      );
  }
  if (refetchAt && repo.status?.lastHandledReconcileAt !== refetchAt)
    throw wait(`GitRepository ${ns}/${name} has not fetched with Flux's new key yet`);
  if (!head) throw wait(`the branch ${branch} has no commit yet`);
  if (ks.status?.lastAppliedRevision !== want)
    throw wait(`Flux applied ${ks.status?.lastAppliedRevision ?? 'nothing'}, waiting for ${want}`);
  return {
    result: undefined,
    message: `Flux applied ${want}`,
    status: {
      lastAppliedRevision: want,
      fluxVersion: ctx.opts.flux.version,
      latestAvailableVersion: ctx.opts.latestFluxVersion,
    },
  };
}
