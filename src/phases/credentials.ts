import { ConditionTypes, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { isPrivateKey } from '../ssh/keys.ts';
import { decodeSecret, type Context } from './context.ts';

/** PushCredentials are the operator's own write access to the repository, from spec.git.secretRef. */
export type PushCredentials =
  | { transport: 'ssh'; privateKey: string; knownHosts?: string }
  | { transport: 'https'; username: string; password: string };

/**
 * readPushCredentials reads the push Secret: `identity` (an SSH private key, with an optional
 * `known_hosts`) for ssh:// URLs, `username` and `password` — or a `bearerToken`/`password` alone — for https.
 */
export async function readPushCredentials(ctx: Context): Promise<PushCredentials> {
  const { opts, cb } = ctx;
  const ref = `Secret ${cb.metadata.namespace}/${opts.git.secretName}`;
  const secret = await ctx.mgmt.get('v1', 'Secret', cb.metadata.namespace, opts.git.secretName);
  if (!secret)
    throw new PhaseError(ConditionTypes.Committed, Reasons.GitCredentialsMissing, `${ref} (spec.git.secretRef) does not exist: create it with the push credentials`, {
      retryAfterMs: 30_000,
    });
  const data = decodeSecret(secret);
  if (opts.git.transport === 'ssh') {
    if (!data.identity || !isPrivateKey(data.identity))
      throw new PhaseError(ConditionTypes.Committed, Reasons.GitCredentialsInvalid, `${ref} must hold an SSH private key (OpenSSH or PEM, unencrypted) under the key "identity"`, {
        retryAfterMs: 60_000,
      });
    return { transport: 'ssh', privateKey: data.identity, knownHosts: data.known_hosts || undefined };
  }
  const password = data.password ?? data.bearerToken ?? data.token;
  if (!password)
    throw new PhaseError(ConditionTypes.Committed, Reasons.GitCredentialsInvalid, `${ref} must hold "username" and "password" (or a "bearerToken") for an https URL`, {
      retryAfterMs: 60_000,
    });
  return { transport: 'https', username: data.username ?? 'git', password };
}
