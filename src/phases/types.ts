import type { ClusterBootstrapStatus } from '../api/types.ts';
import type { KeyPair } from '../ssh/keys.ts';
import type { SopsRule } from '../manifests/sops.ts';
import type { AgeKey } from '../sops/keys.ts';

/** Step is what a phase hands back: its result, the message of its condition, and what it adds to the status. */
export interface Step<T = void> {
  result: T;
  /**
   * message is the condition's message when the phase holds; a step without one leaves the condition to a later step.
   */
  message?: string;
  status?: Partial<ClusterBootstrapStatus>;
}

/**
 * Identity is the key Flux reads the repository with, and the host keys pinned for the git host. During a
 * rotation it also holds the key being rolled out (`next`, until Flux is switched to it) or the key it
 * replaced (`previous`, until Flux has read with the new one and the old is retired). The identity Secret
 * holds all of it, so a restart at any step resumes the same rotation.
 */
export interface Identity extends KeyPair {
  secretName: string;
  /** knownHosts pinned on the first scan of the git host, if any yet. */
  knownHosts?: string;
  next?: KeyPair;
  /** previous is the public key Flux read with before the switch. */
  previous?: string;
  /** switchedAt is when Flux's Secret was switched to the current key; it asks Flux's GitRepository to fetch again. */
  switchedAt?: string;
  /** rotationRequest is the rotate-identity-at annotation value that began the rotation, if one did. */
  rotationRequest?: string;
  /** sops is the cluster's SOPS age key, once spec.sops made one. */
  sops?: SopsKeys;
}

/**
 * SopsKeys are the cluster's age private keys: the current one, and during a rotation the one it replaced (kept in
 * the target until no file is encrypted for it), with the rotate-sops-at value that began the rotation.
 */
export interface SopsKeys {
  key: string;
  previous?: string;
  requestedAt?: string;
}

/** HttpsCredentials are a username and password (or token) for an https repository. */
export interface HttpsCredentials {
  transport: 'https';
  username: string;
  password: string;
  /** caFile is the PEM of the CA the git host's certificate is checked against (`ca.crt`), when not a public one. */
  ca?: string;
}

/** PushCredentials are the operator's own write access to the repository, from spec.git.secretRef. */
export type PushCredentials = { transport: 'ssh'; privateKey: string; knownHosts?: string } | HttpsCredentials;

/**
 * FluxSecret is the data of the Secret Flux reads git with in the target: its key and known_hosts, or https
 * credentials.
 */
export type FluxSecret = Record<string, string>;

/**
 * Sops is the cluster's SOPS state for the later phases: the age keys the target holds (the current one, and the
 * one being retired), and the creation rule committed in `<path>/.sops.yaml`.
 */
export interface Sops {
  current: AgeKey;
  previous?: AgeKey;
  rule: SopsRule;
  requestedAt?: string;
}

/** Proposal is the head branch a change was pushed to in pull-request mode, from the git layer. */
export interface Proposal {
  branch: string;
  commit: string;
  /** pushed is true when this pass put a new commit on the head branch. */
  pushed: boolean;
}
