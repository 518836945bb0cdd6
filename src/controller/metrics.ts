import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueObserver, WorkQueue } from './queue.ts';

/** CONTROLLER is the controller label of the controller-runtime series, and the workqueue's name. */
export const CONTROLLER = 'clusterbootstrap';

/** Metrics are the operator's Prometheus series, on a registry of its own. */
export interface Metrics {
  registry: Registry;
  /** queueObserver turns the work queue's doings into controller-runtime's and client-go's workqueue series. */
  queueObserver: QueueObserver<unknown>;
  /** watchQueue has the gauges that read the queue's state when scraped. */
  watchQueue: (queue: WorkQueue<any>, maxConcurrent: number) => void;
  phaseDuration: Histogram<'phase'>;
  leader: Gauge<'name'>;
  restRequests: Counter<'code' | 'method' | 'host'>;
  /** setReady records the Ready status of one resource (undefined once it is gone) in the resources gauge. */
  setReady: (key: string, ready: string | undefined) => void;
}

/**
 * createMetrics registers the series in the ecosystem's names — controller-runtime's reconcile series,
 * client-go's workqueue, leader election and REST client series — so that dashboards built for
 * controller-runtime operators work unchanged, plus this operator's own: phase durations, resources by
 * Ready status and its build info.
 */
export function createMetrics(version: string): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const controller = { controller: CONTROLLER };
  const name = { name: CONTROLLER };
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

  new Gauge({
    name: 'fluxbootstrap_build_info',
    help: 'The operator build, by version.',
    labelNames: ['version'],
    registers,
  }).set({ version }, 1);
  const reconciles = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller.',
    labelNames: ['controller', 'result'],
    registers,
  });
  const errors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller.',
    labelNames: ['controller'],
    registers,
  });
  const terminal = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors per controller.',
    labelNames: ['controller'],
    registers,
  });
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller.',
    labelNames: ['controller'],
    buckets,
    registers,
  });
  for (const result of ['success', 'error', 'requeue', 'requeue_after']) reconciles.inc({ ...controller, result }, 0);
  errors.inc(controller, 0);
  terminal.inc(controller, 0);

  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue.',
    labelNames: ['name'],
    registers,
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue.',
    labelNames: ['name'],
    registers,
  });
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested.',
    labelNames: ['name'],
    buckets,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes.',
    labelNames: ['name'],
    buckets,
    registers,
  });
  const depth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue.',
    labelNames: ['name'],
    registers,
  });
  adds.inc(name, 0);
  retries.inc(name, 0);

  const ready = new Map<string, string>();
  const resources = new Gauge({
    name: 'fluxbootstrap_resources',
    help: 'ClusterBootstraps by Ready status.',
    labelNames: ['ready'],
    registers,
  });
  return {
    registry,
    queueObserver: {
      added: (d) => (adds.inc(name), depth.set(name, d)),
      started: (_key, queuedMs, d) => (queueDuration.observe(name, queuedMs / 1000), depth.set(name, d)),
      retried: () => retries.inc(name),
      finished: (_key, result, workMs, outcome) => {
        reconciles.inc({ ...controller, result });
        reconcileTime.observe(controller, workMs / 1000);
        workDuration.observe(name, workMs / 1000);
        if (result === 'error') errors.inc(controller);
        if (outcome.kind === 'stalled') terminal.inc(controller);
      },
    },
    watchQueue(queue, maxConcurrent) {
      new Gauge({
        name: 'controller_runtime_max_concurrent_reconciles',
        help: 'Maximum number of concurrent reconciles per controller.',
        labelNames: ['controller'],
        registers,
      }).set(controller, maxConcurrent);
      new Gauge({
        name: 'controller_runtime_active_workers',
        help: 'Number of currently used workers per controller.',
        labelNames: ['controller'],
        registers,
        collect() {
          this.set(controller, queue.active);
        },
      });
      const running = (): number[] => queue.runningSince().map((t) => (Date.now() - t) / 1000);
      new Gauge({
        name: 'workqueue_unfinished_work_seconds',
        help: 'How many seconds of work has been done that is in progress and has not been observed by work_duration.',
        labelNames: ['name'],
        registers,
        collect() {
          this.set(
            name,
            running().reduce((a, b) => a + b, 0),
          );
        },
      });
      new Gauge({
        name: 'workqueue_longest_running_processor_seconds',
        help: 'How many seconds has the longest running processor for workqueue been running.',
        labelNames: ['name'],
        registers,
        collect() {
          this.set(name, Math.max(0, ...running()));
        },
      });
    },
    phaseDuration: new Histogram({
      name: 'fluxbootstrap_phase_duration_seconds',
      help: 'Duration of each reconcile phase.',
      labelNames: ['phase'],
      buckets,
      registers,
    }),
    leader: new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.',
      labelNames: ['name'],
      registers,
    }),
    restRequests: new Counter({
      name: 'rest_client_requests_total',
      help: 'Number of HTTP requests, partitioned by status code, method, and host (management or target).',
      labelNames: ['code', 'method', 'host'],
      registers,
    }),
    setReady(key, status) {
      if (status === undefined) ready.delete(key);
      else ready.set(key, status);
      resources.reset();
      for (const s of ready.values()) resources.inc({ ready: s });
    },
  };
}
