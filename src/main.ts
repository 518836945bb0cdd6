import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { KubeClient } from './kube/client.ts';
import { TargetClients } from './kube/targets.ts';
import { Repositories } from './git/repository.ts';
import { Reconciler } from './controller/reconciler.ts';
import { WorkQueue } from './controller/queue.ts';
import { ClusterBootstrapOperator, keyId, type ResourceKey } from './controller/operator.ts';
import { PathIndex } from './controller/paths.ts';
import { KIND, SET_KIND } from './api/types.ts';
import { isCancelled } from './cancel.ts';
import { SetReconciler } from './controller/sets.ts';
import { LeaderElector } from './controller/leader.ts';
import { kubeEventRecorder } from './controller/events.ts';
import { CONTROLLER, createMetrics } from './controller/metrics.ts';
import { SecretWatch } from './controller/secrets.ts';
import { startHealthServer, startMetricsServer } from './server.ts';
import { PhaseError } from './api/errors.ts';
import { validate } from './api/validate.ts';

// main wires the operator together: configuration, logger, clients, queue, informer, leader election, probes.
const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
const config = loadConfig();
const log = createLogger(config.logLevel);
const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault();
const metrics = createMetrics(VERSION);
// The host label is the kind of cluster, not its address: one series per tenant's host would be unbounded, and
// would list every tenant's API servers to anyone who can scrape the metrics.
const counted = (host: string) => (method: string, _server: string, code: string) =>
  metrics.restRequests.inc({ method, host, code });
const mgmt = new KubeClient(kubeConfig, { onResponse: counted('management') });
// Two connections per target: a fleet's TLS connections are much of the operator's memory (npm run bench).
const targets = new TargetClients({
  allowExec: config.allowKubeconfigExec,
  allowInsecureTLS: config.allowInsecureKubeconfigTLS,
  // A target's answers to the operator are kilobytes (discovery documents, objects: the largest, a Flux CRD, is
  // ~50 KB): 4 MiB is room to spare, and a tenant's server cannot make one answer cost more.
  client: { onResponse: counted('target'), maxSockets: 2, maxBodyBytes: 4 * 1024 * 1024 },
});
const policy = {
  targetlessNamespaces: config.allowTargetlessNamespaces,
  requireUsableLabel: config.requireUsableLabel,
};
const repos = new Repositories(join(config.workDir, 'repos'));
const paths = new PathIndex(policy);
const reconciler: Reconciler = new Reconciler({
  mgmt,
  git: repos,
  log,
  events: kubeEventRecorder(mgmt, config.identity),
  metrics,
  resyncMs: config.resyncMs,
  targetClient: targets.get,
  policy,
  paths,
});
const sets = new SetReconciler({ mgmt, log, policy, clusterBootstraps: () => operator.list() });
const queue: WorkQueue<ResourceKey> = new WorkQueue<ResourceKey>({
  concurrency: config.concurrency,
  deadlineMs: config.reconcileTimeoutMs,
  id: keyId,
  // Tenants (namespaces) take turns, and one never holds every worker.
  group: (key) => key.namespace,
  worker: ({ kind, namespace, name }, signal) =>
    kind === SET_KIND ? sets.reconcile(namespace, name, signal) : reconciler.reconcile(namespace, name, signal),
  observer: {
    ...metrics.queueObserver,
    finished(key, result, workMs, outcome) {
      metrics.queueObserver.finished!(key, result, workMs, outcome);
      // The reconciler logs the phase errors it reports in status; anything else is logged here.
      if (outcome.kind === 'retry' && !(outcome.error instanceof PhaseError)) {
        const { namespace, name } = key;
        const cancelled = isCancelled(outcome.error);
        log[cancelled ? 'info' : 'warn'](
          { namespace, name, err: outcome.error },
          cancelled ? 'reconcile cancelled; retrying' : 'reconcile failed; retrying with backoff',
        );
      }
    },
  },
});
metrics.watchQueue(queue, config.concurrency);
const operator: ClusterBootstrapOperator = new ClusterBootstrapOperator({
  kubeConfig,
  mgmt,
  queue,
  paths,
  namespaces: config.watchNamespaces,
  log,
  resyncMs: config.resyncMs,
});
const elector = config.leaderElect
  ? new LeaderElector({
      client: mgmt,
      namespace: config.leaderElectionNamespace,
      name: config.leaderElectionId,
      identity: config.identity,
      log,
    })
  : undefined;

// A change of a Secret a ClusterBootstrap names is acted on within SECRET_POLL_MS, not at the next resync.
const SECRET_POLL_MS = 30_000;
new SecretWatch({
  mgmt,
  list: () => operator.list(),
  enqueue: (namespace, name) => queue.add({ kind: KIND, namespace, name }, 0, { urgent: true }),
  log,
  periodMs: SECRET_POLL_MS,
}).start();

// The clones of repositories no ClusterBootstrap uses any more are removed at each resync.
setInterval(() => {
  const urls = new Set<string>();
  for (const cb of operator.list()) {
    try {
      urls.add(validate(cb, policy).git.url);
    } catch {
      // An invalid spec uses no clone.
    }
  }
  if (operator.synced) void repos.prune(urls).catch((err) => log.warn({ err }, 'cannot remove unused clones'));
}, config.resyncMs).unref();

/** WEDGED_INFORMER_MS is how long the informer may fail before the process counts as wedged and /healthz fails. */
const WEDGED_INFORMER_MS = 10 * 60_000;
let shuttingDown = false;
const servers = await Promise.all([
  startHealthServer(config.healthAddr, {
    // Wedged: work waits but no reconcile has finished within the reconcile deadline, or the watch has been down for
    // long.
    healthy: () =>
      queue.stalledForMs() < config.reconcileTimeoutMs + 30_000 && operator.failingForMs < WEDGED_INFORMER_MS,
    // Ready: the cache is synced; a standby replica is ready too (it serves as soon as it leads).
    ready: () => !shuttingDown && operator.synced,
  }),
  startMetricsServer(config.metricsAddr, metrics.registry),
]);

async function lead(): Promise<void> {
  metrics.leader.set({ name: CONTROLLER }, 1);
  queue.start();
  log.info(
    { namespaces: config.watchNamespaces.length ? config.watchNamespaces : 'all', concurrency: config.concurrency },
    'reconciling ClusterBootstraps',
  );
}

async function shutdown(signal: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  log.info({ signal }, 'shutting down: cancelling the reconciles in flight');
  // Not operator.stop(): dot-i's stop exits 1. The informers end with the process.
  await queue.shutdown(20_000);
  await elector?.release().catch((err) => log.warn({ err }, 'cannot release the Lease'));
  for (const s of servers) s.close();
  log.info('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
// Nothing transient ends the process: a stray rejection is logged, and the operator goes on.
process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

log.info({ version: VERSION, leaderElect: config.leaderElect, identity: config.identity }, 'starting');
// The informers fill the cache (and the queue) on every replica, so that a new leader starts warm.
await operator.start();
metrics.leader.set({ name: CONTROLLER }, 0);
if (elector) {
  void elector.run(lead, async (err) => {
    metrics.leader.set({ name: CONTROLLER }, 0);
    log.error({ err }, 'stopped leading: cancelling the reconciles in flight, then standing by');
    queue.cancel('the leader Lease was lost');
  });
} else {
  await lead();
}
