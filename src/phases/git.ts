import { ConditionTypes, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError, redact } from '../git/repository.ts';
import { formatKnownHosts, hostKeyFingerprints, hostKeysChanged, parseKnownHosts, scanHostKeysShared, type HostKey } from '../ssh/hostkeys.ts';
import { componentsFor } from '../manifests/components.ts';
import { renderKustomization, renderSync } from '../manifests/sync.ts';
import type { PushCredentials } from './credentials.ts';
import { pinKnownHosts, type Identity } from './identity.ts';
import type { Context } from './context.ts';
import type { FileUpdate } from '../git/repository.ts';

const REASON_BY_KIND = {
  hostKey: Reasons.HostKeyChanged,
  auth: Reasons.GitAuthenticationFailed,
  notFound: Reasons.RepositoryNotFound,
  unreachable: Reasons.GitHostUnreachable,
  protected: Reasons.PushRejected,
  rejected: Reasons.PushRejected,
  other: Reasons.GitOperationFailed,
} as const;

/** gitPhaseError turns a GitError into the PhaseError of a phase, keeping git's own words as the cause. */
export function gitPhaseError(condition: string, err: unknown, hint = ''): PhaseError {
  if (!(err instanceof GitError)) return new PhaseError(condition, Reasons.GitOperationFailed, 'git failed', { cause: err });
  return new PhaseError(condition, REASON_BY_KIND[err.kind], `${err.message}${hint}`, { cause: err });
}

/**
 * trustHostKeys decides which host keys git may accept. Keys the user pinned (spec.git.knownHosts, or
 * known_hosts in the push Secret) win; otherwise the first scan is pinned in the identity Secret. Every
 * reconcile scans again and refuses a host whose key changed — it never re-trusts silently.
 */
export async function trustHostKeys(ctx: Context, identity: Identity, creds: PushCredentials): Promise<string> {
  const { host, port } = ctx.opts.git;
  const userPinned = ctx.opts.git.knownHosts ?? (creds.transport === 'ssh' ? creds.knownHosts : undefined);
  const pinnedText = userPinned ?? identity.knownHosts;
  let pinned: HostKey[] | undefined;
  if (pinnedText) {
    try {
      pinned = parseKnownHosts(pinnedText);
    } catch (cause) {
      throw new PhaseError(ConditionTypes.HostKeyTrusted, Reasons.HostKeyInvalid, 'the pinned known_hosts cannot be read: fix spec.git.knownHosts or the known_hosts of the push Secret', {
        cause,
        retryAfterMs: 60_000,
      });
    }
  }
  let scanned: HostKey[];
  try {
    scanned = await scanHostKeysShared(host, port);
  } catch (cause) {
    throw new PhaseError(ConditionTypes.HostKeyTrusted, Reasons.GitHostUnreachable, `cannot reach the git host ${host}:${port} over SSH`, { cause });
  }
  if (pinned) {
    const changed = hostKeysChanged(pinned, scanned);
    if (changed) {
      const where = userPinned ? 'spec.git.knownHosts (or the push Secret\'s known_hosts)' : `known_hosts in Secret ${identity.secretName}`;
      throw new PhaseError(
        ConditionTypes.HostKeyTrusted,
        Reasons.HostKeyChanged,
        `the SSH host key of ${host}:${port} changed since it was pinned — refusing to connect: ${changed}. If the change is legitimate, replace the pinned key in ${where}`,
        { retryAfterMs: 5 * 60_000 },
      );
    }
  } else {
    await pinKnownHosts(ctx, identity, formatKnownHosts(scanned));
  }
  ctx.status.hostKeys = { fingerprints: hostKeyFingerprints(pinned ?? scanned) };
  return pinnedText ?? formatKnownHosts(scanned);
}

/**
 * checkDeployKey proves that Flux's key can read the repository. Until someone registers it (read-only)
 * on the git host, the condition carries the public key to register, and the phase is retried.
 */
