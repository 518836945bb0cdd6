import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Metrics are the operator's Prometheus series, on a registry of its own. */
export interface Metrics {
  registry: Registry;
  reconciles: Counter<'result'>;
  reconcileDuration: Histogram<never>;
  phaseDuration: Histogram<'phase'>;
  queueDepth: Gauge<never>;
  resources: Gauge<'ready'>;
  /** setReady records the Ready status of one resource (undefined once it is gone) in the resources gauge. */
  setReady: (key: string, ready: string | undefined) => void;
}

/** createMetrics registers the series: reconcile counts by result, durations by phase, queue depth, resources by Ready. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const ready = new Map<string, string>();
  const resources = new Gauge({ name: 'fluxbootstrap_resources', help: 'ClusterBootstraps by Ready status.', labelNames: ['ready'], registers: [registry] });
  const buckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  return {
    registry,
    reconciles: new Counter({ name: 'fluxbootstrap_reconcile_total', help: 'Reconciles by result (success, requeue, error).', labelNames: ['result'], registers: [registry] }),
    reconcileDuration: new Histogram({ name: 'fluxbootstrap_reconcile_duration_seconds', help: 'Duration of one reconcile.', buckets, registers: [registry] }),
    phaseDuration: new Histogram({ name: 'fluxbootstrap_phase_duration_seconds', help: 'Duration of each reconcile phase.', labelNames: ['phase'], buckets, registers: [registry] }),
    queueDepth: new Gauge({ name: 'fluxbootstrap_queue_depth', help: 'Keys waiting in the work queue.', registers: [registry] }),
    resources,
    setReady(key, status) {
      if (status === undefined) ready.delete(key);
      else ready.set(key, status);
      resources.reset();
      for (const s of ready.values()) resources.inc({ ready: s });
    },
  };
}
