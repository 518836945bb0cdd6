import { createHash } from 'node:crypto';
import { KubeClient, type KubeClientOptions } from './client.ts';
import type { TargetKubeconfigOptions } from './kubeconfig.ts';

/** TargetClientsOptions are what every target client gets, and how many are kept. */
export interface TargetClientsOptions extends TargetKubeconfigOptions {
  /** max is how many clients are kept; the least recently used goes first (default 1024). */
  max?: number;
  /** client sets the deadline, body cap, retries and connections of each client. */
  client?: KubeClientOptions;
}

/**
 * TargetClients keeps one KubeClient per kubeconfig, keyed by a hash of its content, so that discovery and
 * connections are reused across reconciles and a rotated kubeconfig gets a new client. Kubeconfigs go
 * through parseTargetKubeconfig; `undefined` means the operator's own cluster, from the default loader.
 */
export class TargetClients {
  readonly #clients = new Map<string, KubeClient>();
  readonly #opts: TargetClientsOptions;
  readonly #max: number;

  constructor(opts: TargetClientsOptions = {}) {
    this.#opts = opts;
    this.#max = Math.max(1, opts.max ?? 1024);
  }

  /**
   * get returns the client for a kubeconfig, or for the operator's own cluster when it is undefined. It throws
   * KubeconfigError for a kubeconfig the operator refuses. Bound, so it can be passed on as a function.
   */
  readonly get = (kubeconfig: string | undefined): KubeClient => {
    const key =
      kubeconfig === undefined ? 'default' : `sha256:${createHash('sha256').update(kubeconfig).digest('hex')}`;
    let client = this.#clients.get(key);
    if (client) {
      // Most recently used goes last, so the first key is the one to drop.
      this.#clients.delete(key);
    } else {
      client =
        kubeconfig === undefined
          ? KubeClient.fromDefault(this.#opts.client)
          : KubeClient.fromKubeconfig(kubeconfig, {
              ...this.#opts.client,
              allowExec: this.#opts.allowExec,
              allowInsecureTLS: this.#opts.allowInsecureTLS,
            });
      // A dropped client is not closed: calls still running on it finish, its idle connections time out.
      if (this.#clients.size >= this.#max) this.#clients.delete(this.#clients.keys().next().value!);
    }
    this.#clients.set(key, client);
    return client;
  };

  /** size is how many clients are kept. */
  get size(): number {
    return this.#clients.size;
  }

  /** close drops every client and its idle connections. */
  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
