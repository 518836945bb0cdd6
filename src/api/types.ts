/** GROUP, VERSION, KIND and PLURAL name the ClusterBootstrap API as the CRD in crds/ declares it. */
export const GROUP = 'fluxbootstrap.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'ClusterBootstrap';
export const PLURAL = 'clusterbootstraps';

/** FINALIZER holds a ClusterBootstrap until its deletion policy has been carried out. */
export const FINALIZER = `${GROUP}/finalizer`;

/**
 * RECONCILE_REQUESTED_AT is Flux's annotation for "reconcile now" (`flux reconcile` sets it); the operator honours it
 * too.
 */
export const RECONCILE_REQUESTED_AT = 'reconcile.fluxcd.io/requestedAt';

/**
 * ROTATE_IDENTITY_AT asks for Flux's key to be rotated now; the value handled is echoed in status.lastHandledRotateAt.
 */
export const ROTATE_IDENTITY_AT = `${GROUP}/rotate-identity-at`;

/**
 * REPIN_HOST_KEYS_AT asks for the git host's keys to be scanned and pinned again, once; echoed in
 * status.lastHandledRepinAt.
 */
export const REPIN_HOST_KEYS_AT = `${GROUP}/repin-host-keys-at`;

/** ROTATE_SOPS_AT asks for a new SOPS age key (see phases/sops.ts); its value is echoed in status once handled. */
export const ROTATE_SOPS_AT = `${GROUP}/rotate-sops-at`;

/**
 * USABLE_BY is the label a platform team puts on a Secret a ClusterBootstrap may use — `all`, or the name of the
 * one ClusterBootstrap — where tenants may create ClusterBootstraps but not read Secrets (--require-usable-label).
 */
export const USABLE_BY = `${GROUP}/usable-by`;

/** FIELD_MANAGER owns every field the operator server-side applies. */
export const FIELD_MANAGER = 'flux-bootstrap-operator';

export interface SecretKeyRef {
  name: string;
  key?: string;
}

/** ClusterBootstrapSpec is the user's desired state, as the API server stored it (CRD defaults applied). */
export interface ClusterBootstrapSpec {
  target?: { kubeconfigSecretRef?: SecretKeyRef };
  git: {
    url: string;
    branch?: string;
    path?: string;
    secretRef: { name: string };
    readSecretRef?: { name: string };
    provider?: {
      type?: 'generic' | 'github' | 'gitlab' | 'gitea' | 'bitbucketserver';
      url?: string;
      secretRef?: { name: string };
    };
    pullRequest?: {
      enabled?: boolean;
      when?: 'Always' | 'Protected';
      branch?: string;
      title?: string;
      body?: string;
      labels?: string[];
      reviewers?: string[];
      autoMerge?: boolean;
    };
    signing?: { secretRef: { name: string } };
    sharePushCredentials?: boolean;
    knownHosts?: string;
    author?: { name?: string; email?: string };
    commitMessageAppendix?: string;
  };
  flux?: {
    version?: string;
    /** Where the install manifests come from: only `bundled` (the versions shipped inside the operator) for now. */
    distribution?: string;
    components?: string[];
    componentsExtra?: string[];
    namespace?: string;
    registry?: string;
    imagePullSecret?: string;
    networkPolicy?: boolean;
    watchAllNamespaces?: boolean;
    clusterDomain?: string;
    tolerationKeys?: string[];
    logLevel?: string;
  };
  sync?: {
    interval?: string;
    kustomizationInterval?: string;
    prune?: boolean;
    secretName?: string;
  };
  identity?: {
    algorithm?: 'ed25519' | 'ecdsa' | 'rsa';
    ecdsaCurve?: 'p256' | 'p384' | 'p521';
    rsaBits?: number;
    rotateEvery?: string;
  };
  sops?: { enabled?: boolean; extraRecipients?: string[] };
  suspend?: boolean;
  deletionPolicy?: 'Orphan' | 'Uninstall';
}

/** Condition is a metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** ClusterBootstrapStatus is what the operator last found; written once per reconcile. */
export interface ClusterBootstrapStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  identity?: {
    publicKey: string;
    fingerprint: string;
    algorithm: string;
    secretName: string;
    /** createdAt is when the current key was made; nextRotationAt when spec.identity.rotateEvery makes the next one. */
    createdAt?: string;
    nextRotationAt?: string;
    /** rotatingTo is the fingerprint of the key being rolled out, while a rotation is under way. */
    rotatingTo?: string;
  };
  hostKeys?: { fingerprints: string[] };
  sops?: {
    recipient: string;
    secretName: string;
    /** previousRecipient is the key being retired, kept in the target while files are encrypted for it. */
    previousRecipient?: string;
    /** pendingFiles are files of the cluster's folder still encrypted for previousRecipient (the first 20). */
    pendingFiles?: string[];
  };
  lastHandledSopsRotateAt?: string;
  pullRequest?: {
    url: string;
    number: number;
    headBranch: string;
    headCommit: string;
    state: 'open' | 'closed';
    generation?: number;
  };
  lastPushedCommit?: string;
  lastPushedRevision?: string;
  lastAppliedRevision?: string;
  fluxVersion?: string;
  /** latestAvailableVersion is the newest Flux version the operator can install. */
  latestAvailableVersion?: string;
  /** appliedComponents are Flux's components the operator last applied to the target, and when. */
  appliedComponents?: { version: string; digest: string; appliedAt: string };
  /** lastHandledReconcileAt is the last `reconcile.fluxcd.io/requestedAt` annotation value acted on. */
  lastHandledReconcileAt?: string;
  /** lastHandledRotateAt and lastHandledRepinAt echo the annotations once their rotation or re-pin is done. */
  lastHandledRotateAt?: string;
  lastHandledRepinAt?: string;
  message?: string;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }[];
}

/** ClusterBootstrap is the custom resource: one target cluster bootstrapped with Flux from one git path. */
export interface ClusterBootstrap {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: ClusterBootstrapSpec;
  status?: ClusterBootstrapStatus;
}

/** SET_KIND and SET_PLURAL name the ClusterBootstrapSet API: one ClusterBootstrap per selected cluster. */
export const SET_KIND = 'ClusterBootstrapSet';
export const SET_PLURAL = 'clusterbootstrapsets';

/** CLUSTER_NAME_LABEL is Cluster API's label naming a cluster; a set's ClusterBootstraps carry it. */
export const CLUSTER_NAME_LABEL = 'cluster.x-k8s.io/cluster-name';

/** LabelSelector is a metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

/** ClusterBootstrapSet selects clusters and keeps one ClusterBootstrap, made from its template, for each. */
export interface ClusterBootstrapSet {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: {
    clusterSelector?: LabelSelector;
    kubeconfigSecretSelector?: LabelSelector;
    template: {
      metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      spec: ClusterBootstrapSpec;
    };
    /** rollout moves the clusters to a new Flux version a few at a time (see controller/sets.ts's rollout). */
    rollout?: { maxUnavailable?: number };
  };
  status?: {
    observedGeneration?: number;
    /** rollout says how far the move to `version` is, and which clusters hold it up. */
    rollout?: { version: string; updated: number; pending: number; blockedBy?: string[] };
    conditions?: Condition[];
    selected?: number;
    ready?: number;
    waiting?: string[];
    notReady?: { name: string; reason: string; message: string }[];
    sopsRecipients?: { name: string; recipient: string }[];
    conflicts?: string[];
    message?: string;
  };
}
