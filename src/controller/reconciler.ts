import { ConditionTypes, findCondition, Reasons } from '../api/conditions.ts';
import { errorMessage, PhaseError } from '../api/errors.ts';
import {
  API_VERSION,
  FINALIZER,
  KIND,
  RECONCILE_REQUESTED_AT,
  type ClusterBootstrap,
  type ClusterBootstrapStatus,
} from '../api/types.ts';
import { validate, type BootstrapOptions, type Policy } from '../api/validate.ts';
import { KubeError, type KubeClient } from '../kube/client.ts';
import type { Repositories } from '../git/repository.ts';
import type { Logger } from '../logger.ts';
import type { Context } from '../phases/context.ts';
import { bootstrap, type RunPhase } from '../phases/pipeline.ts';
import { connectTarget } from '../phases/target.ts';
import { uninstallFlux } from '../phases/uninstall.ts';
import { mergePatchOf } from '../kube/objects.ts';
import { unregisterDeployKeys } from '../phases/deploykey.ts';
import { identitySecretName } from '../phases/identity.ts';
import { forgetHostKeys } from '../ssh/hostkeys.ts';
import type { EventRecorder } from './events.ts';
import type { Metrics } from './metrics.ts';
import type { Outcome } from './queue.ts';
import { markCondition, summarize, type PassResult } from './status.ts';

export interface ReconcilerOptions {
  mgmt: KubeClient;
  repos: Repositories;
  log: Logger;
  events: EventRecorder;
  metrics?: Metrics;
  /** resyncMs is how often a Ready resource is checked again for drift. */
  resyncMs: number;
  /**
   * targetClient returns a client for a target's kubeconfig, or for the operator's own cluster when it is undefined.
   */
  targetClient: (kubeconfig: string | undefined) => KubeClient;
  /** policy is what the operator's flags allow beyond the safe default. */
  policy?: Policy;
  /**
   * siblings lists the ClusterBootstraps the operator knows of (from its informer's cache), for the path-conflict
   * check.
   */
  siblings?: () => ClusterBootstrap[];
}

/**
 * Reconciler brings one ClusterBootstrap to its desired state. It reads the latest object itself, runs the
 * bootstrap, and writes the status once, at the end; every write error is thrown to the queue.
 */
export class Reconciler {
  readonly #o: ReconcilerOptions;

  constructor(opts: ReconcilerOptions) {
    this.#o = opts;
  }

  /** reconcile runs one pass for `namespace/name` and says when to look again. */
  async reconcile(namespace: string, name: string): Promise<Outcome> {
    const log = this.#o.log.child({ namespace, name });
    const cb = await this.#o.mgmt.get<ClusterBootstrap>(API_VERSION, KIND, namespace, name);
    if (!cb) {
      this.#o.metrics?.setReady(`${namespace}/${name}`, undefined);
      return {};
    }
    if (cb.metadata.deletionTimestamp) return this.#finalize(cb, log);
    await this.#addFinalizer(cb);

    const status: ClusterBootstrapStatus = {
      ...cb.status,
      observedGeneration: cb.metadata.generation,
      conditions: [...(cb.status?.conditions ?? [])],
    };
    const requestedAt = cb.metadata.annotations?.[RECONCILE_REQUESTED_AT];
    if (requestedAt) status.lastHandledReconcileAt = requestedAt;
    const result = await this.#pass(cb, status, log);
    if (result.kind === 'failed') {
      const level =
        result.error.reason === Reasons.DeployKeyNotAuthorized || result.error.reason === Reasons.FluxNotReady
          ? 'info'
          : 'warn';
      log[level](
        { err: result.error, reason: result.error.reason, condition: result.condition },
        errorMessage(result.error),
      );
    }
    const outcome = summarize(status, result, cb.metadata.generation, this.#o.resyncMs);
    await this.#writeStatus(cb, status, log);
    this.#o.metrics?.setReady(
      `${namespace}/${name}`,
      findCondition(status.conditions, ConditionTypes.Ready)?.status ?? 'Unknown',
    );
    return outcome;
  }

