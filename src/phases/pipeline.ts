import { ConditionTypes as C, type ConditionType } from '../api/conditions.ts';
import type { Context } from './context.ts';
import type { Step } from './types.ts';
import { ensureIdentity, retirePreviousKey, switchKeys } from './identity.ts';
import { readFluxCredentials, readPushCredentials } from './credentials.ts';
import { trustHostKeys } from './hostkeys.ts';
import { authorizeFlux, connectProvider, registerDeployKeys, removeDeployKey } from './deploykey.ts';
import { commitManifests } from './commit.ts';
import { connectTarget } from './target.ts';
import { applyComponents, applySync } from './apply.ts';
import { observeFlux } from './observe.ts';

/** RunPhase runs one step under a condition: it marks the condition with the step's outcome and merges its status. */
export type RunPhase = <T>(condition: ConditionType, step: () => Promise<Step<T>>) => Promise<T>;

/**
 * bootstrap is the whole bootstrap of one cluster. Flux's components need nothing from git, so they go to the
 * target while the repository side (identity, host keys, deploy key, commit) is made ready; Flux's Secret and
 * sync objects follow once both are done. The first step that throws ends it, under the condition it ran in;
 * a failure on the repository side (a deploy key not yet registered) does not wait for the components, whose
 * apply runs on and is joined by the next pass. The conditions after it keep what they last said. It returns
 * the message of Ready.
 */
export async function bootstrap(ctx: Context, phase: RunPhase): Promise<string> {
  const components = (async () => {
    const target = await phase(C.Applied, () => connectTarget(ctx));
    return phase(C.Applied, () => applyComponents(ctx, target));
  })();
  const repository = async () => {
    let identity = await phase(C.IdentityReady, () => ensureIdentity(ctx));
    const push = await phase(C.HostKeyTrusted, () => readPushCredentials(ctx));
    const knownHosts = await phase(C.HostKeyTrusted, () => trustHostKeys(ctx, identity, push));
    const provider = await phase(C.DeployKeyAuthorized, () => connectProvider(ctx));
    await phase(C.DeployKeyAuthorized, () => registerDeployKeys(ctx, identity, provider));
    if (identity.next) identity = await phase(C.IdentityReady, () => switchKeys(ctx, identity, knownHosts));
    const fluxHttps = await phase(C.DeployKeyAuthorized, () => readFluxCredentials(ctx, push));
    const fluxSecret = await phase(C.DeployKeyAuthorized, () => authorizeFlux(ctx, identity, push, knownHosts, fluxHttps));
    const head = await phase(C.Committed, () => commitManifests(ctx, push, knownHosts));
    return { identity, provider, fluxSecret, head };
  };
  const { identity, provider, fluxSecret, head } = await repository().catch((err) => {
    components.catch(() => undefined); // runs on; the next pass joins it (applyComponents)
    throw err;
  });
  const applied = await components;
  await phase(C.Applied, () => applySync(ctx, applied, fluxSecret, identity.switchedAt));
  await phase(C.FluxReady, () => observeFlux(ctx, applied.target, head, identity.switchedAt));
  if (identity.previous) await phase(C.IdentityReady, () => retirePreviousKey(ctx, identity, removeDeployKey(ctx, provider)));
  return `Flux ${ctx.opts.flux.version} is in sync at ${ctx.opts.git.branch}@sha1:${head}`;
}
