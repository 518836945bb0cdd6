import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError } from '../git/repository.ts';

const REASON_BY_KIND: Record<string, (typeof Reasons)[keyof typeof Reasons]> = {
  hostKey: Reasons.HostKeyChanged,
  auth: Reasons.GitAuthenticationFailed,
  notFound: Reasons.RepositoryNotFound,
  unreachable: Reasons.GitHostUnreachable,
  timeout: Reasons.GitHostUnreachable,
  protected: Reasons.PushRejected,
  rejected: Reasons.PushRaceLost,
  raceLost: Reasons.PushRaceLost,
  unsafeContent: Reasons.UnsafeRepositoryContent,
};

/** gitPhaseError turns a GitError into a PhaseError, keeping git's own words (never credentials) as the message. */
export function gitPhaseError(err: unknown, hint = ''): PhaseError {
  if (!(err instanceof GitError)) return new PhaseError(Reasons.GitOperationFailed, 'git failed', { cause: err });
  const reason = REASON_BY_KIND[err.kind] ?? Reasons.GitOperationFailed;
  if (reason === Reasons.HostKeyChanged)
    return new PhaseError(
      reason,
      `the git host's SSH key is not the pinned one — refusing to connect; if the change is legitimate, re-pin it`,
      { cause: err, retryAfterMs: 5 * 60_000 },
    );
  // A race lost to a busy writer is tried again soon, a little apart from the other ClusterBootstraps that lost it.
  if (reason === Reasons.PushRaceLost)
    return new PhaseError(reason, `${err.message}; retrying`, {
      cause: err,
      retryAfterMs: 2_000 + Math.round(Math.random() * 3_000),
    });
  return new PhaseError(reason, `${err.message}${hint}`, {
    cause: err,
    retryAfterMs: reason === Reasons.UnsafeRepositoryContent ? 60_000 : undefined,
  });
}
