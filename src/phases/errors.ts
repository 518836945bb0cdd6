import { Reasons, type Reason } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { GitError } from '../git/errors.ts';
import { KubeError } from '../kube/client.ts';
import { ProviderError } from '../providers/types.ts';

/** The error mappers: how a git, provider or Kubernetes failure is reported, in one place. */

const GIT_REASONS: Record<string, Reason> = {
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
  if (err instanceof PhaseError) return err;
  if (!(err instanceof GitError)) return new PhaseError(Reasons.GitOperationFailed, 'git failed', { cause: err });
  const reason = GIT_REASONS[err.kind] ?? Reasons.GitOperationFailed;
  if (reason === Reasons.HostKeyChanged)
    return new PhaseError(
      reason,
      "the git host's SSH key is not the pinned one — refusing to connect; if the change is legitimate, re-pin it",
      { cause: err },
    );
  // A race lost to a busy writer is tried again soon, a little apart from the other ClusterBootstraps that lost it.
  if (reason === Reasons.PushRaceLost)
    return new PhaseError(reason, `${err.message}; retrying`, {
      cause: err,
      retryAfterMs: 2_000 + Math.round(Math.random() * 3_000),
    });
  return new PhaseError(reason, `${err.message}${hint}`, { cause: err });
}

const PROVIDER_REASONS: Record<string, Reason> = {
  unauthorized: Reasons.GitProviderAuthFailed,
  forbidden: Reasons.GitProviderAuthFailed,
  notFound: Reasons.RepositoryNotFound,
  rateLimited: Reasons.GitProviderRateLimited,
  invalid: Reasons.InvalidSpec,
};

/** providerPhaseError turns a provider's answer into a reason; a rate limit is retried when it ends. */
export function providerPhaseError(err: unknown, now = Date.now()): PhaseError {
  if (err instanceof PhaseError) return err;
  if (!(err instanceof ProviderError))
    return new PhaseError(Reasons.GitProviderError, 'the git host API call failed', { cause: err });
  const reason = PROVIDER_REASONS[err.kind] ?? Reasons.GitProviderError;
  const resetMs = err.resetAt ? err.resetAt.getTime() - now : 0;
  const retryAfterMs = err.kind === 'rateLimited' ? Math.max(err.retryAfterMs ?? 0, resetMs, 5_000) : undefined;
  return new PhaseError(reason, err.message, { cause: err, retryAfterMs });
}

/** applyError reports a failed call to the target cluster: no answer is TargetUnreachable, a refusal ApplyFailed. */
export function applyError(err: unknown): PhaseError {
  if (err instanceof PhaseError) return err;
  const reason = err instanceof KubeError && err.code === 0 ? Reasons.TargetUnreachable : Reasons.ApplyFailed;
  return new PhaseError(reason, 'applying Flux to the target cluster failed', { cause: err });
}

/** asPhaseError reports any error as a PhaseError, naming the fix for a refused management-cluster call. */
export function asPhaseError(err: unknown, condition: string, namespace: string): PhaseError {
  if (err instanceof PhaseError) return err;
  if (err instanceof KubeError && err.code === 403)
    return new PhaseError(
      Reasons.Forbidden,
      'the operator is not allowed to do this in the management cluster: bind ClusterRole ' +
        `flux-bootstrap-operator-secrets in namespace ${namespace} (deploy/examples/tenant-rolebinding.yaml)`,
      { cause: err },
    );
  return new PhaseError(Reasons.InternalError, `${condition} failed`, { cause: err });
}
