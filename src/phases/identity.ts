import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { KubeError } from '../kube/client.ts';
import { decodeSecret, ownerReference } from '../kube/objects.ts';
import { fingerprint, generateKeyPair, isPrivateKey } from '../ssh/keys.ts';
import { ROTATE_IDENTITY_AT } from '../api/types.ts';
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
    const keys = await generateKeyPair({
      ...opts.identity,
      comment: `flux-${cb.metadata.namespace}-${cb.metadata.name}`,
    });
    try {
      secret = await mgmt.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name,
          namespace: cb.metadata.namespace,
          labels: { 'app.kubernetes.io/managed-by': 'flux-bootstrap-operator' },
          annotations: {
            'fluxbootstrap.dev/algorithm': opts.identity.algorithm,
            [CREATED_AT]: new Date().toISOString(),
          },
          ownerReferences: [ownerReference(cb)],
        },
        type: 'Opaque',
        stringData: { identity: keys.privateKey, 'identity.pub': keys.publicKey },
      });
      ctx.log.info({ secret: name, fingerprint: fingerprint(keys.publicKey) }, 'generated the Flux identity');
      if (cb.status?.identity)
        await ctx.record(
          'Warning',
          'DriftRepaired',
          `Secret ${name} was missing: made a new key ${fingerprint(keys.publicKey)}, which Flux reads with once it ` +
            `is registered`,
        );
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
      secret = await mgmt.get('v1', 'Secret', cb.metadata.namespace, name);
    }
  }
  let data = decodeSecret(secret);
  if (!data.identity || !data['identity.pub'] || !isPrivateKey(data.identity))
    throw new PhaseError(
      Reasons.InternalError,
      `Secret ${name} does not hold a usable SSH key pair (identity, identity.pub); delete it to have a new key ` +
        `generated`,
    );
  const createdAt = secret.metadata.annotations?.[CREATED_AT] ?? secret.metadata.creationTimestamp;
  if (rotationDue(ctx, data, createdAt)) {
    secret = await beginRotation(ctx, secret);
    data = decodeSecret(secret);
  }
  const identity = identityOf(name, data);
  const print = fingerprint(identity.publicKey);
  const algorithm = identity.publicKey.split(' ')[0];
  const stale = algorithm.includes(opts.identity.algorithm)
    ? ''
    : `; it is ${algorithm}, not ${opts.identity.algorithm} as spec.identity asks: rotate it (annotate ` +
      `${ROTATE_IDENTITY_AT}) to have a new one made`;
  const nextRotationAt =
    opts.identity.rotateEveryMs && createdAt
      ? new Date(Date.parse(createdAt) + opts.identity.rotateEveryMs).toISOString()
      : undefined;
  const rotating = identity.next
    ? `; rotating to ${fingerprint(identity.next.publicKey)}`
    : identity.previous
      ? `; retiring ${fingerprint(identity.previous)}`
      : '';
  return {
    result: identity,
    message: `Flux reads with ${print} from Secret ${name}${rotating}${stale}`,
    status: {
      identity: {
        publicKey: identity.publicKey,
        fingerprint: print,
        algorithm,
        secretName: name,
        createdAt,
        nextRotationAt,
        rotatingTo: identity.next ? fingerprint(identity.next.publicKey) : undefined,
      },
    },
  };
}

/** CREATED_AT is the identity Secret's annotation of when its current key was made. */
const CREATED_AT = 'fluxbootstrap.dev/created-at';

function identityOf(secretName: string, data: Record<string, string>): Identity {
  return {
    privateKey: data.identity,
    publicKey: data['identity.pub'].trim(),
    secretName,
    knownHosts: data.known_hosts || undefined,
    next:
      data['next.identity'] && data['next.identity.pub']
        ? { privateKey: data['next.identity'], publicKey: data['next.identity.pub'].trim() }
        : undefined,
    previous: data['previous.identity.pub']?.trim() || undefined,
    switchedAt: data['rotation.switchedAt'] || undefined,
    rotationRequest: data['rotation.requestedAt'] || undefined,
  };
}

/**
 * rotationDue is true when no rotation is under way and the annotation asks for one, or spec.identity.rotateEvery has
 * passed.
 */
function rotationDue(ctx: Context, data: Record<string, string>, createdAt: string | undefined): boolean {
  if (data['next.identity'] || data['previous.identity.pub']) return false;
  const requested = ctx.cb.metadata.annotations?.[ROTATE_IDENTITY_AT];
  if (requested && requested !== ctx.cb.status?.lastHandledRotateAt) return true;
  const every = ctx.opts.identity.rotateEveryMs;
  return !!every && !!createdAt && Date.now() >= Date.parse(createdAt) + every;
}

