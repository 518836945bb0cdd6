import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import type { ClusterBootstrapStatus } from '../api/types.ts';
import { GitError } from '../git/errors.ts';
import type { GitAuth, UpdateResult } from '../git/types.ts';
import { fluxFiles } from '../manifests/files.ts';
import { KustomizationError } from '../manifests/sync.ts';
import { SopsConfigError } from '../manifests/sops.ts';
import { invalidRef, readRef, type Context } from './context.ts';
import { isPrivateKey } from '../ssh/keys.ts';
import { gitPhaseError } from './errors.ts';
import type { Proposal, PushCredentials, Sops, Step } from './types.ts';

/** Committed is the branch's head after the commit, and the files still encrypted for a SOPS key being retired. */
export interface Committed {
  head: string;
  sopsPending: string[];
  /** proposal is the head branch the change waits on, in pull-request mode, until it is on the branch. */
  proposal?: Proposal;
}

/**
 * commitManifests writes the flux-system files (and .sops.yaml, with spec.sops) and pushes one commit when they
 * changed; it returns the branch's head, which is what Flux must end up at. During a SOPS rotation the same fetch
 * finds the files of the cluster's folder still encrypted for the old key.
 */
export async function commitManifests(
  ctx: Context,
  creds: PushCredentials,
  knownHosts: string,
  sops?: Sops,
): Promise<Step<Committed>> {
  const { opts, cb } = ctx;
  const appendix = opts.git.messageAppendix ? `\n\n${opts.git.messageAppendix}` : '';
  const auth: GitAuth =
    creds.transport === 'ssh' ? { transport: 'ssh', privateKey: creds.privateKey, knownHosts } : creds;
  const path = opts.git.path;
  const signingKey = await readSigningKey(ctx);
  const update = (proposeTo?: string) =>
    ctx.git.update({
      url: opts.git.url,
      branch: opts.git.branch,
      proposeTo,
      auth,
      signingKey,
      author: opts.git.author,
      message: `Bootstrap Flux ${opts.flux.version} on ${cb.metadata.namespace}/${cb.metadata.name}${appendix}`,
      files: fluxFiles(opts, sops?.rule),
      scan: sops?.previous && { path, needle: sops.previous.recipient, exclude: [`${path}/.sops.yaml`] },
    });
  // Pull-request mode: always, or once branch protection refused a push (and while its pull request is open).
  const pr = opts.git.pullRequest;
  const viaPr = pr && (pr.when === 'Always' || cb.status?.pullRequest?.state === 'open');
  const pushOrPropose = async (): Promise<UpdateResult> => {
    if (viaPr) return update(pr.branch);
    try {
      return await update();
    } catch (err) {
      if (!(pr && err instanceof GitError && err.kind === 'protected')) throw err;
      ctx.log.info({ branch: opts.git.branch }, 'the branch is protected: proposing the change in a pull request');
      return update(pr.branch);
    }
  };
  let result: UpdateResult;
  try {
    result = await pushOrPropose();
  } catch (err) {
    if (err instanceof KustomizationError)
      throw new PhaseError(
        Reasons.KustomizationInvalid,
        `${path}/flux-system/kustomization.yaml in the repository cannot be kept: fix it by hand`,
        { cause: err },
      );
    if (err instanceof SopsConfigError)
      throw new PhaseError(Reasons.SopsConfigInvalid, `${path}/.sops.yaml in the repository cannot be kept: fix it`, {
        cause: err,
      });
    const hint =
      err instanceof GitError && err.kind === 'auth'
        ? `; the credentials in Secret ${opts.git.secretName} need write access`
        : '';
    throw gitPhaseError(err, hint);
  }
  if (result.proposal) return { result: { head: result.head, sopsPending: [], proposal: result.proposal } };
  const { head, pushed, attempts, found } = result;
  if (pushed) ctx.log.info({ commit: head, branch: opts.git.branch, attempts }, 'pushed the flux-system manifests');
  // A push with the spec unchanged since the last one means someone changed the files in git: said, not silent.
  if (pushed && cb.status?.lastPushedCommit && cb.status.observedGeneration === cb.metadata.generation)
    await ctx.record(
      'Warning',
      'DriftRepaired',
      `restored ${opts.git.path}/flux-system in the repository: it was changed outside the operator (commit ${head})`,
    );
  // A restart between the push and the status write finds nothing to change: the head holds our push.
  const status: Partial<ClusterBootstrapStatus> =
    pushed || !cb.status?.lastPushedCommit
      ? { lastPushedCommit: head, lastPushedRevision: `${opts.git.branch}@sha1:${head}` }
      : {};
  // The change is on the branch: its pull request, if there was one, is done with (merged, however it was).
  if (cb.status?.pullRequest) {
    status.pullRequest = undefined;
    if (cb.status.pullRequest.state === 'open')
      await ctx.record(
        'Normal',
        'PullRequestMerged',
        `the change of pull request #${cb.status.pullRequest.number} is on ${opts.git.branch}`,
      );
  }
  return {
    result: { head, sopsPending: found ?? [] },
    message: `${opts.git.path}/flux-system is up to date at ${opts.git.branch}@sha1:${head}`,
    status,
  };
}

/** readSigningKey reads the OpenSSH private key of spec.git.signing, if any. */
async function readSigningKey(ctx: Context): Promise<string | undefined> {
  const name = ctx.opts.git.signingSecretName;
  if (!name) return undefined;
  const ref = { name, field: 'spec.git.signing.secretRef', what: 'an OpenSSH private key under the key "signing.key"' };
  const key = (await readRef(ctx, ref))['signing.key'];
  if (!key || !isPrivateKey(key))
    throw invalidRef(ctx, ref, 'must hold an OpenSSH private key under the key "signing.key"');
  return key;
}
