import { ConditionTypes as C, Reasons, type ConditionType } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import type { Context } from './context.ts';
import type { Step } from './types.ts';
import { ensureIdentity, retirePreviousKey, switchKeys } from './identity.ts';
import { readFluxCredentials, readPushCredentials } from './credentials.ts';
import { trustHostKeys } from './hostkeys.ts';
import { authorizeFlux, connectProvider, registerDeployKeys } from './deploykey.ts';
import { commitManifests } from './commit.ts';
import { connectTarget, judgeKubeconfig } from './target.ts';
import { applyComponents, applySync } from './apply.ts';
import { observeFlux } from './observe.ts';
import { ensureSopsKey, settleSopsRotation } from './sops.ts';
import { proposeChange } from './pulls.ts';
import { removeDeployKeys, uninstallFlux } from './uninstall.ts';

/** RunPhase runs one step under a condition: it marks the condition with the step's outcome and merges its status. */
export type RunPhase = <T>(condition: ConditionType, step: () => Promise<Step<T>>) => Promise<T>;

/**
 * bootstrap is the whole bootstrap of one cluster, in order. The first step that throws ends it, under the
 * condition it ran in; the conditions after it keep what they last said. It returns the message of Ready.
 */
export async function bootstrap(ctx: Context, phase: RunPhase): Promise<string> {
  let identity = await phase(C.IdentityReady, () => ensureIdentity(ctx));
  let sops = await phase(C.IdentityReady, () => ensureSopsKey(ctx, identity));
  const push = await phase(C.HostKeyTrusted, () => readPushCredentials(ctx));
  const knownHosts = await phase(C.HostKeyTrusted, () => trustHostKeys(ctx, identity, push));
  const provider = await phase(C.DeployKeyAuthorized, () => connectProvider(ctx));
  await phase(C.DeployKeyAuthorized, () => registerDeployKeys(ctx, identity, provider));
  if (identity.next) identity = await phase(C.IdentityReady, () => switchKeys(ctx, identity, knownHosts));
  const fluxHttps = await phase(C.DeployKeyAuthorized, () => readFluxCredentials(ctx, push));
  const fluxSecret = await phase(C.DeployKeyAuthorized, () =>
    authorizeFlux(ctx, identity, push, knownHosts, fluxHttps),
  );
  const judged = await phase(C.Applied, () => judgeKubeconfig(ctx));
  const { head, sopsPending, proposal } = await phase(C.Committed, () => commitManifests(ctx, push, knownHosts, sops));
  if (proposal) await phase(C.Committed, () => proposeChange(ctx, proposal));
  if (sops?.previous) sops = await phase(C.IdentityReady, () => settleSopsRotation(ctx, sops!, sopsPending));
  const target = await phase(C.Applied, () => connectTarget(ctx, judged));
  const components = await phase(C.Applied, () => applyComponents(ctx, target));
  await phase(C.Applied, () => applySync(ctx, components, fluxSecret, identity.switchedAt, sops));
  await phase(C.FluxReady, () => observeFlux(ctx, target, head, identity.switchedAt));
  if (identity.previous) await phase(C.IdentityReady, () => retirePreviousKey(ctx, identity, provider));
  return `Flux ${ctx.opts.flux.version} is in sync at ${ctx.opts.git.branch}@sha1:${head}`;
}

/**
 * teardown is the bootstrap undone, for the Uninstall deletion policy: Flux is removed from the target (in
 * `flux uninstall`'s order), then Flux's deploy keys from the git host. Each step skips what is gone, so a
 * teardown that failed half-way is retried from the start. When the kubeconfig Secret is gone (Cluster API
 * deletes it with its cluster) there is no target left to uninstall from: said, and skipped.
 */
export async function teardown(ctx: Context): Promise<void> {
  let target;
  try {
    target = (await connectTarget(ctx)).result;
  } catch (err) {
    if (!(err instanceof PhaseError && err.reason === Reasons.KubeconfigSecretMissing)) throw err;
    ctx.log.warn({ err }, 'the kubeconfig Secret is gone: deleting without uninstalling Flux');
    await ctx.record('Warning', 'UninstallSkipped', `${errorMessage(err)}: Flux was not uninstalled`);
  }
  if (target) await uninstallFlux(ctx, target);
  await removeDeployKeys(ctx, (await connectProvider(ctx)).result);
}