  /** #pass validates, checks for conflicts and suspension, then runs the bootstrap, timing and marking each phase. */
  async #pass(cb: ClusterBootstrap, status: ClusterBootstrapStatus, log: Logger): Promise<PassResult> {
    let current: string = ConditionTypes.Ready;
    const phase: RunPhase = async (condition, step) => {
      current = condition;
      const started = performance.now();
      try {
        const { result, message, status: found } = await step();
        Object.assign(status, found);
        if (message) markCondition(status, cb.metadata.generation, condition, 'True', Reasons.Succeeded, message);
        return result;
      } finally {
        this.#o.metrics?.phaseDuration.observe({ phase: condition }, (performance.now() - started) / 1000);
      }
    };
    let opts: BootstrapOptions | undefined;
    try {
      opts = validate(cb, this.#o.policy);
      const ctx = this.#context(cb, opts, log);
      this.#checkConflicts(cb, ctx.opts);
      if (ctx.opts.suspend) return { kind: 'suspended' };
      markCondition(
        status,
        cb.metadata.generation,
        ConditionTypes.Reconciling,
        'True',
        Reasons.Progressing,
        'reconciling',
      );
      return { kind: 'ready', message: await bootstrap(ctx, phase) };
    } catch (err) {
      const error = asPhaseError(err, current, cb.metadata.namespace);
      // A changed host key is the host's trust, wherever git first saw it; the next look scans afresh.
      if (error.reason === Reasons.HostKeyChanged) {
        if (opts) forgetHostKeys(opts.git.host, opts.git.port);
        return { kind: 'failed', condition: ConditionTypes.HostKeyTrusted, error };
      }
      return { kind: 'failed', condition: current, error };
    }
  }