export async function checkDeployKey(ctx: Context, identity: Identity, creds: PushCredentials, knownHosts: string): Promise<void> {
  const { url, branch } = ctx.opts.git;
  try {
    await ctx.repos.readHead(url, branch, { transport: 'ssh', privateKey: identity.privateKey, knownHosts });
  } catch (err) {
    if (!(err instanceof GitError && (err.kind === 'auth' || err.kind === 'notFound'))) throw gitPhaseError(ConditionTypes.DeployKeyAuthorized, err);
    // Git hosts answer "not found" to a key that may not read; the push credentials tell the two apart.
    try {
      await ctx.repos.readHead(url, branch, creds.transport === 'ssh' ? { transport: 'ssh', privateKey: creds.privateKey, knownHosts } : creds);
    } catch (pushErr) {
      if (pushErr instanceof GitError && pushErr.kind === 'notFound')
        throw new PhaseError(ConditionTypes.DeployKeyAuthorized, Reasons.RepositoryNotFound, `the repository ${redact(url)} does not exist: create it (empty is fine)`, {
          cause: pushErr,
          retryAfterMs: 30_000,
        });
      if (pushErr instanceof GitError && pushErr.kind === 'auth')
        throw new PhaseError(ConditionTypes.DeployKeyAuthorized, Reasons.GitAuthenticationFailed, `the push credentials in Secret ${ctx.opts.git.secretName} cannot read ${redact(url)}`, {
          cause: pushErr,
          retryAfterMs: 30_000,
        });
    }
    throw new PhaseError(
      ConditionTypes.DeployKeyAuthorized,
      Reasons.DeployKeyNotAuthorized,
      `register this public key as a read-only deploy key of ${redact(url)}: ${identity.publicKey}`,
      { cause: err, retryAfterMs: 15_000 },
    );
  }
}

/** fluxFiles renders the three flux-system files for the ClusterBootstrap. */
export function fluxFiles(ctx: Context): FileUpdate[] {
  const { opts } = ctx;
  const dir = `${opts.git.path}/flux-system`;
  const components = componentsFor(opts.flux);
  const sync = renderSync({ ...opts.sync, namespace: opts.flux.namespace, url: opts.git.url, branch: opts.git.branch, path: opts.git.path });
  return [
    { path: `${dir}/gotk-components.yaml`, render: () => components },
    { path: `${dir}/gotk-sync.yaml`, render: () => sync },
    {
      path: `${dir}/kustomization.yaml`,
      render: (existing) => {
        try {
          return renderKustomization(existing);
        } catch (cause) {
          throw new PhaseError(ConditionTypes.Committed, Reasons.InvalidSpec, `${dir}/kustomization.yaml in the repository cannot be kept: fix it by hand`, {
            cause,
            retryAfterMs: 60_000,
          });
        }
      },
    },
  ];
}

/**
 * commitManifests writes the flux-system files and pushes one commit when they changed; the branch's head
 * is what Flux must end up at.
 */
export async function commitManifests(ctx: Context, creds: PushCredentials, knownHosts: string): Promise<string> {
  const { opts, cb } = ctx;
  const appendix = opts.git.messageAppendix ? `\n\n${opts.git.messageAppendix}` : '';
  try {
    const result = await ctx.repos.update({
      url: opts.git.url,
      branch: opts.git.branch,
      auth: creds.transport === 'ssh' ? { transport: 'ssh', privateKey: creds.privateKey, knownHosts } : creds,
      author: opts.git.author,
      message: `Bootstrap Flux ${opts.flux.version} on ${cb.metadata.namespace}/${cb.metadata.name}${appendix}`,
      files: fluxFiles(ctx),
    });
    if (result.pushed) ctx.log.info({ commit: result.head, branch: opts.git.branch }, 'pushed the flux-system manifests');
    // A restart between the push and the status write finds nothing to change: the head holds our push.
    if (result.pushed || !ctx.status.lastPushedCommit) {
      ctx.status.lastPushedCommit = result.head;
      ctx.status.lastPushedRevision = `${opts.git.branch}@sha1:${result.head}`;
    }
    return result.head;
  } catch (err) {
    if (err instanceof PhaseError) throw err;
    const hint = err instanceof GitError && err.kind === 'auth' ? `; the key in Secret ${opts.git.secretName} needs write access` : '';
    throw gitPhaseError(ConditionTypes.Committed, err, hint);
  }
}
