import type { ClusterBootstrap } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';

/** EventRecorder records Kubernetes Events on a ClusterBootstrap, as `kubectl describe` shows them. */
export interface EventRecorder {
  record(cb: ClusterBootstrap, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

/** kubeEventRecorder writes core/v1 Events to the management cluster. */
export function kubeEventRecorder(mgmt: KubeClient, component = 'flux-bootstrap-operator'): EventRecorder {
  return {
    async record(cb, type, reason, message) {
      const now = new Date().toISOString();
      await mgmt.request('POST', `/api/v1/namespaces/${encodeURIComponent(cb.metadata.namespace)}/events`, {
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
        message: message.slice(0, 1024),
        source: { component },
        reportingComponent: component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    },
  };
}
