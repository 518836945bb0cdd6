import { ConditionTypes, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { KubeError } from '../kube/client.ts';
import { fingerprint, generateKeyPair, isPrivateKey, type KeyPair } from '../ssh/keys.ts';
import { decodeSecret, ownerReference, type Context } from './context.ts';

/** Identity is the key Flux reads the repository with, and the host keys pinned for the git host. */
export interface Identity extends KeyPair {
  secretName: string;
  /** knownHosts pinned on the first scan of the git host, if any yet. */
  knownHosts?: string;
}

/** identitySecretName names the management-cluster Secret that holds a ClusterBootstrap's Flux identity. */
export const identitySecretName = (name: string) => `${name}-flux-identity`;

/**
 * ensureIdentity returns the Flux identity of the ClusterBootstrap, generating the key pair only when its
 * Secret does not exist. The Secret is created, never replaced, so two reconciles racing (or one restarted
 * half-way) end with the same single key: the loser of the create reads the winner's Secret.
 */
export async function ensureIdentity(ctx: Context): Promise<Identity> {
  const { cb, mgmt, opts } = ctx;
  const name = identitySecretName(cb.metadata.name);
  let secret = await mgmt.get('v1', 'Secret', cb.metadata.namespace, name);
  if (!secret) {
    const keys = await generateKeyPair({ ...opts.identity, comment: `flux-${cb.metadata.namespace}-${cb.metadata.name}` });
    try {
      secret = await mgmt.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name,
          namespace: cb.metadata.namespace,
          labels: { 'app.kubernetes.io/managed-by': 'flux-bootstrap-operator' },
          annotations: { 'fluxbootstrap.dev/algorithm': opts.identity.algorithm },
          ownerReferences: [ownerReference(cb)],
        },
        type: 'Opaque',
        stringData: { identity: keys.privateKey, 'identity.pub': keys.publicKey },
      });
      ctx.log.info({ secret: name, fingerprint: fingerprint(keys.publicKey) }, 'generated the Flux identity');
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
      secret = await mgmt.get('v1', 'Secret', cb.metadata.namespace, name);
    }
  }
  const data = decodeSecret(secret);
  if (!data.identity || !data['identity.pub'] || !isPrivateKey(data.identity))
    throw new PhaseError(
      ConditionTypes.IdentityReady,
      Reasons.InternalError,
      `Secret ${name} does not hold a usable SSH key pair (identity, identity.pub); delete it to have a new key generated`,
    );
  const publicKey = data['identity.pub'].trim();
  const algorithm = publicKey.split(' ')[0];
  ctx.status.identity = { publicKey, fingerprint: fingerprint(publicKey), algorithm, secretName: name };

  return { privateKey: data.identity, publicKey, secretName: name, knownHosts: data.known_hosts || undefined };
}

/** pinKnownHosts stores the host keys seen on the first scan in the identity Secret; later scans compare against them. */
export async function pinKnownHosts(ctx: Context, identity: Identity, knownHosts: string): Promise<void> {
  await ctx.mgmt.mergePatch('v1', 'Secret', ctx.cb.metadata.namespace, identity.secretName, {
    data: { known_hosts: Buffer.from(knownHosts).toString('base64') },
  });
  ctx.log.info({ secret: identity.secretName }, 'pinned the git host keys');
}
