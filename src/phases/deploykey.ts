import { ConditionTypes as C, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError, redact, type GitAuth } from '../git/repository.ts';
import type { Context } from './context.ts';
import { gitPhaseError } from './errors.ts';
import type { FluxSecret, HttpsCredentials, Identity, PushCredentials, Step } from './types.ts';
import {
  ensureDeployKey,
  providerFor,
  ProviderError,
  removeDeployKeys,
  type DeployKeyProvider,
} from '../providers/index.ts';
import { decodeSecret } from '../kube/objects.ts';
import { fingerprint } from '../ssh/keys.ts';
import type { Reason } from '../api/conditions.ts';

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
  const { url } = ctx.opts.git;
  if (push.transport === 'https') {
    const creds = fluxHttps ?? push;
    try {
      await ctx.repos.readHead(url, ctx.opts.git.branch, creds);
    } catch (err) {
      if (err instanceof GitError && err.kind === 'auth')
        throw new PhaseError(
          Reasons.GitAuthenticationFailed,
          `the credentials Flux reads with (Secret ${ctx.opts.git.readSecretName ?? ctx.opts.git.secretName}) ` +
            `cannot read ${redact(url)}`,
          {
            cause: err,
            retryAfterMs: 30_000,
          },
        );
      throw gitPhaseError(err);
    }
    const data: FluxSecret = { username: creds.username, password: creds.password };
    if (creds.ca) data['ca.crt'] = creds.ca;
    return { result: data, message: `Flux's credentials can read ${redact(url)}` };
  }
  const pushAuth: GitAuth = { transport: 'ssh', privateKey: push.privateKey, knownHosts };
  try {
    await ctx.repos.readHead(url, ctx.opts.git.branch, {
      transport: 'ssh',
      privateKey: identity.privateKey,
      knownHosts,
    });
  } catch (err) {
    if (!(err instanceof GitError && (err.kind === 'auth' || err.kind === 'notFound'))) throw gitPhaseError(err);
    await explainRefusal(ctx, pushAuth);
    throw new PhaseError(
      Reasons.DeployKeyNotAuthorized,
      `register this public key as a read-only deploy key of ${redact(url)}: ${identity.publicKey}`,
      {
        cause: err,
        retryAfterMs: untilNextLook(ctx),
      },
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
function untilNextLook(ctx: Context): number {
  const waiting = ctx.cb.status?.conditions?.find(
    (c) => c.type === C.DeployKeyAuthorized && c.status === 'False' && c.reason === Reasons.DeployKeyNotAuthorized,
  );
  const waitedMs = waiting ? Date.now() - Date.parse(waiting.lastTransitionTime ?? '') : 0;
  return Math.min(30_000, Math.max(2_000, Number.isFinite(waitedMs) ? waitedMs / 2 : 0));
}

/**
 * explainRefusal tells a missing repository and unusable push credentials apart from a key not yet registered: git
 * hosts answer "not found" to all three.
 */
async function explainRefusal(ctx: Context, pushAuth: GitAuth): Promise<void> {
  const { url, branch, secretName } = ctx.opts.git;
  try {
    await ctx.repos.readHead(url, branch, pushAuth);
  } catch (err) {
    if (err instanceof GitError && err.kind === 'notFound')
      throw new PhaseError(
        Reasons.RepositoryNotFound,
        `the repository ${redact(url)} does not exist: create it (empty is fine)`,
        { cause: err, retryAfterMs: 30_000 },
      );
    if (err instanceof GitError && err.kind === 'auth')
      throw new PhaseError(
        Reasons.GitAuthenticationFailed,
        `the push credentials in Secret ${secretName} cannot read ${redact(url)}`,
        { cause: err, retryAfterMs: 30_000 },
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

/**
 * connectProvider builds the git host's API client from spec.git.provider and the token in its Secret; a
 * `generic` provider has none, and Flux's key is then registered by a person.
 */
export async function connectProvider(ctx: Context): Promise<Step<DeployKeyProvider | undefined>> {
  const { provider, url } = ctx.opts.git;
  if (provider.type === 'generic' || !provider.secretName) return { result: undefined };
  const ref = `Secret ${ctx.cb.metadata.namespace}/${provider.secretName}`;
  const secret = await ctx.mgmt.get('v1', 'Secret', ctx.cb.metadata.namespace, provider.secretName);
  if (!secret)
    throw new PhaseError(
      Reasons.GitCredentialsMissing,
      `${ref} (spec.git.provider.secretRef) does not exist: create it with the API token under the key "token"`,
      { retryAfterMs: 30_000 },
    );
  const data = decodeSecret(secret);
  if (!data.token)
    throw new PhaseError(
      Reasons.GitCredentialsInvalid,
      `${ref} must hold the ${provider.type} API token under the key "token"`,
      { retryAfterMs: 60_000 },
    );
  try {
    return {
      result: providerFor({
        type: provider.type,
        apiUrl: provider.url,
        token: data.token,
        repoUrl: url,
        tokenRef: ref,
        caData: data['ca.crt'],
      }),
    };
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
  provider: DeployKeyProvider | undefined,
): Promise<Step> {
  if (!provider) return { result: undefined };
  const title = deployKeyTitle(ctx);
  const { type, url } = ctx.opts.git.provider;
  const seenKey = (key: string) => `${type}|${url ?? ''}|${ctx.opts.git.url}|${key}`;
  try {
    for (const key of [identity.publicKey, identity.next?.publicKey].filter((k): k is string => !!k)) {
      // Every reconcile (and every retry while Flux catches up) comes here: the API is asked again only after a while.
      const seen = recentlyEnsured.get(seenKey(key));
      if (seen && Date.now() - seen < ENSURED_TTL_MS) continue;
      // Some hosts (Gitea) refuse two keys with one title: during a rotation the next key gets its own.
      const { created } = await ensureDeployKey(provider, title, key).catch((err) =>
        err instanceof ProviderError && err.kind === 'conflict'
          ? ensureDeployKey(provider, `${title}-${fingerprint(key).slice(7, 15)}`, key)
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
      recentlyEnsured.set(seenKey(key), Date.now());
    }
  } catch (err) {
    throw providerPhaseError(err);
  }
  return { result: undefined };
}

/**
 * removeDeployKey returns the function that removes one of Flux's keys from the git host, or undefined without a
 * provider.
 */
export function removeDeployKey(
  ctx: Context,
  provider: DeployKeyProvider | undefined,
): ((publicKey: string) => Promise<void>) | undefined {
  if (!provider) return undefined;
  return async (publicKey) => {
    try {
      await removeDeployKeys(provider, { publicKey });
    } catch (err) {
      throw providerPhaseError(err);
    }
  };
}

const PROVIDER_REASONS: Record<string, Reason> = {
  unauthorized: Reasons.GitProviderAuthFailed,
  forbidden: Reasons.GitProviderAuthFailed,
  notFound: Reasons.RepositoryNotFound,
  rateLimited: Reasons.GitProviderRateLimited,
  invalid: Reasons.InvalidSpec,
};

/** providerPhaseError turns a provider's answer into a reason; a rate limit is retried when it ends. */
function providerPhaseError(err: unknown): PhaseError {
  if (!(err instanceof ProviderError))
    return new PhaseError(Reasons.GitProviderError, 'the git host API call failed', { cause: err });
  const reason = PROVIDER_REASONS[err.kind] ?? Reasons.GitProviderError;
  const retryAfterMs =
    err.kind === 'rateLimited'
      ? Math.max(err.retryAfterMs ?? 0, err.resetAt ? err.resetAt.getTime() - Date.now() : 0, 5_000)
      : reason === Reasons.GitProviderError
        ? undefined
        : 60_000;
  return new PhaseError(reason, err.message, {
    cause: err,
    retryAfterMs: reason === Reasons.InvalidSpec ? undefined : retryAfterMs,
  });
}

/**
 * unregisterDeployKeys removes Flux's keys (current, next and previous) from the git host through its API,
 * for the Uninstall deletion policy; without a provider there is nothing to remove.
 */
export async function unregisterDeployKeys(ctx: Context, identitySecretName: string): Promise<void> {
  const provider = (await connectProvider(ctx)).result;
  if (!provider) return;
  const data = decodeSecret(await ctx.mgmt.get('v1', 'Secret', ctx.cb.metadata.namespace, identitySecretName));
  const remove = removeDeployKey(ctx, provider)!;
  for (const key of [data['identity.pub'], data['next.identity.pub'], data['previous.identity.pub']])
    if (key?.trim()) await remove(key.trim());
  ctx.log.info({ title: deployKeyTitle(ctx) }, 'removed the deploy keys from the git host');
}
