import { isPrivateKey } from '../ssh/keys.ts';
import { invalidRef, readRef, type Context } from './context.ts';
import type { HttpsCredentials, PushCredentials, Step } from './types.ts';

const GIT_CREDENTIALS = 'the git credentials';

/**
 * readPushCredentials reads the push Secret (spec.git.secretRef): `identity` (an SSH private key, with an
 * optional `known_hosts`) for ssh:// URLs; `username` and `password` — or a `bearerToken`/`password` alone —
 * and an optional `ca.crt` for https.
 */
export async function readPushCredentials(ctx: Context): Promise<Step<PushCredentials>> {
  const { opts } = ctx;
  const ref = { name: opts.git.secretName, field: 'spec.git.secretRef', what: GIT_CREDENTIALS };
  const data = await readRef(ctx, ref);
  if (opts.git.transport === 'ssh') {
    if (!data.identity || !isPrivateKey(data.identity))
      throw invalidRef(ctx, ref, 'must hold an SSH private key (OpenSSH or PEM, unencrypted) under the key "identity"');
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
  const ref = { name: git.readSecretName, field: 'spec.git.readSecretRef', what: GIT_CREDENTIALS };
  return { result: httpsCredentials(ctx, git.readSecretName, await readRef(ctx, ref)) };
}

function httpsCredentials(ctx: Context, name: string, data: Record<string, string>): HttpsCredentials {
  const password = data.password ?? data.bearerToken ?? data.token;
  if (!password)
    throw invalidRef(ctx, { name }, 'must hold "username" and "password" (or a "bearerToken") for an https URL');
  return { transport: 'https', username: data.username ?? 'git', password, ca: data['ca.crt'] || undefined };
}
