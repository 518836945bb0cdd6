import type { KubeClient } from '../kube/client.ts';
import { KubeError } from '../kube/client.ts';
import type { Logger } from '../logger.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  leaseDurationS?: number;
  renewEveryMs?: number;
  retryEveryMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * LeaderElector holds a coordination.k8s.io Lease, as client-go's leader election does: a candidate takes
 * the Lease when it is free or expired, the leader renews it, and a leader that cannot renew before the
 * Lease expires stops leading (the process exits, so a restart begins again as a candidate).
 */
export class LeaderElector {
  readonly #o: Required<LeaderElectionOptions>;
  #leading = false;
  #stopped = false;

  constructor(opts: LeaderElectionOptions) {
    this.#o = { leaseDurationS: 15, renewEveryMs: 5_000, retryEveryMs: 2_000, ...opts };
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** run waits until this candidate leads, calls onLead, then keeps renewing; onLost is called if it stops leading. */
  async run(onLead: () => Promise<void>, onLost: (err: Error) => void): Promise<void> {
    while (!this.#stopped && !(await this.#tryAcquire())) await sleep(this.#o.retryEveryMs);
    if (this.#stopped) return;
    this.#leading = true;
    this.#o.log.info({ lease: `${this.#o.namespace}/${this.#o.name}`, identity: this.#o.identity }, 'became the leader');
    await onLead();
    let lastRenew = Date.now();
    while (!this.#stopped) {
      await sleep(this.#o.renewEveryMs);
      if (this.#stopped) break;
      if (await this.#tryAcquire()) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.#o.leaseDurationS * 1000) {
        this.#leading = false;
        onLost(new Error(`lost the Lease ${this.#o.namespace}/${this.#o.name}`));
        return;
      }
    }
  }

  /** release gives the Lease up at shutdown, so that another replica takes over at once. */
  async release(): Promise<void> {
    this.#stopped = true;
    if (!this.#leading) return;
    this.#leading = false;
    const lease = await this.#o.client.get('coordination.k8s.io/v1', 'Lease', this.#o.namespace, this.#o.name);
    if (lease?.spec?.holderIdentity !== this.#o.identity) return;
    lease.spec.holderIdentity = '';
    lease.spec.leaseDurationSeconds = 1;
    await this.#o.client.request('PUT', await this.#path(), lease).catch(() => undefined);
  }

  async #path(): Promise<string> {
    return this.#o.client.resourcePath('coordination.k8s.io/v1', 'Lease', this.#o.namespace, this.#o.name);
  }

  /** #tryAcquire takes or renews the Lease; a conflicting write (409) means someone else got there first. */
  async #tryAcquire(): Promise<boolean> {
    const { client, namespace, name, identity, leaseDurationS } = this.#o;
    const now = new Date().toISOString().replace('Z', '000Z');
    try {
      const lease = await client.get('coordination.k8s.io/v1', 'Lease', namespace, name);
      if (!lease) {
        await client.create({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: leaseDurationS, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        });
        return true;
      }
      const spec = lease.spec ?? {};
      const expired = !spec.renewTime || Date.parse(spec.renewTime) + (spec.leaseDurationSeconds ?? leaseDurationS) * 1000 < Date.now();
      const mine = spec.holderIdentity === identity;
      if (!mine && spec.holderIdentity && !expired) return false;
      lease.spec = {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: leaseDurationS,
        renewTime: now,
        ...(mine ? {} : { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      };
      await client.request('PUT', await this.#path(), lease);
      return true;
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) this.#o.log.warn({ err }, 'cannot take or renew the Lease');
      return false;
    }
  }
}