/**
 * beginRotation makes the next key and keeps it beside the current one in the identity Secret. The write is
 * guarded by the Secret's resourceVersion, so a restarted or racing reconcile never makes a second one.
 */
async function beginRotation(ctx: Context, secret: any): Promise<any> {
  const { cb, opts, mgmt } = ctx;
  const keys = await generateKeyPair({
    ...opts.identity,
    comment: `flux-${cb.metadata.namespace}-${cb.metadata.name}`,
  });
  const requested = cb.metadata.annotations?.[ROTATE_IDENTITY_AT] ?? '';
  try {
    const updated = await mgmt.mergePatch('v1', 'Secret', cb.metadata.namespace, secret.metadata.name, {
      metadata: { resourceVersion: secret.metadata.resourceVersion },
      stringData: {
        'next.identity': keys.privateKey,
        'next.identity.pub': keys.publicKey,
        'rotation.requestedAt': requested,
      },
    });
    ctx.log.info(
      { secret: secret.metadata.name, next: fingerprint(keys.publicKey) },
      'rotating the Flux identity: made the next key',
    );
    await ctx.record(
      'Normal',
      'RotationStarted',
      `made the next key ${fingerprint(keys.publicKey)}; Flux keeps the current one until the new one reads`,
    );
    return updated;
  } catch (err) {
    if (!(err instanceof KubeError && err.code === 409)) throw err;
    return mgmt.get('v1', 'Secret', cb.metadata.namespace, secret.metadata.name);
  }
}

/**
 * switchKeys makes the next key the current one once it can read the repository: the current key becomes
 * `previous` (still registered, so Flux is never left with a key the host refuses), and the switch time
 * asks Flux to fetch again with the new key. Until the next key reads, the current one stays and the
 * condition says what to register.
 */
export async function switchKeys(ctx: Context, identity: Identity, knownHosts: string): Promise<Step<Identity>> {
  const next = identity.next!;
  try {
    await ctx.repos.readHead(ctx.opts.git.url, ctx.opts.git.branch, {
      transport: 'ssh',
      privateKey: next.privateKey,
      knownHosts,
    });
  } catch (cause) {
    throw new PhaseError(
      Reasons.DeployKeyNotAuthorized,
      `rotating Flux's key: register this new public key as a read-only deploy key of the repository: ` +
        `${next.publicKey} — Flux keeps reading with the current key until then`,
      { cause, retryAfterMs: 15_000 },
    );
  }
  const switchedAt = new Date().toISOString();
  await ctx.mgmt.mergePatch('v1', 'Secret', ctx.cb.metadata.namespace, identity.secretName, {
    metadata: { annotations: { [CREATED_AT]: switchedAt } },
    stringData: {
      identity: next.privateKey,
      'identity.pub': next.publicKey,
      'previous.identity.pub': identity.publicKey,
      'rotation.switchedAt': switchedAt,
    },
    data: { 'next.identity': null, 'next.identity.pub': null },
  });
  ctx.log.info(
    { secret: identity.secretName, current: fingerprint(next.publicKey), previous: fingerprint(identity.publicKey) },
    'switched Flux to the new key',
  );
  const switched: Identity = { ...identity, ...next, next: undefined, previous: identity.publicKey, switchedAt };
  return {
    result: switched,
    message: `Flux reads with ${fingerprint(next.publicKey)}; retiring ${fingerprint(identity.publicKey)}`,
  };
}

/**
 * retirePreviousKey ends a rotation once Flux has read with the new key: the old key is removed from the git
 * host through its API (`remove`), or its fingerprint is given for a person to revoke; then the identity
 * Secret forgets it and the rotation request is echoed in status.
 */
export async function retirePreviousKey(
  ctx: Context,
  identity: Identity,
  remove?: (publicKey: string) => Promise<void>,
): Promise<Step> {
  const old = fingerprint(identity.previous!);
  if (remove) await remove(identity.previous!);
  await ctx.mgmt.mergePatch('v1', 'Secret', ctx.cb.metadata.namespace, identity.secretName, {
    data: { 'previous.identity.pub': null, 'rotation.switchedAt': null, 'rotation.requestedAt': null },
  });
  const done = remove ? `removed the old deploy key ${old}` : `revoke the old deploy key ${old} on the git host`;
  await ctx.record('Normal', 'KeyRotated', `Flux reads with ${fingerprint(identity.publicKey)}; ${done}`);
  ctx.log.info({ previous: old }, 'rotation done');
  return {
    result: undefined,
    status: identity.rotationRequest ? { lastHandledRotateAt: identity.rotationRequest } : {},
  };
}
