import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError } from '../git/errors.ts';
import type { GitAuth } from '../git/types.ts';
import { fluxFiles } from '../manifests/files.ts';
import { KustomizationError } from '../manifests/sync.ts';
import type { Context } from './context.ts';
import { gitPhaseError } from './errors.ts';
import type { PushCredentials, Step } from './types.ts';

/**
 * commitManifests writes the flux-system files and pushes one commit when they changed; it returns the
 * branch's head, which is what Flux must end up at.
 */
export async function commitManifests(ctx: Context, creds: PushCredentials, knownHosts: string): Promise<Step<string>> {
  const { opts, cb } = ctx;
  const appendix = opts.git.messageAppendix ? `\n\n${opts.git.messageAppendix}` : '';
  const auth: GitAuth =
    creds.transport === 'ssh' ? { transport: 'ssh', privateKey: creds.privateKey, knownHosts } : creds;
  let head: string;
  let pushed: boolean;
  let attempts: number;
  try {
    ({ head, pushed, attempts } = await ctx.git.update({
      url: opts.git.url,
      branch: opts.git.branch,
      auth,
      author: opts.git.author,
      message: `Bootstrap Flux ${opts.flux.version} on ${cb.metadata.namespace}/${cb.metadata.name}${appendix}`,
      files: fluxFiles(opts),
    }));
  } catch (err) {
    if (err instanceof KustomizationError)
      throw new PhaseError(
        Reasons.KustomizationInvalid,
        `${opts.git.path}/flux-system/kustomization.yaml in the repository cannot be kept: fix it by hand`,
        { cause: err },
      );
    const hint =
      err instanceof GitError && err.kind === 'auth'
        ? `; the credentials in Secret ${opts.git.secretName} need write access`
        : '';
    throw gitPhaseError(err, hint);
  }
  if (pushed) ctx.log.info({ commit: head, branch: opts.git.branch, attempts }, 'pushed the flux-system manifests');
  // A push with the spec unchanged since the last one means someone changed the files in git: said, not silent.
  if (pushed && cb.status?.lastPushedCommit && cb.status.observedGeneration === cb.metadata.generation)
    await ctx.record(
      'Warning',
      'DriftRepaired',
      `restored ${opts.git.path}/flux-system in the repository: it was changed outside the operator (commit ${head})`,
    );
  // A restart between the push and the status write finds nothing to change: the head holds our push.
  const status =
    pushed || !cb.status?.lastPushedCommit
      ? { lastPushedCommit: head, lastPushedRevision: `${opts.git.branch}@sha1:${head}` }
      : {};
  return {
    result: head,
    message: `${opts.git.path}/flux-system is up to date at ${opts.git.branch}@sha1:${head}`,
    status,
  };
}
