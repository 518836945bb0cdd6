import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { fingerprint, generateKeyPair } from '../ssh/keys.ts';
import { ROTATE_IDENTITY_AT } from '../api/types.ts';
import type { Context, ProviderKeys, StoredIdentity } from './context.ts';
import { providerPhaseError } from './errors.ts';
import type { Identity, Step } from './types.ts';

/**
 * ensureIdentity returns the Flux identity of the ClusterBootstrap, generating the key pair only when its
 * Secret does not exist. The Secret is created, never replaced, so two reconciles racing (or one restarted
 * half-way) end with the same single key: the loser of the create reads the winner's Secret. Keys are never
 * replaced behind the user's back either: a changed spec.identity is reported, not applied.
 */
export async function ensureIdentity(ctx: Context): Promise<Step<Identity>> {
  const { cb, opts, identity: store } = ctx;
  let stored = await store.read();
  if (!stored) {
    const keys = await newKeyPair(ctx);
    stored = await store.create(keys, opts.identity.algorithm, new Date(ctx.clock.now()).toISOString());
    if (stored.publicKey === keys.publicKey.trim()) {
      ctx.log.info(
        { secret: store.secretName, fingerprint: fingerprint(keys.publicKey) },
        'generated the Flux identity',
      );
      if (cb.status?.identity)
        await ctx.record(
          'Warning',
          'DriftRepaired',
          `Secret ${store.secretName} was missing: made a new key ${fingerprint(keys.publicKey)}, ` +
            'which Flux reads with once it is registered',
        );
    }
  }
  const { createdAt } = stored;
  if (rotationDue(ctx, stored)) stored = await beginRotation(ctx, stored);
  const print = fingerprint(stored.publicKey);
  const algorithm = stored.publicKey.split(' ')[0];
  const stale = algorithm.includes(opts.identity.algorithm)
    ? ''
    : `; it is ${algorithm}, not ${opts.identity.algorithm} as spec.identity asks: rotate it (annotate ` +
      `${ROTATE_IDENTITY_AT}) to have a new one made`;
  const nextRotationAt =
    opts.identity.rotateEveryMs && createdAt
      ? new Date(Date.parse(createdAt) + opts.identity.rotateEveryMs).toISOString()
      : undefined;
  const rotating = stored.next
    ? `; rotating to ${fingerprint(stored.next.publicKey)}`
    : stored.previous
      ? `; retiring ${fingerprint(stored.previous)}`
      : '';
  const { createdAt: _c, resourceVersion: _r, ...identity } = stored;
  return {
    result: identity,
    message: `Flux reads with ${print} from Secret ${store.secretName}${rotating}${stale}`,
    status: {
      identity: {
        publicKey: stored.publicKey,
        fingerprint: print,
        algorithm,
        secretName: store.secretName,
        createdAt,
        nextRotationAt,
        rotatingTo: stored.next ? fingerprint(stored.next.publicKey) : undefined,
      },
    },
  };
}

function newKeyPair(ctx: Context) {
  const { cb, opts } = ctx;
  return generateKeyPair({ ...opts.identity, comment: `flux-${cb.metadata.namespace}-${cb.metadata.name}` });
}

/**
 * rotationDue is true when no rotation is under way and the annotation asks for one, or spec.identity.rotateEvery has
 * passed.
 */
function rotationDue(ctx: Context, identity: StoredIdentity): boolean {
  if (identity.next || identity.previous) return false;
  const requested = ctx.cb.metadata.annotations?.[ROTATE_IDENTITY_AT];
  if (requested && requested !== ctx.cb.status?.lastHandledRotateAt) return true;
  const every = ctx.opts.identity.rotateEveryMs;
  return !!every && !!identity.createdAt && ctx.clock.now() >= Date.parse(identity.createdAt) + every;
}

/**
 * beginRotation makes the next key and keeps it beside the current one in the identity Secret. The write is
 * guarded by the Secret's resourceVersion, so a restarted or racing reconcile never makes a second one.
 */
async function beginRotation(ctx: Context, current: StoredIdentity): Promise<StoredIdentity> {
  const keys = await newKeyPair(ctx);
  const requested = ctx.cb.metadata.annotations?.[ROTATE_IDENTITY_AT] ?? '';
  const updated = await ctx.identity.beginRotation(current, keys, requested);
  if (updated.next?.publicKey === keys.publicKey.trim()) {
    ctx.log.info(
      { secret: ctx.identity.secretName, next: fingerprint(keys.publicKey) },
      'rotating the Flux identity: made the next key',
    );
    await ctx.record(
      'Normal',
      'RotationStarted',
      `made the next key ${fingerprint(keys.publicKey)}; Flux keeps the current one until the new one reads`,
    );
  }
  return updated;
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
    await ctx.git.readHead(ctx.opts.git.url, ctx.opts.git.branch, {
      transport: 'ssh',
      privateKey: next.privateKey,
      knownHosts,
    });
  } catch (cause) {
    throw new PhaseError(
      Reasons.DeployKeyNotAuthorized,
      `rotating Flux's key: register this new public key as a read-only deploy key of the repository: ` +
        `${next.publicKey} — Flux keeps reading with the current key until then`,
      { cause },
    );
  }
  const switchedAt = new Date(ctx.clock.now()).toISOString();
  await ctx.identity.switchToNext(identity, switchedAt);
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
 * host through its API (`provider`), or its fingerprint is given for a person to revoke; then the identity
 * Secret forgets it and the rotation request is echoed in status.
 */
export async function retirePreviousKey(ctx: Context, identity: Identity, provider?: ProviderKeys): Promise<Step> {
  const old = fingerprint(identity.previous!);
  if (provider) await provider.remove(identity.previous!).catch((err) => Promise.reject(providerPhaseError(err)));
  await ctx.identity.retirePrevious();
  const done = provider ? `removed the old deploy key ${old}` : `revoke the old deploy key ${old} on the git host`;
  await ctx.record('Normal', 'KeyRotated', `Flux reads with ${fingerprint(identity.publicKey)}; ${done}`);
  ctx.log.info({ previous: old }, 'rotation done');
  return {
    result: undefined,
    status: identity.rotationRequest ? { lastHandledRotateAt: identity.rotationRequest } : {},
  };
}