  #context(cb: ClusterBootstrap, opts: BootstrapOptions, log: Logger): Context {
    return {
      cb,
      opts,
      mgmt: this.#o.mgmt,
      repos: this.#o.repos,
      log,
      targetClient: this.#o.targetClient,
      resyncMs: this.#o.resyncMs,
      record: this.#recorder(cb, log),
    };
  }

  /** #recorder writes Events on one ClusterBootstrap; a failure to write one is logged, never thrown. */
  #recorder(cb: ClusterBootstrap, log: Logger): Context['record'] {
    return (type, reason, message) =>
      this.#o.events.record(cb, type, reason, message).catch((err) => log.warn({ err }, 'cannot record an Event'));
  }

  async #addFinalizer(cb: ClusterBootstrap): Promise<void> {
    if (cb.metadata.finalizers?.includes(FINALIZER)) return;
    const updated = await this.#o.mgmt.mergePatch<ClusterBootstrap>(
      API_VERSION,
      KIND,
      cb.metadata.namespace,
      cb.metadata.name,
      {
        metadata: {
          finalizers: [...(cb.metadata.finalizers ?? []), FINALIZER],
          resourceVersion: cb.metadata.resourceVersion,
        },
      },
    );
    cb.metadata = updated.metadata;
  }

  /**
   * #checkConflicts refuses a second ClusterBootstrap on the same repository, branch and path: the oldest
   * one keeps it, the others are Stalled until their spec changes. It reads the informer's cache, not the API.
   */
  #checkConflicts(cb: ClusterBootstrap, opts: BootstrapOptions): void {
    const order = (x: ClusterBootstrap) => `${x.metadata.creationTimestamp}|${x.metadata.namespace}/${x.metadata.name}`;
    for (const other of this.#o.siblings?.() ?? []) {
      if (other.metadata.uid === cb.metadata.uid || other.metadata.deletionTimestamp || order(other) >= order(cb))
        continue;
      let o: BootstrapOptions;
      try {
        o = validate(other, this.#o.policy);
      } catch {
        continue;
      }
      if (o.git.url === opts.git.url && o.git.branch === opts.git.branch && o.git.path === opts.git.path)
        throw new PhaseError(
          Reasons.PathConflict,
          `ClusterBootstrap ${other.metadata.namespace}/${other.metadata.name} already bootstraps ${opts.git.path} ` +
            `on ${opts.git.branch} of ${opts.git.url}: choose another spec.git.path`,
        );
    }
  }

  /** #finalize carries out the deletion policy, then lets the ClusterBootstrap go. */
  async #finalize(cb: ClusterBootstrap, log: Logger): Promise<Outcome> {
    if (!cb.metadata.finalizers?.includes(FINALIZER)) return {};
    let opts: BootstrapOptions | undefined;
    try {
      opts = validate(cb, this.#o.policy);
    } catch (err) {
      log.warn({ err }, 'the spec is invalid: deleting without uninstalling Flux');
    }
    if (opts?.deletionPolicy === 'Uninstall') {
      const ctx = this.#context(cb, opts, log);
      try {
        await this.#uninstall(ctx);
        await unregisterDeployKeys(ctx, identitySecretName(cb.metadata.name));
      } catch (err) {
        const message =
          `uninstalling Flux failed (set spec.deletionPolicy to Orphan to delete without it): ` +
          `${errorMessage(err)}`;
        const status = { ...cb.status };
        summarize(
          status,
          { kind: 'failed', condition: ConditionTypes.Ready, error: new PhaseError(Reasons.Deleting, message) },
          cb.metadata.generation,
          this.#o.resyncMs,
        );
        await this.#writeStatus(cb, status, log);
        return { error: new Error(message, { cause: err }) };
      }
    }
    return this.#letGo(cb, log, opts?.deletionPolicy ?? 'Orphan');
  }

  /**
   * #uninstall removes Flux from the target; when the kubeconfig Secret is gone (Cluster API deletes it with its
   * cluster) there is nothing left to uninstall from.
   */
  async #uninstall(ctx: Context): Promise<void> {
    let target: KubeClient;
    try {
      target = (await connectTarget(ctx)).result;
    } catch (err) {
      if (!(err instanceof PhaseError && err.reason === Reasons.KubeconfigSecretMissing)) throw err;
      ctx.log.warn({ err }, 'the kubeconfig Secret is gone: deleting without uninstalling Flux');
      await ctx.record('Warning', 'UninstallSkipped', `${errorMessage(err)}: Flux was not uninstalled`);
      return;
    }
    await uninstallFlux(ctx, target);
  }

  async #letGo(cb: ClusterBootstrap, log: Logger, policy: string): Promise<Outcome> {
    await this.#o.mgmt.mergePatch(API_VERSION, KIND, cb.metadata.namespace, cb.metadata.name, {
      metadata: {
        finalizers: (cb.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        resourceVersion: cb.metadata.resourceVersion,
      },
    });
    log.info({ deletionPolicy: policy }, 'finalized');
    return {};
  }

  /** #writeStatus writes the status only when it changed, and records an Event when Ready changed. */
  async #writeStatus(cb: ClusterBootstrap, status: ClusterBootstrapStatus, log: Logger): Promise<void> {
    if (JSON.stringify(status) === JSON.stringify(cb.status ?? {})) return;
    await this.#o.mgmt.mergePatch(
      API_VERSION,
      KIND,
      cb.metadata.namespace,
      cb.metadata.name,
      { status: mergePatchOf(cb.status ?? {}, status) },
      'status',
    );
    const before = findCondition(cb.status?.conditions, ConditionTypes.Ready);
    const after = findCondition(status.conditions, ConditionTypes.Ready);
    const record = this.#recorder(cb, log);
    if (after && (before?.status !== after.status || before?.reason !== after.reason))
      await record(after.status === 'True' ? 'Normal' : 'Warning', after.reason, after.message);
    if (status.lastPushedCommit && status.lastPushedCommit !== cb.status?.lastPushedCommit)
      await record('Normal', 'Pushed', `pushed ${status.lastPushedRevision}`);
  }
}

/** asPhaseError reports any error as a PhaseError, naming the fix for a refused management-cluster call. */
function asPhaseError(err: unknown, condition: string, namespace: string): PhaseError {
  if (err instanceof PhaseError) return err;
  if (err instanceof KubeError && err.code === 403)
    return new PhaseError(
      Reasons.Forbidden,
      `the operator is not allowed to do this in the management cluster: bind ClusterRole ` +
        `flux-bootstrap-operator-secrets in namespace ${namespace} (deploy/examples/tenant-rolebinding.yaml)`,
      { cause: err, retryAfterMs: 30_000 },
    );
  return new PhaseError(Reasons.InternalError, `${condition} failed`, { cause: err });
}
