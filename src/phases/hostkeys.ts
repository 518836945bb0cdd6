import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { REPIN_HOST_KEYS_AT } from '../api/types.ts';
import {
  formatKnownHosts,
  hostKeyFingerprints,
  hostKeysChanged,
  parseKnownHosts,
  type HostKey,
} from '../ssh/hostkeys.ts';
import type { Context } from './context.ts';
import type { Identity, PushCredentials, Step } from './types.ts';

/**
 * trustHostKeys decides which host keys git may accept, and returns them as known_hosts. Keys the user
 * pinned (spec.git.knownHosts, or known_hosts in the push Secret) win; otherwise the first scan is pinned in
 * the identity Secret. Every reconcile scans again and refuses a host whose key changed — it never
 * re-trusts silently. An https repository is verified by TLS instead.
 */
export async function trustHostKeys(ctx: Context, identity: Identity, creds: PushCredentials): Promise<Step<string>> {
  if (creds.transport === 'https') return { result: '', message: 'https: the host is verified by TLS' };
  const { host, port } = ctx.opts.git;
  const userPinned = ctx.opts.git.knownHosts ?? creds.knownHosts;
  // A re-pin asked for through the annotation trusts the next scan once, in place of the keys the operator pinned.
  const repin = ctx.cb.metadata.annotations?.[REPIN_HOST_KEYS_AT];
  const repinning = !!repin && repin !== ctx.cb.status?.lastHandledRepinAt && !userPinned;
  const pinnedText = userPinned ?? (repinning ? undefined : identity.knownHosts);
  let pinned: HostKey[] | undefined;
  if (pinnedText) {
    try {
      pinned = parseKnownHosts(pinnedText);
    } catch (cause) {
      throw new PhaseError(
        Reasons.HostKeyInvalid,
        'the pinned known_hosts cannot be read: fix spec.git.knownHosts or the known_hosts of the push Secret',
        { cause },
      );
    }
  }
  let scanned: HostKey[];
  try {
    scanned = await ctx.git.scanHostKeys(host, port);
  } catch (cause) {
    throw new PhaseError(Reasons.GitHostUnreachable, `cannot reach the git host ${host}:${port} over SSH`, { cause });
  }
  if (pinned) {
    const changed = hostKeysChanged(pinned, scanned);
    if (changed) {
      const where = userPinned
        ? "spec.git.knownHosts (or the push Secret's known_hosts)"
        : `known_hosts in Secret ${identity.secretName}, or annotate the ClusterBootstrap with ` +
          `${REPIN_HOST_KEYS_AT}=<now> to pin the new keys once`;
      throw new PhaseError(
        Reasons.HostKeyChanged,
        `the SSH host key of ${host}:${port} changed since it was pinned — refusing to connect: ${changed}. If the ` +
          `change is legitimate, replace the pinned key in ${where}`,
      );
    }
  } else {
    await ctx.identity.pinKnownHosts(formatKnownHosts(scanned));
    ctx.log.info({ secret: identity.secretName }, 'pinned the git host keys');
    if (repinning)
      ctx.log.warn(
        { fingerprints: hostKeyFingerprints(scanned) },
        'pinned the git host keys again, as the annotation asked',
      );
  }
  const fingerprints = hostKeyFingerprints(pinned ?? scanned);
  const status = { hostKeys: { fingerprints }, ...(repin ? { lastHandledRepinAt: repin } : {}) };
  return { result: pinnedText ?? formatKnownHosts(scanned), message: `pinned ${fingerprints.join(', ')}`, status };
}
