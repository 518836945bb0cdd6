import { ROTATE_SOPS_AT } from '../api/types.ts';
import { SOPS_SECRET } from '../api/validate.ts';
import { ageKeyOf, generateAgeKey } from '../sops/keys.ts';
import type { Context, StoredIdentity } from './context.ts';
import type { Identity, Sops, Step } from './types.ts';

/**
 * ensureSopsKey returns the cluster's age key, made on the first pass with spec.sops enabled and kept in the
 * identity Secret beside Flux's SSH key. A rotation (the rotate-sops-at annotation) makes a new key at once: files
 * are encrypted for it from the next commit of .sops.yaml, and the old key stays in the target until no file of
 * the cluster's folder is encrypted for it (settleSopsRotation). Both writes are guarded by the Secret's version, so
 * racing or restarted reconciles keep one key. Without spec.sops there is nothing to do: a key made earlier is kept,
 * so turning it on again decrypts what was encrypted before.
 */
export async function ensureSopsKey(ctx: Context, identity: Identity): Promise<Step<Sops | undefined>> {
  const { opts, cb } = ctx;
  if (!opts.sops.enabled) return { result: undefined };
  let keys = identity.sops;
  let current = await ageKeyOf(keys?.key);
  const requested = cb.metadata.annotations?.[ROTATE_SOPS_AT];
  const rotate = !!current && !keys!.previous && !!requested && requested !== cb.status?.lastHandledSopsRotateAt;
  if (!current || rotate) {
    // Decided again on the Secret as it is now: another reconcile may have made the key, or begun the rotation.
    const stored = await freshIdentity(ctx);
    keys = stored.sops;
    current = await ageKeyOf(keys?.key);
    if (!current || (rotate && !keys!.previous)) {
      const made = await generateAgeKey();
      const old = current;
      const next = old
        ? { key: made.identity, previous: old.identity, requestedAt: requested }
        : { key: made.identity };
      keys = (await ctx.identity.storeSops(stored, next)).sops;
      current = keys?.key === made.identity ? made : await ageKeyOf(keys?.key);
      if (current === made) {
        ctx.log.info({ recipient: made.recipient }, old ? 'rotating the SOPS key' : 'made the SOPS key');
        if (old)
          await ctx.record(
            'Normal',
            'SopsRotationStarted',
            `new SOPS recipient ${made.recipient}; the target keeps ${old.recipient} until no file is ` +
              'encrypted for it',
          );
      }
    }
  }
  if (!current) throw new Error(`Secret ${ctx.identity.secretName} holds no usable SOPS age key`);
  const previous = await ageKeyOf(keys!.previous);
  const recipients = [current.recipient, ...opts.sops.extraRecipients.filter((r) => r !== current.recipient)];
  const owned = [current.recipient, ...(previous ? [previous.recipient] : [])];
  const rule = { recipients, owned, cluster: `${cb.metadata.namespace}/${cb.metadata.name}` };
  return {
    result: { current, previous, rule, requestedAt: keys!.requestedAt },
    status: {
      sops: {
        recipient: current.recipient,
        secretName: SOPS_SECRET,
        ...(previous && { previousRecipient: previous.recipient, pendingFiles: cb.status?.sops?.pendingFiles }),
      },
    },
  };
}

/** freshIdentity reads the identity Secret again, for a guarded write. */
async function freshIdentity(ctx: Context): Promise<StoredIdentity> {
  const stored = await ctx.identity.read();
  if (!stored) throw new Error(`Secret ${ctx.identity.secretName} disappeared during the reconcile`);
  return stored;
}

/**
 * settleSopsRotation ends a SOPS rotation once no file of the cluster's folder is encrypted for the old key (`pending`
 * lists those the commit's scan found): the old key leaves the identity Secret, and the next apply leaves the
 * target with the new one alone. Until then status.sops.pendingFiles names the files to re-encrypt
 * (`sops updatekeys`).
 */
export async function settleSopsRotation(ctx: Context, sops: Sops, pending: string[]): Promise<Step<Sops>> {
  const { current, previous } = sops;
  if (!previous) return { result: sops };
  const status = { recipient: current.recipient, secretName: SOPS_SECRET, previousRecipient: previous.recipient };
  if (pending.length > 0)
    return {
      result: sops,
      status: { sops: { ...status, pendingFiles: pending.slice(0, 20) } },
    };
  await ctx.identity.storeSops(await freshIdentity(ctx), { key: current.identity });
  await ctx.record(
    'Normal',
    'SopsKeyRotated',
    `no file is encrypted for ${previous.recipient} any more: the target keeps ${current.recipient} alone`,
  );
  ctx.log.info({ previous: previous.recipient, recipient: current.recipient }, 'SOPS rotation done');
  return {
    result: { ...sops, previous: undefined },
    status: {
      sops: { recipient: current.recipient, secretName: SOPS_SECRET },
      ...(sops.requestedAt && { lastHandledSopsRotateAt: sops.requestedAt }),
    },
  };
}
