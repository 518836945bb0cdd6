import type { ClusterBootstrap } from '../api/types.ts';
import { secretRefsOf } from '../api/validate.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Logger } from '../logger.ts';

/** referencedSecrets names the Secrets a ClusterBootstrap's spec points at, in its own namespace. */
export function referencedSecrets(cb: ClusterBootstrap): string[] {
  return secretRefsOf(cb.spec).map((r) => r.name);
}

/** SecretWatchOptions: where to read Secrets, the ClusterBootstraps to look at, what to do on a change, how often. */
export interface SecretWatchOptions {
  mgmt: KubeClient;
  list: () => ClusterBootstrap[];
  enqueue: (namespace: string, name: string) => void;
  log: Logger;
  periodMs: number;
}

/**
 * SecretWatch notices when a Secret a ClusterBootstrap names changes — new push credentials, a rotated API
 * token, a kubeconfig Cluster API has just written — and reconciles that ClusterBootstrap at once, instead
 * of at the next resync. The operator may read only the Secrets it is given and may never list or watch
 * Secrets (by design: see deploy/), so it looks at each referenced Secret's resourceVersion every period,
 * one GET per distinct Secret however many ClusterBootstraps share it.
 */
export class SecretWatch {
  readonly #seen = new Map<string, string>();
  readonly #o: SecretWatchOptions;
  #running = false;
  /** #looked is set once a first look has recorded the versions of the Secrets then in use. */
  #looked = false;

  constructor(opts: SecretWatchOptions) {
    this.#o = opts;
  }

  /**
   * start looks at once — what it sees then is the baseline, which the first reconciles read too — then every period.
   */
  start(): void {
    void this.tick();
    setInterval(() => void this.tick(), this.#o.periodMs).unref();
  }

  /** tick looks at every referenced Secret once and enqueues the ClusterBootstraps whose Secrets changed. */
  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const users = new Map<string, string[]>();
      for (const cb of this.#o.list())
        for (const name of referencedSecrets(cb)) {
          const key = `${cb.metadata.namespace}/${name}`;
          users.set(key, [...(users.get(key) ?? []), `${cb.metadata.namespace}/${cb.metadata.name}`]);
        }
      for (const key of [...this.#seen.keys()]) if (!users.has(key)) this.#seen.delete(key);
      for (const [key, cbs] of users) {
        const [namespace, name] = key.split('/');
        const version = await this.#o.mgmt
          .get<{ metadata: { resourceVersion: string } }>('v1', 'Secret', namespace, name)
          .then((s) => s?.metadata.resourceVersion ?? 'absent')
          .catch(() => undefined); // unreadable here (not bound, or the API is down): the resync covers it
        if (version === undefined) continue;
        const before = this.#seen.get(key);
        this.#seen.set(key, version);
        // A Secret first seen after the first look belongs to a new ClusterBootstrap, whose first reconcile may
        // have read an older version: it is looked at once more.
        if (before === undefined ? this.#looked : before !== version) {
          for (const cb of cbs) {
            const [, cbName] = cb.split('/');
            this.#o.log.debug(
              { namespace, name: cbName, secretName: name },
              before === undefined ? 'a referenced Secret first seen' : 'a referenced Secret changed',
            );
            this.#o.enqueue(namespace, cbName);
          }
        }
      }
      this.#looked = true;
    } finally {
      this.#running = false;
    }
  }
}
