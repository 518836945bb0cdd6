import { KubeConfig } from '@kubernetes/client-node';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { KubeClient } from './kube/client.ts';
import { Repositories } from './git/repository.ts';
import { Reconciler } from './controller/reconciler.ts';
import { WorkQueue } from './controller/queue.ts';
import { ClusterBootstrapOperator } from './controller/operator.ts';
import { LeaderElector } from './controller/leader.ts';
import { kubeEventRecorder } from './controller/events.ts';
import { createMetrics } from './controller/metrics.ts';
import { startHealthServer, startMetricsServer } from './server.ts';
import { join } from 'node:path';
import { PhaseError } from './api/errors.ts';

// main wires the operator together: configuration, logger, clients, queue, watch, leader election, probes.
const config = loadConfig();
const log = createLogger(config.logLevel);
const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault();
const mgmt = new KubeClient(kubeConfig);
const metrics = createMetrics();
const reconciler = new Reconciler({
  mgmt,
  repos: new Repositories(join(config.workDir, 'repos')),
  log,
  events: kubeEventRecorder(mgmt),
  metrics,
  resyncMs: config.resyncMs,
});
const queue = new WorkQueue({
  concurrency: config.concurrency,
  worker: async (key) => {
    const [namespace, name] = key.split('/');
    const end = metrics.reconcileDuration.startTimer();
    try {
      return await reconciler.reconcile(namespace, name);
    } finally {
      end();
    }
  },
  onResult: (key, result, error) => {
    metrics.reconciles.inc({ result });
    // The reconciler logs the phase errors it reports in status; anything else is logged here.
    if (error && !(error instanceof PhaseError)) {
      const [namespace, name] = key.split('/');
      log.warn({ namespace, name, err: error }, 'reconcile failed; retrying with backoff');
    }
  },
  onDepth: (depth) => metrics.queueDepth.set(depth),
});
const operator = new ClusterBootstrapOperator({ kubeConfig, mgmt, queue, namespaces: config.watchNamespaces, log, resyncMs: config.resyncMs });
const elector = config.leaderElect
  ? new LeaderElector({ client: mgmt, namespace: config.leaderElectionNamespace, name: config.leaderElectionId, identity: config.identity, log })
  : undefined;

let shuttingDown = false;
const servers = await Promise.all([
  startHealthServer(config.healthAddr, { healthy: () => true, ready: () => !shuttingDown }),
  startMetricsServer(config.metricsAddr, metrics.registry),
]);

async function lead(): Promise<void> {
  queue.start();
  await operator.start();
  log.info({ namespaces: config.watchNamespaces.length ? config.watchNamespaces : 'all', concurrency: config.concurrency }, 'watching ClusterBootstraps');
}

async function shutdown(signal: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  log.info({ signal }, 'shutting down: finishing the reconciles in flight');
  // Not operator.stop(): dot-i treats its aborted watch as a failure and exits 1. The watch ends with us.
  await queue.shutdown(20_000);
  await elector?.release().catch((err) => log.warn({ err }, 'cannot release the Lease'));
  for (const s of servers) s.close();
  log.info('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

log.info({ version: process.env.npm_package_version, leaderElect: config.leaderElect, identity: config.identity }, 'starting');
if (elector) {
  void elector.run(lead, (err) => {
    log.error({ err }, 'stopped leading: exiting so that a new leader takes over');
    process.exit(1);
  });
} else {
  await lead();
}
