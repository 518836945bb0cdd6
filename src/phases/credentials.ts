import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { decodeSecret } from '../kube/objects.ts';
import { isPrivateKey } from '../ssh/keys.ts';
import type { Context } from './context.ts';
import type { HttpsCredentials, PushCredentials, Step } from './types.ts';

/**
 * readPushCredentials reads the push Secret (spec.git.secretRef): `identity` (an SSH private key, with an
 * optional `known_hosts`) for ssh:// URLs; `username` and `password` — or a `bearerToken`/`password` alone —
 * and an optional `ca.crt` for https.
 */
export async function readPushCredentials(ctx: Context): Promise<Step<PushCredentials>> {
  const { opts } = ctx;
  const data = await readSecret(ctx, opts.git.secretName, 'spec.git.secretRef');
  if (opts.git.transport === 'ssh') {
    if (!data.identity || !isPrivateKey(data.identity))
      throw new PhaseError(
        Reasons.GitCredentialsInvalid,
        `Secret ${ctx.cb.metadata.namespace}/${opts.git.secretName} must hold an SSH private key (OpenSSH or PEM, ` +
          `unencrypted) under the key "identity"`,
        {
          retryAfterMs: 60_000,
        },
      );
    return { result: { transport: 'ssh', privateKey: data.identity, knownHosts: data.known_hosts || undefined } };
  }
  return { result: httpsCredentials(ctx, opts.git.secretName, data) };
}

/**
 * readFluxCredentials reads what Flux itself reads an https repository with: the Secret of
 * spec.git.readSecretRef, or — only when spec.git.sharePushCredentials says so — the push credentials.
 * Over ssh Flux reads with its own key, and there is nothing to read.
 */
export async function readFluxCredentials(
  ctx: Context,
  push: PushCredentials,
): Promise<Step<HttpsCredentials | undefined>> {
  const { git } = ctx.opts;
  if (push.transport === 'ssh' || !git.readSecretName) return { result: push.transport === 'https' ? push : undefined };
  return {
    result: httpsCredentials(
      ctx,
      git.readSecretName,
      await readSecret(ctx, git.readSecretName, 'spec.git.readSecretRef'),
    ),
  };
}

async function readSecret(ctx: Context, name: string, field: string): Promise<Record<string, string>> {
  const secret = await ctx.mgmt.get('v1', 'Secret', ctx.cb.metadata.namespace, name);
  if (!secret)
    throw new PhaseError(
      Reasons.GitCredentialsMissing,
      `Secret ${ctx.cb.metadata.namespace}/${name} (${field}) does not exist: create it with the git credentials`,
      {
        retryAfterMs: 30_000,
      },
    );
  return decodeSecret(secret);
}

function httpsCredentials(ctx: Context, name: string, data: Record<string, string>): HttpsCredentials {
  const password = data.password ?? data.bearerToken ?? data.token;
  if (!password)
    throw new PhaseError(
      Reasons.GitCredentialsInvalid,
      `Secret ${ctx.cb.metadata.namespace}/${name} must hold "username" and "password" (or a "bearerToken") for an ` +
        `https URL`,
      {
        retryAfterMs: 60_000,
      },
    );
  return { transport: 'https', username: data.username ?? 'git', password, ca: data['ca.crt'] || undefined };
}
