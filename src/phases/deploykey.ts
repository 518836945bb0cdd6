import { ConditionTypes as C, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError, redact } from '../git/errors.ts';
import type { GitAuth } from '../git/types.ts';
import { ProviderError } from '../providers/types.ts';
import { fingerprint } from '../ssh/keys.ts';
import { backoffWhileWaiting, providerOptions, type Context, type ProviderKeys } from './context.ts';
import { gitPhaseError, providerPhaseError } from './errors.ts';
import type { FluxSecret, HttpsCredentials, Identity, PushCredentials, Step } from './types.ts';

/**
 * authorizeFlux proves that what Flux will read the repository with can read it, and returns it as the data
 * of Flux's git Secret. Over ssh that is Flux's own key: until someone registers it (read-only) on the git
 * host, the condition carries the public key to register. Over https it is the read credentials of
 * spec.git.readSecretRef (the push credentials only where spec.git.sharePushCredentials says so).
 */
export async function authorizeFlux(
  ctx: Context,
  identity: Identity,
  push: PushCredentials,
  knownHosts: string,
  fluxHttps?: HttpsCredentials,
): Promise<Step<FluxSecret>> {
  const { url, branch } = ctx.opts.git;
  if (push.transport === 'https') {
    const creds = fluxHttps ?? push;
    try {
      await ctx.git.readHead(url, branch, creds);
    } catch (err) {
      if (err instanceof GitError && err.kind === 'auth')
        throw new PhaseError(
          Reasons.GitAuthenticationFailed,
          `the credentials Flux reads with (Secret ${ctx.opts.git.readSecretName ?? ctx.opts.git.secretName}) ` +
            `cannot read ${redact(url)}`,
          { cause: err },
        );
      throw gitPhaseError(err);
    }
    const data: FluxSecret = { username: creds.username, password: creds.password };
    if (creds.ca) data['ca.crt'] = creds.ca;
    return { result: data, message: `Flux's credentials can read ${redact(url)}` };
  }
  const pushAuth: GitAuth = { transport: 'ssh', privateKey: push.privateKey, knownHosts };
  try {
    await ctx.git.readHead(url, branch, { transport: 'ssh', privateKey: identity.privateKey, knownHosts });
  } catch (err) {
    if (!(err instanceof GitError && (err.kind === 'auth' || err.kind === 'notFound'))) throw gitPhaseError(err);
    await explainRefusal(ctx, pushAuth);
    throw new PhaseError(
      Reasons.DeployKeyNotAuthorized,
      `register this public key as a read-only deploy key of ${redact(url)}: ${identity.publicKey}`,
      { cause: err, retryAfterMs: untilNextLook(ctx) },
    );
  }
  return {
    result: { identity: identity.privateKey, 'identity.pub': identity.publicKey, known_hosts: knownHosts },
    message: `Flux's key can read ${redact(url)}`,
  };
}

/**
 * untilNextLook is how long to wait before trying Flux's key again: soon after it was published (a git host's API
 * or a person registers it within seconds), then less and less often — half the time waited so far, 2 to 30 s.
 */
export function untilNextLook(ctx: Pick<Context, 'cb' | 'clock'>): number {
  return backoffWhileWaiting(ctx, C.DeployKeyAuthorized, Reasons.DeployKeyNotAuthorized, 2_000, 30_000);
}

/**
 * explainRefusal tells a missing repository and unusable push credentials apart from a key not yet
 * registered: git hosts answer "not found" to all three.
 */
async function explainRefusal(ctx: Context, pushAuth: GitAuth): Promise<void> {
  const { url, branch, secretName } = ctx.opts.git;
  try {
    await ctx.git.readHead(url, branch, pushAuth);
  } catch (err) {
    if (err instanceof GitError && err.kind === 'notFound')
      throw new PhaseError(
        Reasons.RepositoryNotFound,
        `the repository ${redact(url)} does not exist: create it (empty is fine)`,
        {
          cause: err,
        },
      );
    if (err instanceof GitError && err.kind === 'auth')
      throw new PhaseError(
        Reasons.GitAuthenticationFailed,
        `the push credentials in Secret ${secretName} cannot read ${redact(url)}`,
        {
          cause: err,
        },
      );
  }
}

/**
 * ENSURED_TTL_MS is how long a key found or registered on the git host is taken to be there without asking its
 * API again: a fleet reconciling every few seconds would otherwise spend the host's rate limit on lists. A key
 * removed by hand meanwhile shows as DeployKeyNotAuthorized and is registered again once this has passed.
 */
const ENSURED_TTL_MS = 10 * 60_000;
const recentlyEnsured = new Map<string, number>();

/** deployKeyTitle names Flux's deploy key on the git host after the cluster. */
export const deployKeyTitle = (ctx: Context) => `flux-${ctx.cb.metadata.namespace}-${ctx.cb.metadata.name}`;

/** connectProvider builds the git host's deploy-key API client from spec.git.provider (see providerOptions). */
export async function connectProvider(ctx: Context): Promise<Step<ProviderKeys | undefined>> {
  const opts = await providerOptions(ctx);
  if (!opts) return { result: undefined };
  try {
    return { result: ctx.provider(opts) };
  } catch (err) {
    throw providerPhaseError(err);
  }
}

/**
 * registerDeployKeys registers Flux's key — and, during a rotation, the next one — as read-only deploy keys
 * through the git host's API, titled after the cluster; a key already there (same key material) is kept.
 */
export async function registerDeployKeys(
  ctx: Context,
  identity: Identity,
  provider: ProviderKeys | undefined,
): Promise<Step> {
  if (!provider) return { result: undefined };
  const title = deployKeyTitle(ctx);
  const { type, url } = ctx.opts.git.provider;
  const seenKey = (key: string) => `${type}|${url ?? ''}|${ctx.opts.git.url}|${key}`;
  try {
    for (const key of [identity.publicKey, identity.next?.publicKey].filter((k): k is string => !!k)) {
      // Every reconcile (and every retry while Flux catches up) comes here: the API is asked again only after a while.
      const seen = recentlyEnsured.get(seenKey(key));
      if (seen && ctx.clock.now() - seen < ENSURED_TTL_MS) continue;
      // Some hosts (Gitea) refuse two keys with one title: during a rotation the next key gets its own.
      const { created } = await provider
        .ensure(title, key)
        .catch((err) =>
          err instanceof ProviderError && err.kind === 'conflict'
            ? provider.ensure(`${title}-${fingerprint(key).slice(7, 15)}`, key)
            : Promise.reject(err),
        );
      if (created) {
        ctx.log.info(
          { title, fingerprint: fingerprint(key) },
          'registered a read-only deploy key through the git host API',
        );
        await ctx.record(
          'Normal',
          'DeployKeyRegistered',
          `registered ${fingerprint(key)} as read-only deploy key ${title}`,
        );
      }
      if (recentlyEnsured.size >= 4096) recentlyEnsured.delete(recentlyEnsured.keys().next().value!);
      recentlyEnsured.set(seenKey(key), ctx.clock.now());
    }
  } catch (err) {
    throw providerPhaseError(err, ctx.clock.now());
  }
  return { result: undefined };
}
