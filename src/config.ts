import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from './api/duration.ts';

export { parseDuration };

/** Config is the operator's configuration; every field has a flag, an environment variable and a default. */
export interface Config {
  watchNamespaces: string[];
  concurrency: number;
  resyncMs: number;
  logLevel: string;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  identity: string;
  metricsAddr: string;
  healthAddr: string;
  workDir: string;
  /** allowTargetlessNamespaces may bootstrap the management cluster itself (no spec.target). */
  allowTargetlessNamespaces: string[];
  /** allowKubeconfigExec lets target kubeconfigs run exec credential plugins inside the operator. */
  allowKubeconfigExec: boolean;
  /** allowInsecureKubeconfigTLS lets target kubeconfigs skip TLS verification. */
  allowInsecureKubeconfigTLS: boolean;
  /** reconcileTimeoutMs is how long one reconcile may run before it is cancelled and retried with backoff. */
  reconcileTimeoutMs: number;
  /** requireUsableLabel uses only Secrets the platform team labelled fluxbootstrap.dev/usable-by. */
  requireUsableLabel: boolean;
}

/** OPTIONS documents each setting: flag name, environment variable, default. The README's table mirrors it. */
export const OPTIONS = {
  'watch-namespaces': {
    env: 'WATCH_NAMESPACES',
    default: '',
    help: 'comma-separated namespaces to watch; empty watches all',
  },
  concurrency: { env: 'CONCURRENCY', default: '16', help: 'ClusterBootstraps reconciled in parallel' },
  'resync-period': {
    env: 'RESYNC_PERIOD',
    default: '10m',
    help: 'how often a Ready ClusterBootstrap is checked again',
  },
  'log-level': { env: 'LOG_LEVEL', default: 'info', help: 'debug, info, warn or error' },
  'leader-elect': {
    env: 'LEADER_ELECT',
    default: 'true',
    help: 'hold a Lease so that one replica reconciles at a time',
  },
  'leader-election-namespace': {
    env: 'LEADER_ELECTION_NAMESPACE',
    default: '',
    help: 'namespace of the Lease; defaults to POD_NAMESPACE',
  },
  'leader-election-id': { env: 'LEADER_ELECTION_ID', default: 'flux-bootstrap-operator', help: 'name of the Lease' },
  'metrics-addr': { env: 'METRICS_ADDR', default: ':8080', help: 'address of /metrics' },
  'health-addr': { env: 'HEALTH_ADDR', default: ':8081', help: 'address of /healthz and /readyz' },
  'work-dir': { env: 'WORK_DIR', default: '', help: 'folder for the git clones; defaults to a folder in the temp dir' },
  'reconcile-timeout': {
    env: 'RECONCILE_TIMEOUT',
    default: '5m',
    help: 'how long one reconcile may run before it is cancelled and retried',
  },
  'require-usable-label': {
    env: 'REQUIRE_USABLE_LABEL',
    default: 'false',
    help: "use only the Secrets labelled fluxbootstrap.dev/usable-by (all, or the ClusterBootstrap's name)",
  },
  'allow-targetless-namespaces': {
    env: 'ALLOW_TARGETLESS_NAMESPACES',
    default: '',
    help:
      'comma-separated namespaces whose ClusterBootstraps may omit spec.target and bootstrap the management ' +
      'cluster',
  },
  'insecure-kubeconfig-exec': {
    env: 'INSECURE_KUBECONFIG_EXEC',
    default: 'false',
    help: 'let target kubeconfigs run exec credential plugins in the operator',
  },
  'insecure-kubeconfig-tls': {
    env: 'INSECURE_KUBECONFIG_TLS',
    default: 'false',
    help: 'let target kubeconfigs skip TLS verification',
  },
} as const;

/** loadConfig reads flags first, then environment variables, then defaults; it throws on a bad value. */
export function loadConfig(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Config {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' as const }])),
    strict: true,
  });
  const get = (k: keyof typeof OPTIONS): string =>
    (values[k] as string | undefined) ?? env[OPTIONS[k].env] ?? OPTIONS[k].default;
  const concurrency = Number(get('concurrency'));
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new Error(`--concurrency must be a positive integer, not ${get('concurrency')}`);
  const bool = (k: keyof typeof OPTIONS): boolean => {
    const v = get(k);
    if (!['true', 'false'].includes(v)) throw new Error(`--${k} must be true or false, not ${v}`);
    return v === 'true';
  };
  const list = (k: keyof typeof OPTIONS): string[] =>
    get(k)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return {
    watchNamespaces: list('watch-namespaces'),
    concurrency,
    resyncMs: parseDuration(get('resync-period')),
    logLevel: get('log-level'),
    leaderElect: bool('leader-elect'),
    leaderElectionNamespace: get('leader-election-namespace') || env.POD_NAMESPACE || 'flux-bootstrap-system',
    leaderElectionId: get('leader-election-id'),
    identity: env.POD_NAME || `${hostname()}-${process.pid}`,
    metricsAddr: get('metrics-addr'),
    healthAddr: get('health-addr'),
    workDir: get('work-dir') || join(tmpdir(), 'flux-bootstrap-operator'),
    reconcileTimeoutMs: parseDuration(get('reconcile-timeout')),
    allowTargetlessNamespaces: list('allow-targetless-namespaces'),
    allowKubeconfigExec: bool('insecure-kubeconfig-exec'),
    allowInsecureKubeconfigTLS: bool('insecure-kubeconfig-tls'),
    requireUsableLabel: bool('require-usable-label'),
  };
}
