import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { KubeError } from '../kube/client.ts';
import { decodeSecret, ownerReference } from '../kube/objects.ts';
import { fingerprint, generateKeyPair, isPrivateKey } from '../ssh/keys.ts';
import type { Context } from './context.ts';
import type { Identity, Step } from './types.ts';

/** identitySecretName names the management-cluster Secret that holds a ClusterBootstrap's Flux identity. */
export const identitySecretName = (name: string) => `${name}-flux-identity`;

/**
 * ensureIdentity returns the Flux identity of the ClusterBootstrap, generating the key pair only when its
 * Secret does not exist. The Secret is created, never replaced, so two reconciles racing (or one restarted
 * half-way) end with the same single key: the loser of the create reads the winner's Secret. Keys are never
 * replaced behind the user's back either: a changed spec.identity is reported, not applied.
 */
export async function ensureIdentity(ctx: Context): Promise<Step<Identity>> {
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
    throw new PhaseError(Reasons.InternalError, `Secret ${name} does not hold a usable SSH key pair (identity, identity.pub); delete it to have a new key generated`);
  const publicKey = data['identity.pub'].trim();
  const algorithm = publicKey.split(' ')[0];
  const print = fingerprint(publicKey);
  const stale = algorithm.includes(opts.identity.algorithm)
    ? ''
    : `; it is ${algorithm}, not ${opts.identity.algorithm} as spec.identity asks: delete the Secret to have a new key made, then register that one`;
  return {
    result: { privateKey: data.identity, publicKey, secretName: name, knownHosts: data.known_hosts || undefined },
    message: `Flux reads with ${print} from Secret ${name}${stale}`,
    status: { identity: { publicKey, fingerprint: print, algorithm, secretName: name } },
  };
}
