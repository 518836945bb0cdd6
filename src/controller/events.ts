import type { ClusterBootstrap } from '../api/types.ts';
import { KubeError, type KubeClient } from '../kube/client.ts';

/** EventRecorder records Kubernetes Events on a ClusterBootstrap, as `kubectl describe` shows them. */
export interface EventRecorder {
  record(cb: ClusterBootstrap, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

const MAX_SERIES = 4096;

/**
 * kubeEventRecorder writes core/v1 Events to the management cluster, with the reporting controller and
 * instance, as client-go's recorder does. An Event identical to one it wrote before (same object, type,
 * reason and message) is not written anew: its count and lastTimestamp are patched, so a failure retried
 * every few seconds is one Event with a growing count.
 */
export function kubeEventRecorder(
  mgmt: KubeClient,
  instance: string,
  component = 'flux-bootstrap-operator',
): EventRecorder {
  const series = new Map<string, { name: string; count: number }>();
  return {
    async record(cb, type, reason, message) {
      const now = new Date().toISOString();
      const note = message.slice(0, 1024);
      const ns = encodeURIComponent(cb.metadata.namespace);
      const key = JSON.stringify([cb.metadata.uid, type, reason, note]);
      const seen = series.get(key);
      if (seen) {
        try {
          await mgmt.request(
            'PATCH',
            `/api/v1/namespaces/${ns}/events/${encodeURIComponent(seen.name)}`,
            { count: seen.count + 1, lastTimestamp: now },
            'application/merge-patch+json',
          );
          seen.count++;
          return;
        } catch (err) {
          if (!(err instanceof KubeError && err.code === 404)) throw err;
          series.delete(key); // the Event expired (its TTL is an hour): write a new one
        }
      }
      const event = await mgmt.request<{ metadata: { name: string } }>('POST', `/api/v1/namespaces/${ns}/events`, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: `${cb.metadata.name}.`, namespace: cb.metadata.namespace },
        involvedObject: {
          apiVersion: cb.apiVersion,
          kind: cb.kind,
          name: cb.metadata.name,
          namespace: cb.metadata.namespace,
          uid: cb.metadata.uid,
          resourceVersion: cb.metadata.resourceVersion,
        },
        type,
        reason,
        message: note,
        action: 'Reconcile',
        source: { component },
        reportingComponent: component,
        reportingInstance: instance,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
      if (series.size >= MAX_SERIES) series.delete(series.keys().next().value!);
      series.set(key, { name: event.metadata.name, count: 1 });
    },
  };
}
