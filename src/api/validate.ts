import { newestVersion, resolveVersion } from './versions.ts';
import { Reasons } from './conditions.ts';
import { parseDuration } from './duration.ts';
import { PhaseError } from './errors.ts';
import type { ClusterBootstrap } from './types.ts';
import {
  DEFAULT_COMPONENTS,
  EXTRA_COMPONENTS,
  shippedComponents,
  shippedVersions,
  type ComponentsOptions,
} from '../manifests/components.ts';
import type { SyncOptions } from '../manifests/sync.ts';

/** BootstrapOptions is a validated spec with every default filled in: what the phases work from. */
export interface BootstrapOptions {
  name: string;
  namespace: string;
  target?: { secretName: string; key: string };
  git: {
    url: string;
    transport: 'ssh' | 'https';
    host: string;
    port: number;
    branch: string;
    path: string;
    secretName: string;
    /**
     * readSecretName is the Secret Flux reads an https repository with; undefined over ssh, or when sharing the push
     * credentials.
     */
    readSecretName?: string;
    knownHosts?: string;
    /** provider registers Flux's key as a deploy key through the git host's API; `generic` leaves it to a person. */
    provider: {
      type: 'generic' | 'github' | 'gitlab' | 'gitea' | 'bitbucketserver';
      url?: string;
      secretName?: string;
    };
    author: { name: string; email: string };
    messageAppendix: string;
    /** signingSecretName names the Secret whose `signing.key` signs every commit (spec.git.signing). */
    signingSecretName?: string;
    /** pullRequest, when enabled: changes go to `branch` and one pull request into git.branch (see phases/pulls.ts). */
    pullRequest?: {
      when: 'Always' | 'Protected';
      branch: string;
      title: string;
      body: string;
      labels: string[];
      reviewers: string[];
      autoMerge: boolean;
    };
  };
  /** flux is what to install; its version is spec.flux.version resolved (a range to the newest it matches). */
  flux: ComponentsOptions;
  /** latestFluxVersion is the newest Flux version the operator can install. */
  latestFluxVersion: string;
  /** sync is the GitRepository and Kustomization Flux syncs with, as committed and as applied. */
  sync: SyncOptions;
  identity: {
    algorithm: 'ed25519' | 'ecdsa' | 'rsa';
    ecdsaCurve: 'p256' | 'p384' | 'p521';
    rsaBits: number;
    rotateEveryMs?: number;
  };
  /** sops: one age key per cluster, its private half in the target as SOPS_SECRET, the public half in .sops.yaml. */
  sops: { enabled: boolean; extraRecipients: string[] };
  suspend: boolean;
  deletionPolicy: 'Orphan' | 'Uninstall';
  /** requireUsableLabel: only Secrets labelled USABLE_BY may be read (the operator's --require-usable-label). */
  requireUsableLabel: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DURATION = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
const LOG_LEVELS = ['debug', 'info', 'error'];
/** IMAGE_REPOSITORY is a registry host (with an optional port) and path, as in an image reference. */
const IMAGE_REPOSITORY = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/;
/** LABEL_KEY is a Kubernetes label key (an optional DNS prefix, a name): what a taint key is. */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** BRANCH is a head branch name the CRD allows (git's own rules are checked again where it is pushed). */
const BRANCH = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,198}[A-Za-z0-9]$/;
/** AGE_RECIPIENT is an age X25519 public key: `age1` and 58 bech32 characters. */
const AGE_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;
/** SOPS_SECRET is the Secret of Flux's namespace that holds the cluster's age key, as Flux's docs name it. */
export const SOPS_SECRET = 'sops-age';
const AUTHOR_NAME = /^[^\u0000-\u001f\u007f<>]{1,256}$/;
const EMAIL = /^[^\s<>@\u0000-\u001f\u007f]+@[^\s<>@\u0000-\u001f\u007f]+$/;

/** Policy is what the operator's flags allow a ClusterBootstrap beyond the safe default. */
export interface Policy {
  /**
   * targetlessNamespaces are the namespaces whose ClusterBootstraps may omit spec.target and install into the
   * management cluster.
   */
  targetlessNamespaces: string[];
  /** requireUsableLabel: a referenced Secret must carry USABLE_BY (`all` or the ClusterBootstrap's name). */
  requireUsableLabel?: boolean;
}

/** SYSTEM_NAMESPACES are never Flux's namespace for a ClusterBootstrap that may uninstall (delete) it. */
const SYSTEM_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease', 'default'];

function invalid(reason: (typeof Reasons)[keyof typeof Reasons], message: string): never {
  throw new PhaseError(reason, message);
}

/**
 * normalizeGitURL accepts `ssh://[user@]host[:port]/path`, `https://host/path`, and the scp form
 * `user@host:org/repo.git`, which it rewrites to ssh:// because Flux's GitRepository rejects it.
 */
export function normalizeGitURL(raw: string): { url: string; transport: 'ssh' | 'https'; host: string; port: number } {
  const value = raw.trim();
  // A bare `?` or `#` leaves URL's search and hash empty: refused in the text itself, as are spaces.
  if (/[?#\s]/.test(value))
    invalid(Reasons.InvalidGitURL, `spec.git.url ${JSON.stringify(raw)} must not have a query, a fragment or spaces`);
  const scp = /^([A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!\/\/)([^\s]+)$/.exec(value);
  const candidate =
    scp && !value.includes('://') ? `ssh://${scp[1] ?? ''}${scp[2]}/${scp[3].replace(/^\/+/, '')}` : value;
  let parsed: URL;
  try {
    parsed = new URL(candidate);
  } catch (cause) {
    return invalid(
      Reasons.InvalidGitURL,
      `spec.git.url ${JSON.stringify(raw)} is not a URL: use ssh://git@host/org/repo.git`,
    );
  }
  const transport = parsed.protocol === 'ssh:' ? 'ssh' : parsed.protocol === 'https:' ? 'https' : undefined;
  if (!transport)
    invalid(
      Reasons.InvalidGitURL,
      `spec.git.url ${JSON.stringify(raw)} has scheme ${parsed.protocol} — use ssh:// (or https://)`,
    );
  if (!parsed.hostname) invalid(Reasons.InvalidGitURL, `spec.git.url ${JSON.stringify(raw)} has no host`);
  // A host starting with `-` would be an option to ssh; only a host name or an address is one.
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/i.test(parsed.hostname))
    invalid(Reasons.InvalidGitURL, `spec.git.url ${JSON.stringify(raw)} has no valid host name`);
  if (parsed.pathname.length <= 1)
    invalid(Reasons.InvalidGitURL, `spec.git.url ${JSON.stringify(raw)} names no repository`);
  if (parsed.password || (transport === 'https' && parsed.username))
    invalid(
      Reasons.InvalidGitURL,
      'spec.git.url must not carry credentials (a user or token before @ in an https URL): put them in ' +
        'spec.git.secretRef',
    );
  if (parsed.search || parsed.hash)
    invalid(Reasons.InvalidGitURL, `spec.git.url ${JSON.stringify(raw)} must not have a query or fragment`);
  const port = parsed.port ? Number(parsed.port) : transport === 'ssh' ? 22 : 443;
  parsed.hostname = parsed.hostname.toLowerCase();
  return { url: parsed.toString(), transport, host: parsed.hostname, port };
}

/** normalizeRepoPath cleans a path inside the repository and refuses one that would leave it. */
export function normalizeRepoPath(raw: string): string {
  const trimmed = raw.trim().replace(/^\.\//, '').replace(/\/+$/, '');
  if (trimmed.startsWith('/'))
    invalid(Reasons.InvalidPath, `spec.git.path ${JSON.stringify(raw)} must be relative to the repository root`);
  const segments = trimmed.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.length === 0)
    invalid(
      Reasons.InvalidPath,
      `spec.git.path ${JSON.stringify(raw)} is empty: name a folder such as clusters/<name>`,
    );
  for (const s of segments) {
    if (s === '..')
      invalid(Reasons.InvalidPath, `spec.git.path ${JSON.stringify(raw)} escapes the repository ('..' is not allowed)`);
    if (!PATH_SEGMENT.test(s))
      invalid(Reasons.InvalidPath, `spec.git.path ${JSON.stringify(raw)} has an invalid segment ${JSON.stringify(s)}`);
  }
  if (segments.some((s) => s.toLowerCase() === '.git'))
    invalid(Reasons.InvalidPath, `spec.git.path ${JSON.stringify(raw)} has a .git segment`);
  return segments.join('/');
}

/**
 * secretRefsOf lists the Secrets a ClusterBootstrap's spec names, each with its field: push and read
 * credentials, the provider's token and the target's kubeconfig. All are in its own namespace.
 */
export function secretRefsOf(spec: ClusterBootstrap['spec'] | undefined): { field: string; name: string }[] {
  const refs: [string, unknown][] = [
    ['spec.git.secretRef.name', spec?.git?.secretRef?.name],
    ['spec.git.readSecretRef.name', spec?.git?.readSecretRef?.name],
    ['spec.git.provider.secretRef.name', spec?.git?.provider?.secretRef?.name],
    ['spec.target.kubeconfigSecretRef.name', spec?.target?.kubeconfigSecretRef?.name],
  ];
  return refs.flatMap(([field, name]) => (typeof name === 'string' && name.length > 0 ? [{ field, name }] : []));
}

/** MAX_KNOWN_HOSTS bounds spec.git.knownHosts, as the CRD does: a few host keys are a few KB. */
const MAX_KNOWN_HOSTS = 65_536;

/** SECRET_KEY is what a key of a Secret's data may be. */
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

/**
 * checkRefNames refuses a Secret name that is not a DNS subdomain (`.` and `..` would name other API paths)
 * and a Secret key that is not a data key, as the CRD's patterns do, for objects stored before them.
 */
function checkRefNames(spec: ClusterBootstrap['spec']): void {
  for (const { field, name } of secretRefsOf(spec))
    if (name.length > 253 || !DNS_SUBDOMAIN.test(name))
      invalid(Reasons.InvalidSpec, `${field} ${JSON.stringify(name.slice(0, 64))} is not a valid Secret name`);
  const key = spec.target?.kubeconfigSecretRef?.key;
  if (key !== undefined && !SECRET_KEY.test(key))
    invalid(
      Reasons.InvalidSpec,
      `spec.target.kubeconfigSecretRef.key ${JSON.stringify(key.slice(0, 64))} is not a Secret key`,
    );
}

/**
 * validate turns a ClusterBootstrap into BootstrapOptions, or throws a terminal PhaseError whose message
 * names the field to fix. The CRD schema rejects most of this already; this catches what it cannot, and
 * objects stored before a schema change.
 */
export function validate(cb: ClusterBootstrap, policy: Policy = { targetlessNamespaces: [] }): BootstrapOptions {
  const spec = cb.spec ?? ({} as ClusterBootstrap['spec']);
  const { name, namespace } = cb.metadata;
  if (!spec.git?.url) invalid(Reasons.InvalidSpec, 'spec.git.url is required');
  if (!spec.git.secretRef?.name)
    invalid(Reasons.InvalidSpec, 'spec.git.secretRef.name is required: the Secret with the push credentials');

  const git = normalizeGitURL(spec.git.url);
  checkRefNames(spec);
  if ((spec.git.knownHosts?.length ?? 0) > MAX_KNOWN_HOSTS)
    invalid(Reasons.InvalidSpec, `spec.git.knownHosts is longer than ${MAX_KNOWN_HOSTS} characters`);
  const branch = spec.git.branch ?? 'main';
  if (
    !/^[A-Za-z0-9._/-]+$/.test(branch) ||
    branch.includes('..') ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.lock')
  )
    invalid(Reasons.InvalidSpec, `spec.git.branch ${JSON.stringify(branch)} is not a valid branch name`);

  const flux = spec.flux ?? {};
  const distribution = flux.distribution ?? 'bundled';
  if (distribution !== 'bundled')
    invalid(
      Reasons.InvalidSpec,
      `spec.flux.distribution ${JSON.stringify(String(distribution).slice(0, 64))} is not supported: this ` +
        'operator installs the Flux versions bundled with it only (distribution: bundled)',
    );
  const versions = shippedVersions();
  const wanted = flux.version ?? newestVersion(versions);
  const version = resolveVersion(wanted, versions);
  if (!version)
    invalid(
      Reasons.UnknownFluxVersion,
      `spec.flux.version ${JSON.stringify(wanted.slice(0, 64))} matches no Flux version shipped with this ` +
        `operator; use one of ${versions.join(', ')}, or a range such as 2.9.x`,
    );
  const components = [...(flux.components ?? DEFAULT_COMPONENTS), ...(flux.componentsExtra ?? [])];
  const known = [...DEFAULT_COMPONENTS, ...EXTRA_COMPONENTS];
  for (const c of components)
    if (!known.includes(c))
      invalid(
        Reasons.UnknownComponent,
        `component ${JSON.stringify(c)} is unknown; known components are ${known.join(', ')}`,
      );
  for (const c of components)
    if (!shippedComponents(version).includes(c)) {
      const with_ = versions.filter((v) => shippedComponents(v).includes(c));
      invalid(
        Reasons.UnknownComponent,
        `component ${c} is not part of Flux ` +
          `${version}${with_.length > 0 ? `; it ships with Flux ${with_.join(', ')}` : ''}`,
      );
    }
  for (const required of ['source-controller', 'kustomize-controller'])
    if (!components.includes(required))
      invalid(Reasons.UnknownComponent, `spec.flux.components must include ${required}: the bootstrap syncs with it`);
  const fluxNamespace = flux.namespace ?? 'flux-system';
  if (!DNS_LABEL.test(fluxNamespace) || fluxNamespace.length > 63)
    invalid(Reasons.InvalidSpec, `spec.flux.namespace ${JSON.stringify(fluxNamespace)} is not a valid namespace name`);
  const logLevel = flux.logLevel ?? 'info';
  if (!LOG_LEVELS.includes(logLevel))
    invalid(Reasons.InvalidSpec, `spec.flux.logLevel must be one of ${LOG_LEVELS.join(', ')}`);
  const clusterDomain = flux.clusterDomain ?? 'cluster.local';
  if (!DNS_SUBDOMAIN.test(clusterDomain))
    invalid(Reasons.InvalidSpec, `spec.flux.clusterDomain ${JSON.stringify(clusterDomain)} is not a domain`);

  const sync = spec.sync ?? {};
  const interval = sync.interval ?? '1m';
  const kustomizationInterval = sync.kustomizationInterval ?? '10m';
  for (const [field, value] of [
    ['spec.sync.interval', interval],
    ['spec.sync.kustomizationInterval', kustomizationInterval],
  ])
    if (!DURATION.test(value))
      invalid(Reasons.InvalidSpec, `${field} ${JSON.stringify(value)} is not a duration such as 1m or 10m0s`);
  const secretName = sync.secretName ?? 'flux-system';
  if (!DNS_SUBDOMAIN.test(secretName))
    invalid(Reasons.InvalidSpec, `spec.sync.secretName ${JSON.stringify(secretName)} is not a valid Secret name`);

  const identity = spec.identity ?? {};
  const rsaBits = identity.rsaBits ?? 4096;
  if (![2048, 3072, 4096].includes(rsaBits))
    invalid(Reasons.InvalidSpec, 'spec.identity.rsaBits must be 2048, 3072 or 4096');

  const author = {
    name: spec.git.author?.name ?? 'Flux Bootstrap Operator',
    email: spec.git.author?.email ?? 'flux-bootstrap-operator@users.noreply.local',
  };
  if (!AUTHOR_NAME.test(author.name))
    invalid(
      Reasons.InvalidSpec,
      `spec.git.author.name ${JSON.stringify(author.name)} must be 1-256 printable characters without <, > or newlines`,
    );
  if (!EMAIL.test(author.email))
    invalid(Reasons.InvalidSpec, `spec.git.author.email ${JSON.stringify(author.email)} is not an email address`);
  const messageAppendix = spec.git.commitMessageAppendix ?? '';
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(messageAppendix) || messageAppendix.length > 1024)
    invalid(
      Reasons.InvalidSpec,
      'spec.git.commitMessageAppendix must be at most 1024 characters without control characters',
    );
  const registry = (flux.registry ?? 'ghcr.io/fluxcd').replace(/\/+$/, '');
  if (!IMAGE_REPOSITORY.test(registry) || registry.length > 255)
    invalid(
      Reasons.InvalidSpec,
      `spec.flux.registry ${JSON.stringify(registry)} is not an image registry path such as ghcr.io/fluxcd`,
    );
  const tolerationKeys = flux.tolerationKeys ?? [];
  for (const key of tolerationKeys)
    if (!LABEL_KEY.test(key) || key.length > 316)
      invalid(Reasons.InvalidSpec, `spec.flux.tolerationKeys: ${JSON.stringify(key)} is not a taint key`);
  const imagePullSecret = flux.imagePullSecret ?? '';
  if (imagePullSecret && !DNS_SUBDOMAIN.test(imagePullSecret))
    invalid(
      Reasons.InvalidSpec,
      `spec.flux.imagePullSecret ${JSON.stringify(imagePullSecret)} is not a valid Secret name`,
    );
  const path = normalizeRepoPath(spec.git.path ?? `clusters/${name}`);

  const providerSpec = spec.git.provider ?? {};
  const providerType = providerSpec.type ?? 'generic';
  if (!['generic', 'github', 'gitlab', 'gitea', 'bitbucketserver'].includes(providerType))
    invalid(
      Reasons.InvalidSpec,
      `spec.git.provider.type ${JSON.stringify(providerType)} must be generic, github, gitlab, gitea or ` +
        `bitbucketserver`,
    );
  if (providerType !== 'generic' && !providerSpec.secretRef?.name)
    invalid(
      Reasons.InvalidSpec,
      `spec.git.provider.secretRef.name is required for provider ${providerType}: a Secret whose key "token" holds ` +
        `the API token`,
    );
  if ((providerType === 'gitea' || providerType === 'bitbucketserver') && !providerSpec.url)
    invalid(Reasons.InvalidSpec, `spec.git.provider.url is required for provider ${providerType}: the API base URL`);
  if (providerSpec.url) {
    let api: URL | undefined;
    try {
      api = new URL(providerSpec.url);
    } catch {
      api = undefined;
    }
    if (!api || !['https:', 'http:'].includes(api.protocol) || api.username || api.password || api.search || api.hash)
      invalid(
        Reasons.InvalidSpec,
        `spec.git.provider.url ${JSON.stringify(providerSpec.url)} must be an http(s) URL without credentials, ` +
          `query or fragment`,
      );
  }
  const rotateEvery = spec.identity?.rotateEvery;
  if (rotateEvery !== undefined && (!DURATION.test(rotateEvery) || parseDuration(rotateEvery) < 3_600_000))
    invalid(
      Reasons.InvalidSpec,
      `spec.identity.rotateEvery ${JSON.stringify(rotateEvery)} must be a duration of at least 1h, such as 720h`,
    );

  const extraRecipients = spec.sops?.extraRecipients ?? [];
  if (!Array.isArray(extraRecipients) || extraRecipients.length > 20)
    invalid(Reasons.InvalidSpec, 'spec.sops.extraRecipients must be a list of at most 20 age public keys');
  for (const r of extraRecipients)
    if (typeof r !== 'string' || !AGE_RECIPIENT.test(r))
      invalid(
        Reasons.InvalidSpec,
        /SECRET/i.test(String(r))
          ? 'spec.sops.extraRecipients holds an age private key: remove it from the spec, and make that key anew'
          : `spec.sops.extraRecipients: ${JSON.stringify(String(r).slice(0, 80))} is not an age public key (age1…, ` +
              'as age-keygen -y prints)',
      );
  const pr = spec.git.pullRequest;
  const pullRequest = pr?.enabled
    ? {
        when: pr.when ?? 'Always',
        branch: pr.branch ?? `flux-bootstrap/${namespace}-${name}`,
        title: pr.title ?? 'Bootstrap Flux {version} on {cluster}',
        body:
          pr.body ??
          'flux-bootstrap-operator proposes the flux-system files of {cluster} (Flux {version}). Merge it, and the ' +
            'operator applies them; close it, and it opens no other until the spec changes.',
        labels: pr.labels ?? [],
        reviewers: pr.reviewers ?? [],
        autoMerge: pr.autoMerge ?? false,
      }
    : undefined;
  if (pullRequest && (providerType === 'generic' || !providerSpec.secretRef?.name))
    invalid(
      Reasons.InvalidSpec,
      'spec.git.pullRequest needs spec.git.provider (github, gitlab, gitea or bitbucketserver, with its secretRef): ' +
        'the pull request is opened through its API',
    );
  if (pullRequest && (!BRANCH.test(pullRequest.branch) || pullRequest.branch === branch))
    invalid(
      Reasons.InvalidSpec,
      `spec.git.pullRequest.branch ${JSON.stringify(pullRequest.branch.slice(0, 80))} must be a branch name other ` +
        `than spec.git.branch`,
    );
  const sopsEnabled = spec.sops?.enabled ?? false;
  if (sopsEnabled && secretName === SOPS_SECRET)
    invalid(Reasons.InvalidSpec, `spec.sync.secretName cannot be ${SOPS_SECRET}: spec.sops keeps the age key there`);

  const targetRef = spec.target?.kubeconfigSecretRef;
  if (!targetRef?.name && !policy.targetlessNamespaces.includes(namespace))
    invalid(
      Reasons.TargetlessNotAllowed,
      `spec.target.kubeconfigSecretRef is required in namespace ${namespace}: only namespaces the operator's ` +
        `--allow-targetless-namespaces lists may bootstrap the management cluster itself`,
    );
  const deletionPolicy = spec.deletionPolicy ?? 'Orphan';
  if (deletionPolicy === 'Uninstall' && SYSTEM_NAMESPACES.includes(fluxNamespace))
    invalid(
      Reasons.InvalidSpec,
      `spec.flux.namespace ${fluxNamespace} is a system namespace: deletionPolicy Uninstall would delete it; choose ` +
        `another namespace`,
    );
  const readSecretName = spec.git.readSecretRef?.name;
  if (git.transport === 'https' && !readSecretName && !spec.git.sharePushCredentials)
    invalid(
      Reasons.InvalidSpec,
      'an https spec.git.url needs spec.git.readSecretRef: read-only credentials for Flux (every target stores ' +
        'them); set spec.git.sharePushCredentials: true to give Flux the push credentials instead',
    );
  return {
    name,
    namespace,
    target: targetRef?.name ? { secretName: targetRef.name, key: targetRef.key ?? 'value' } : undefined,
    git: {
      ...git,
      branch,
      path,
      secretName: spec.git.secretRef.name,
      readSecretName: git.transport === 'https' ? readSecretName : undefined,
      knownHosts: spec.git.knownHosts?.trim() || undefined,
      provider: {
        type: providerType,
        url: providerSpec.url?.replace(/\/+$/, ''),
        secretName: providerSpec.secretRef?.name,
      },
      author,
      messageAppendix,
      ...(pullRequest && { pullRequest }),
      ...(spec.git.signing?.secretRef?.name && { signingSecretName: spec.git.signing.secretRef.name }),
    },
    flux: {
      version,
      components: [...new Set(components)],
      namespace: fluxNamespace,
      registry,
      imagePullSecret,
      networkPolicy: flux.networkPolicy ?? true,
      watchAllNamespaces: flux.watchAllNamespaces ?? true,
      clusterDomain,
      tolerationKeys,
      logLevel,
    },
    sync: {
      name: fluxNamespace,
      namespace: fluxNamespace,
      url: git.url,
      branch,
      path,
      secretName,
      interval,
      kustomizationInterval,
      prune: sync.prune ?? true,
      ...(sopsEnabled && { decryption: { secretName: SOPS_SECRET } }),
    },
    identity: {
      algorithm: identity.algorithm ?? 'ed25519',
      ecdsaCurve: identity.ecdsaCurve ?? 'p384',
      rsaBits,
      rotateEveryMs: rotateEvery === undefined ? undefined : parseDuration(rotateEvery),
    },
    sops: { enabled: sopsEnabled, extraRecipients: [...new Set(extraRecipients)] },
    suspend: spec.suspend ?? false,
    deletionPolicy,
    requireUsableLabel: policy.requireUsableLabel ?? false,
    latestFluxVersion: newestVersion(versions),
  };
}
