import type { KubeClient } from '../kube/client.ts';
import { KubeError } from '../kube/client.ts';
import type { Logger } from '../logger.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  /**
   * leaseDurationS is how long a candidate waits after it last saw the Lease change before taking it (client-go: 15 s).
   */
  leaseDurationS?: number;
  /**
   * renewDeadlineMs is how long the leader keeps trying to renew before it stops leading (client-go: 10 s); less than
   * the lease duration.
   */
  renewDeadlineMs?: number;
  /** retryPeriodMs is how often candidates try and the leader renews (client-go: 2 s). */
  retryPeriodMs?: number;
}

/**
 * LeaderElector holds a coordination.k8s.io Lease as client-go's leader election does. A candidate judges
 * the Lease expired by when it last saw the Lease change on its own clock — never by the holder's clock —
 * and takes it only then. The leader renews it every retry period and stops leading when it could not renew
 * within the renew deadline, which is shorter than the lease duration: the old leader has stopped before any
 * other replica may take over, so two leaders never overlap.
 */
export class LeaderElector {
  readonly #o: Required<LeaderElectionOptions>;
  #leading = false;
  #stopped = false;
  /** #observed is the Lease as last seen, and when (on this replica's clock) it last changed. */
  #observed?: { record: string; at: number };

  constructor(opts: LeaderElectionOptions) {
    this.#o = { leaseDurationS: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
    if (this.#o.renewDeadlineMs >= this.#o.leaseDurationS * 1000)
      throw new Error('the renew deadline must be shorter than the lease duration');
  }

  get leading(): boolean {
    return this.#leading;
  }

  /**
   * run campaigns until stopped: it waits until this replica leads, calls onLead, keeps renewing, and calls
   * onLost when renewing failed for the renew deadline — then campaigns again. The process never exits for it.
   */
  async run(onLead: () => Promise<void>, onLost: (err: Error) => Promise<void>): Promise<void> {
    while (!this.#stopped) {
      while (!this.#stopped && !(await this.#tryAcquire())) await sleep(this.#o.retryPeriodMs);
      if (this.#stopped) return;
      this.#leading = true;
      this.#o.log.info(
        { lease: `${this.#o.namespace}/${this.#o.name}`, identity: this.#o.identity },
        'became the leader',
      );
      await onLead();
      let lastRenew = Date.now();
      while (!this.#stopped) {
        await sleep(this.#o.retryPeriodMs);
        if (this.#stopped) return;
        // Each renewal is time-boxed to what is left of the renew deadline: a slow API server cannot keep this
        // replica believing it leads after its Lease could have gone to another.
        const left = lastRenew + this.#o.renewDeadlineMs - Date.now();
        if (left > 0 && (await this.#tryAcquire(AbortSignal.timeout(left)))) lastRenew = Date.now();
        else if (Date.now() - lastRenew >= this.#o.renewDeadlineMs) break;
      }
      if (this.#stopped) return;
      this.#leading = false;
      await onLost(
        new Error(
          `could not renew the Lease ${this.#o.namespace}/${this.#o.name} within ${this.#o.renewDeadlineMs} ms`,
        ),
      );
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
  async #tryAcquire(signal?: AbortSignal): Promise<boolean> {
    const { namespace, name, identity, leaseDurationS } = this.#o;
    const client = signal ? this.#o.client.withSignal(signal) : this.#o.client;
    const now = new Date().toISOString().replace('Z', '000Z');
    try {
      const lease = await client.get('coordination.k8s.io/v1', 'Lease', namespace, name);
      if (!lease) {
        await client.create({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: leaseDurationS,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: 0,
          },
        });
        return true;
      }
      const spec = lease.spec ?? {};
      const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
      if (this.#observed?.record !== record) this.#observed = { record, at: Date.now() };
      const mine = spec.holderIdentity === identity;
      const expired = this.#observed.at + (spec.leaseDurationSeconds ?? leaseDurationS) * 1000 < Date.now();
      if (!mine && spec.holderIdentity && !expired) return false;
      lease.spec = {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: leaseDurationS,
        renewTime: now,
        ...(mine ? {} : { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      };
      await client.request('PUT', await client.resourcePath('coordination.k8s.io/v1', 'Lease', namespace, name), lease);
      return true;
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) this.#o.log.warn({ err }, 'cannot take or renew the Lease');
      return false;
    }
  }
}
