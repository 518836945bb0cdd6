import type { Condition } from './types.ts';

/** ConditionTypes lists every condition a ClusterBootstrap reports; docs/ and the README describe each. */
export const ConditionTypes = {
  Ready: 'Ready',
  Reconciling: 'Reconciling',
  Stalled: 'Stalled',
  IdentityReady: 'IdentityReady',
  HostKeyTrusted: 'HostKeyTrusted',
  DeployKeyAuthorized: 'DeployKeyAuthorized',
  Committed: 'Committed',
  Applied: 'Applied',
  FluxReady: 'FluxReady',
} as const;

export type ConditionType = (typeof ConditionTypes)[keyof typeof ConditionTypes];

/** ReasonInfo is what a reason means for the work queue and the log. */
export interface ReasonInfo {
  /** stalls marks a configuration error: Stalled=True, not retried until the spec changes. */
  stalls?: true;
  /** retryMs is when the operator looks again; without it, with exponential backoff. */
  retryMs?: number;
  /** computed marks a delay the phase works out itself (a rate limit's reset, the deploy-key wait curve). */
  computed?: true;
  /** quiet marks an expected wait, logged at info rather than warn. */
  quiet?: true;
  /** progress marks a reason that reports how things stand, not a failure. */
  progress?: true;
}

const MINUTE = 60_000;

/**
 * Catalogue is the one list of condition reasons, each with what it means for the retry and the log. The
 * README's conditions table documents each (docs.test.ts checks its retry column against this).
 */
export const Catalogue = {
  // progress and success
  Succeeded: { progress: true },
  Progressing: { progress: true },
  ProgressingWithRetry: { progress: true },
  Suspended: { progress: true },
  Deleting: {},
  // configuration errors: fix the spec
  InvalidSpec: { stalls: true },
  InvalidGitURL: { stalls: true },
  InvalidPath: { stalls: true },
  UnknownFluxVersion: { stalls: true },
  UnknownComponent: { stalls: true },
  PathConflict: { stalls: true },
  TargetlessNotAllowed: { stalls: true },
  // the management cluster's Secrets
  KubeconfigSecretMissing: { retryMs: 30_000 },
  KubeconfigInvalid: { retryMs: MINUTE },
  GitCredentialsMissing: { retryMs: 30_000 },
  GitCredentialsInvalid: { retryMs: MINUTE },
  // git host
  HostKeyChanged: { retryMs: 5 * MINUTE },
  HostKeyInvalid: { retryMs: MINUTE },
  GitHostUnreachable: {},
  RepositoryNotFound: { retryMs: 30_000 },
  GitAuthenticationFailed: { retryMs: 30_000 },
  DeployKeyNotAuthorized: { retryMs: 15_000, computed: true, quiet: true },
  PushRejected: {},
  PullRequestOpen: { retryMs: 30_000, quiet: true },
  PullRequestClosed: { stalls: true },
  PushRaceLost: { retryMs: 2_000, computed: true },
  GitOperationFailed: {},
  // the git host's API (spec.git.provider)
  GitProviderAuthFailed: { retryMs: MINUTE },
  GitProviderRateLimited: { retryMs: 5_000, computed: true },
  GitProviderError: {},
  // the repository's contents
  KustomizationInvalid: { retryMs: MINUTE },
  SopsConfigInvalid: { retryMs: MINUTE },
  UnsafeRepositoryContent: { retryMs: MINUTE },
  // target cluster
  TargetUnreachable: {},
  ApplyFailed: {},
  FluxNotReady: { retryMs: 10_000, computed: true, quiet: true },
  // the operator's own permissions
  Forbidden: { retryMs: 30_000 },
  // anything else
  InternalError: {},
} as const satisfies Record<string, ReasonInfo>;

export type Reason = keyof typeof Catalogue;

/** Reasons names every reason of the Catalogue, for use as `Reasons.PathConflict`. */
export const Reasons = Object.fromEntries(Object.keys(Catalogue).map((r) => [r, r])) as { readonly [R in Reason]: R };

/** reasonInfo is what the catalogue says of a reason. */
export function reasonInfo(reason: string): ReasonInfo {
  return (Catalogue as Record<string, ReasonInfo>)[reason] ?? {};
}

/**
 * setCondition puts a condition into a list, keeping lastTransitionTime when the status did not change,
 * so that rewriting the same state is a no-op for the API server and for watchers.
 */
export function setCondition(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: () => string = () => new Date().toISOString(),
): Condition[] {
  const prev = conditions.find((c) => c.type === next.type);
  const lastTransitionTime = prev && prev.status === next.status ? prev.lastTransitionTime : now();
  const updated: Condition = { ...next, lastTransitionTime };
  return prev ? conditions.map((c) => (c.type === next.type ? updated : c)) : [...conditions, updated];
}

/** findCondition returns the condition of a type, if any. */
export function findCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** removeCondition drops a condition, as Flux drops Reconciling and Stalled when they do not apply. */
export function removeCondition(conditions: Condition[], type: string): Condition[] {
  return conditions.filter((c) => c.type !== type);
}
