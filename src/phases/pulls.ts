import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { RECONCILE_REQUESTED_AT, type ClusterBootstrapStatus } from '../api/types.ts';
import { ProviderError } from '../providers/types.ts';
import { providerOptions, type Context, type ProviderPulls } from './context.ts';
import { providerPhaseError } from './errors.ts';
import type { Proposal } from './types.ts';

/**
 * proposeChange opens — or finds open — the one pull request of a change pushed to its head branch, and always ends
 * the pass: `PullRequestOpen` with its address while it waits for a reviewer (the pipeline goes on once the files
 * are on the base branch, however it was merged). A pull request closed without merging for this very spec is not
 * opened again — `PullRequestClosed` — until the spec changes or reconcile.fluxcd.io/requestedAt asks.
 */
export async function proposeChange(ctx: Context, proposal: Proposal): Promise<never> {
  const { cb, opts } = ctx;
  const pr = opts.git.pullRequest!;
  const base = opts.git.branch;
  let pulls: ProviderPulls;
  try {
    pulls = ctx.pulls((await providerOptions(ctx))!);
  } catch (err) {
    throw err instanceof PhaseError ? err : providerPhaseError(err);
  }
  try {
    const found = await pulls.find(proposal.branch, base);
    const last = cb.status?.pullRequest;
    const requested = cb.metadata.annotations?.[RECONCILE_REQUESTED_AT];
    const asked = !!requested && requested !== cb.status?.lastHandledReconcileAt;
    if (
      found?.state === 'closed' &&
      !asked &&
      last?.number === found.number &&
      last.generation === cb.metadata.generation
    )
      throw new PhaseError(
        Reasons.PullRequestClosed,
        `pull request #${found.number} ${found.url} was closed without merging: the operator opens no other until ` +
          `the spec changes or ${RECONCILE_REQUESTED_AT} is set`,
        { status: { pullRequest: { ...last, state: 'closed' } } },
      );
    // Merged, with nothing new pushed since, but the base does not show it yet (a host merging in the background).
    if (found?.state === 'merged' && !proposal.pushed)
      throw new PhaseError(
        Reasons.PullRequestOpen,
        `pull request #${found.number} ${found.url} is merged; waiting for ${base} to show the change`,
        { retryAfterMs: 5_000 },
      );
    let open = found?.state === 'open' ? found : undefined;
    if (!open) {
      const fill = (t: string) =>
        t
          .replaceAll('{cluster}', `${cb.metadata.namespace}/${cb.metadata.name}`)
          .replaceAll('{version}', opts.flux.version);
      try {
        const opened = await pulls.open({
          head: proposal.branch,
          base,
          title: fill(pr.title),
          body: fill(pr.body),
          labels: pr.labels,
          reviewers: pr.reviewers,
        });
        open = opened;
        ctx.log.info({ pullRequest: opened.number, url: opened.url }, 'opened a pull request');
        await ctx.record('Normal', 'PullRequestOpened', `opened pull request #${opened.number} ${opened.url}`);
        for (const w of opened.warnings) await ctx.record('Warning', 'PullRequestIncomplete', w);
        if (pr.autoMerge && pulls.autoMerge) await pulls.autoMerge(opened.number);
      } catch (err) {
        // Another cluster of the set opened it first: theirs is ours too.
        if (!(err instanceof ProviderError && err.kind === 'conflict')) throw err;
        open = await pulls.find(proposal.branch, base);
        if (open?.state !== 'open') throw err;
      }
    }
    const status: Partial<ClusterBootstrapStatus> = {
      pullRequest: {
        url: open.url,
        number: open.number,
        headBranch: proposal.branch,
        headCommit: proposal.commit,
        state: 'open',
        generation: cb.metadata.generation,
      },
    };
    throw new PhaseError(
      Reasons.PullRequestOpen,
      `the change waits in pull request #${open.number} ${open.url} (${proposal.branch} into ${base}): merge it ` +
        'to go on',
      { status },
    );
  } catch (err) {
    throw err instanceof PhaseError ? err : providerPhaseError(err, ctx.clock.now());
  }
}
