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

/**
 * Reasons is the one catalogue of condition reasons. A test checks that the README documents each one.
 * Configuration errors (Stalled, not retried until the spec changes) and transient errors (retried with
 * backoff) are told apart by `Terminal` below.
 */
export const Reasons = {
  // progress and success
  Succeeded: 'Succeeded',
  Progressing: 'Progressing',
  ProgressingWithRetry: 'ProgressingWithRetry',
  Suspended: 'Suspended',
  Deleting: 'Deleting',
  // configuration errors: fix the spec
  InvalidSpec: 'InvalidSpec',
  InvalidGitURL: 'InvalidGitURL',
  InvalidPath: 'InvalidPath',
  UnknownFluxVersion: 'UnknownFluxVersion',
  UnknownComponent: 'UnknownComponent',
  PathConflict: 'PathConflict',
  TargetlessNotAllowed: 'TargetlessNotAllowed',
  // the management cluster's Secrets
  KubeconfigSecretMissing: 'KubeconfigSecretMissing',
  KubeconfigInvalid: 'KubeconfigInvalid',
  GitCredentialsMissing: 'GitCredentialsMissing',
  GitCredentialsInvalid: 'GitCredentialsInvalid',
  // git host
  HostKeyChanged: 'HostKeyChanged',
  HostKeyInvalid: 'HostKeyInvalid',
  GitHostUnreachable: 'GitHostUnreachable',
  RepositoryNotFound: 'RepositoryNotFound',
  GitAuthenticationFailed: 'GitAuthenticationFailed',
  DeployKeyNotAuthorized: 'DeployKeyNotAuthorized',
  PushRejected: 'PushRejected',
  PushRaceLost: 'PushRaceLost',
  GitOperationFailed: 'GitOperationFailed',
  // the git host's API (spec.git.provider)
  GitProviderAuthFailed: 'GitProviderAuthFailed',
  GitProviderRateLimited: 'GitProviderRateLimited',
  GitProviderError: 'GitProviderError',
  // the repository's contents
  KustomizationInvalid: 'KustomizationInvalid',
  UnsafeRepositoryContent: 'UnsafeRepositoryContent',
  // target cluster
  TargetUnreachable: 'TargetUnreachable',
  ApplyFailed: 'ApplyFailed',
  FluxNotReady: 'FluxNotReady',
  // the operator's own permissions
  Forbidden: 'Forbidden',
  // anything else
  InternalError: 'InternalError',
} as const;

export type Reason = (typeof Reasons)[keyof typeof Reasons];

/** Terminal reasons are configuration errors: the resource is Stalled until its spec changes. */
export const Terminal: ReadonlySet<string> = new Set<string>([
  Reasons.InvalidSpec,
  Reasons.InvalidGitURL,
  Reasons.InvalidPath,
  Reasons.UnknownFluxVersion,
  Reasons.UnknownComponent,
  Reasons.PathConflict,
  Reasons.TargetlessNotAllowed,
]);

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
