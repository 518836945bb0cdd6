import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError, redact, type GitAuth } from '../git/repository.ts';
import type { Context } from './context.ts';
import { gitPhaseError } from './errors.ts';
import type { FluxSecret, HttpsCredentials, Identity, PushCredentials, Step } from './types.ts';

/**
 * authorizeFlux proves that what Flux will read the repository with can read it, and returns it as the data
 * of Flux's git Secret. Over ssh that is Flux's own key: until someone registers it (read-only) on the git
 * host, the condition carries the public key to register. Over https it is the read credentials of
 * spec.git.readSecretRef (the push credentials only where spec.git.sharePushCredentials says so).
 */
export async function authorizeFlux(ctx: Context, identity: Identity, push: PushCredentials, knownHosts: string, fluxHttps?: HttpsCredentials): Promise<Step<FluxSecret>> {
  const { url } = ctx.opts.git;
  if (push.transport === 'https') {
    const creds = fluxHttps ?? push;
    try {
      await ctx.repos.readHead(url, ctx.opts.git.branch, creds);
    } catch (err) {
      if (err instanceof GitError && err.kind === 'auth')
        throw new PhaseError(Reasons.GitAuthenticationFailed, `the credentials Flux reads with (Secret ${ctx.opts.git.readSecretName ?? ctx.opts.git.secretName}) cannot read ${redact(url)}`, {
          cause: err,
          retryAfterMs: 30_000,
        });
      throw gitPhaseError(err);
    }
    const data: FluxSecret = { username: creds.username, password: creds.password };
    if (creds.ca) data['ca.crt'] = creds.ca;
    return { result: data, message: `Flux's credentials can read ${redact(url)}` };
  }
  const pushAuth: GitAuth = { transport: 'ssh', privateKey: push.privateKey, knownHosts };
  try {
    await ctx.repos.readHead(url, ctx.opts.git.branch, { transport: 'ssh', privateKey: identity.privateKey, knownHosts });
  } catch (err) {
    if (!(err instanceof GitError && (err.kind === 'auth' || err.kind === 'notFound'))) throw gitPhaseError(err);
    await explainRefusal(ctx, pushAuth);
    throw new PhaseError(Reasons.DeployKeyNotAuthorized, `register this public key as a read-only deploy key of ${redact(url)}: ${identity.publicKey}`, {
      cause: err,
      retryAfterMs: 15_000,
    });
  }
  return { result: { identity: identity.privateKey, 'identity.pub': identity.publicKey, known_hosts: knownHosts }, message: `Flux's key can read ${redact(url)}` };
}

/** explainRefusal tells a missing repository and unusable push credentials apart from a key not yet registered: git hosts answer "not found" to all three. */
async function explainRefusal(ctx: Context, pushAuth: GitAuth): Promise<void> {
  const { url, branch, secretName } = ctx.opts.git;
  try {
    await ctx.repos.readHead(url, branch, pushAuth);
  } catch (err) {
    if (err instanceof GitError && err.kind === 'notFound')
      throw new PhaseError(Reasons.RepositoryNotFound, `the repository ${redact(url)} does not exist: create it (empty is fine)`, { cause: err, retryAfterMs: 30_000 });
    if (err instanceof GitError && err.kind === 'auth')
      throw new PhaseError(Reasons.GitAuthenticationFailed, `the push credentials in Secret ${secretName} cannot read ${redact(url)}`, { cause: err, retryAfterMs: 30_000 });
  }
}
