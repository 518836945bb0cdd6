import { ConditionTypes, findCondition, Reasons, reasonInfo } from '../api/conditions.ts';
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
import { guarded, reasonOf, sleep } from '../cancel.ts';
import type { Repositories } from '../git/repository.ts';
import { SecretIdentityStore } from '../kube/identity.ts';
import type { Logger } from '../logger.ts';
import type { Clock, Context, GitRemote, KubeApi, ProviderKeys, ProviderPulls } from '../phases/context.ts';
import { asPhaseError } from '../phases/errors.ts';
import { bootstrap, teardown, type RunPhase } from '../phases/pipeline.ts';
import { providerKeys, providerPulls } from '../providers/index.ts';
import type { ProviderOptions } from '../providers/types.ts';
import { forgetHostKeys, scanHostKeysShared } from '../ssh/hostkeys.ts';
import type { EventRecorder } from './events.ts';
import type { Metrics } from './metrics.ts';
import { PathIndex } from './paths.ts';
import type { Outcome } from './queue.ts';
import { markCondition, summarize, writeStatus, type PassResult } from './status.ts';

export interface ReconcilerOptions {
  mgmt: KubeApi;
  /** git is the git host: Repositories (with ssh/'s shared host-key scan), or a test's own GitRemote. */
  git: Repositories | GitRemote;
  log: Logger;
  events: EventRecorder;
  metrics?: Metrics;
  /** resyncMs is how often a Ready resource is checked again for drift. */
  resyncMs: number;
  /**
   * targetClient returns a client for a target's kubeconfig, or for the operator's own cluster when it is undefined.
   */
  targetClient: (kubeconfig: string | undefined) => KubeApi;
  /** provider connects to a git host's API; providers/index.ts's by default. */
  provider?: (opts: ProviderOptions & { signal?: AbortSignal }) => ProviderKeys;
  /** pulls replaces the pull-request adapter (providerPulls), for tests. */
  pulls?: (opts: ProviderOptions & { signal?: AbortSignal }) => ProviderPulls;
  /** clock is the time the phases see; the real one by default. */
  clock?: (signal: AbortSignal) => Clock;
  /** policy is what the operator's flags allow beyond the safe default. */
  policy?: Policy;
  /** paths indexes the ClusterBootstraps the operator knows of by repository, branch and path (conflicts). */
  paths?: PathIndex;
}

/** realClock is the wall clock, with a sleep that ends on abort. */
const realClock = (signal: AbortSignal): Clock => ({ now: Date.now, sleep: (ms) => sleep(ms, signal) });

/**
 * Reconciler brings one ClusterBootstrap to its desired state. It reads the latest object itself, runs the
 * bootstrap, and writes the status once, at the end; every write error is thrown to the queue. A pass whose
 * signal is aborted stops at its next call (and ends the calls in flight where the adapter can) and writes
 * nothing: it ends as a retry, and the next pass resumes from what is stored.
 */
export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #paths: PathIndex;

  constructor(opts: ReconcilerOptions) {
    this.#o = opts;
    this.#paths = opts.paths ?? new PathIndex(opts.policy);
  }

  /** reconcile runs one pass for `namespace/name` and says when to look again; a cancelled pass is a retry. */
  async reconcile(namespace: string, name: string, signal = new AbortController().signal): Promise<Outcome> {
    try {
      return await this.#reconcile(namespace, name, signal);
    } catch (err) {
      if (signal.aborted) return { kind: 'retry', error: reasonOf(signal) };
      throw err;
    }
  }

  async #reconcile(namespace: string, name: string, signal: AbortSignal): Promise<Outcome> {
    const log = this.#o.log.child({ namespace, name });
    const mgmt = this.#bind(this.#o.mgmt, signal);
    const cb = await mgmt.get<ClusterBootstrap>(API_VERSION, KIND, namespace, name);
    if (!cb) {
      this.#o.metrics?.setReady(`${namespace}/${name}`, undefined);
      return { kind: 'done' };
    }
    if (cb.metadata.deletionTimestamp) return this.#finalize(cb, mgmt, log, signal);
    await this.#addFinalizer(cb, mgmt);

    const status: ClusterBootstrapStatus = {
      ...cb.status,
      observedGeneration: cb.metadata.generation,
      conditions: [...(cb.status?.conditions ?? [])],
    };
    const requestedAt = cb.metadata.annotations?.[RECONCILE_REQUESTED_AT];
    if (requestedAt) status.lastHandledReconcileAt = requestedAt;
    const clock = (this.#o.clock ?? realClock)(signal);
    const now = () => new Date(clock.now()).toISOString();
    const result = await this.#pass(cb, status, mgmt, log, signal, clock);
    // A cancelled pass reports nothing: what it stored (keys, a commit) the next pass finds and goes on from.
    if (signal.aborted) return { kind: 'retry', error: reasonOf(signal) };
    if (result.kind === 'failed') {
      const level = reasonInfo(result.error.reason).quiet ? 'info' : 'warn';
      log[level](
        { err: result.error, reason: result.error.reason, condition: result.condition },
        errorMessage(result.error),
      );
    }
    const outcome = summarize(status, result, cb.metadata.generation, this.#o.resyncMs, now);
    await this.#writeStatus(cb, status, mgmt, log, signal);
    const ready = findCondition(status.conditions, ConditionTypes.Ready)?.status ?? 'Unknown';
    this.#o.metrics?.setReady(`${namespace}/${name}`, ready);
    return outcome;
  }

  /** #pass validates, checks for conflicts and suspension, then runs the bootstrap, timing and marking each phase. */
  async #pass(
    cb: ClusterBootstrap,
    status: ClusterBootstrapStatus,
    mgmt: KubeApi,
    log: Logger,
    signal: AbortSignal,
    clock: Clock,
  ): Promise<PassResult> {
    const now = () => new Date(clock.now()).toISOString();
    let current: string = ConditionTypes.Ready;
    const phase: RunPhase = async (condition, step) => {
      current = condition;
      const started = performance.now();
      try {
        const { result, message, status: found } = await step();
        Object.assign(status, found);
        if (message) markCondition(status, cb.metadata.generation, condition, 'True', Reasons.Succeeded, message, now);
        return result;
      } catch (err) {
        if (err instanceof PhaseError && err.status) Object.assign(status, err.status);
        throw err;
      } finally {
        this.#o.metrics?.phaseDuration.observe({ phase: condition }, (performance.now() - started) / 1000);
      }
    };
    let opts: BootstrapOptions | undefined;
    try {
      opts = validate(cb, this.#o.policy);
      this.#paths.upsert(cb);
      this.#paths.check(cb);
      if (opts.suspend) return { kind: 'suspended' };
      return { kind: 'ready', message: await bootstrap(this.#context(cb, opts, mgmt, log, signal, clock), phase) };
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

  /** #bind gives an adapter the run's signal: calls in flight end on abort, and none starts after it. */
  #bind(api: KubeApi, signal: AbortSignal): KubeApi {
    return guarded(api.withSignal?.(signal) ?? api, signal);
  }

  #context(
    cb: ClusterBootstrap,
    opts: BootstrapOptions,
    mgmt: KubeApi,
    log: Logger,
    signal: AbortSignal,
    clock = (this.#o.clock ?? realClock)(signal),
  ): Context {
    const { git, targetClient } = this.#o;
    const remote: GitRemote = {
      readHead: (url, branch, auth) => git.readHead(url, branch, auth, signal),
      update: (req) => git.update({ ...req, signal }),
      scanHostKeys: 'scanHostKeys' in git ? (host, port) => git.scanHostKeys(host, port) : scanHostKeysShared,
    };
    const provider = this.#o.provider ?? providerKeys;
    const pulls = this.#o.pulls ?? providerPulls;
    return {
      cb,
      opts,
      log,
      mgmt,
      git: guarded(remote, signal),
      identity: guarded(new SecretIdentityStore(mgmt, cb), signal),
      provider: (o) => guarded(provider({ ...o, signal }), signal),
      pulls: (o) => guarded(pulls({ ...o, signal }), signal),
      targetClient: (kubeconfig) => this.#bind(targetClient(kubeconfig), signal),
      clock,
      signal,
      resyncMs: this.#o.resyncMs,
      record: this.#recorder(cb, log, signal),
    };
  }

  /**
   * #recorder writes Events on one ClusterBootstrap; a failure to write one is logged, never thrown; none after a
   * cancel.
   */
  #recorder(cb: ClusterBootstrap, log: Logger, signal: AbortSignal): Context['record'] {
    return async (type, reason, message) => {
      if (signal.aborted) return;
      await this.#o.events
        .record(cb, type, reason, message)
        .catch((err) => log.warn({ err }, 'cannot record an Event'));
    };
  }

  async #addFinalizer(cb: ClusterBootstrap, mgmt: KubeApi): Promise<void> {
    if (cb.metadata.finalizers?.includes(FINALIZER)) return;
    const updated = await mgmt.mergePatch<ClusterBootstrap>(
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

  /** #finalize carries out the deletion policy (phases/pipeline.ts's teardown), then lets the ClusterBootstrap go. */
  async #finalize(cb: ClusterBootstrap, mgmt: KubeApi, log: Logger, signal: AbortSignal): Promise<Outcome> {
    this.#paths.remove(cb);
    if (!cb.metadata.finalizers?.includes(FINALIZER)) return { kind: 'done' };
    let opts: BootstrapOptions | undefined;
    try {
      opts = validate(cb, this.#o.policy);
    } catch (err) {
      log.warn({ err }, 'the spec is invalid: deleting without uninstalling Flux');
    }
    if (opts?.deletionPolicy === 'Uninstall') {
      try {
        await teardown(this.#context(cb, opts, mgmt, log, signal));
      } catch (err) {
        if (signal.aborted) return { kind: 'retry', error: reasonOf(signal) };
        const message =
          `uninstalling Flux failed (set spec.deletionPolicy to Orphan to delete without it): ` +
          `${errorMessage(err)}`;
        const status = { ...cb.status };
        const failed = new PhaseError(Reasons.Deleting, message);
        summarize(
          status,
          { kind: 'failed', condition: ConditionTypes.Ready, error: failed },
          cb.metadata.generation,
          this.#o.resyncMs,
        );
        await this.#writeStatus(cb, status, mgmt, log, signal);
        return { kind: 'retry', error: new Error(message, { cause: err }) };
      }
    }
    await mgmt.mergePatch(API_VERSION, KIND, cb.metadata.namespace, cb.metadata.name, {
      metadata: {
        finalizers: (cb.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        resourceVersion: cb.metadata.resourceVersion,
      },
    });
    log.info({ deletionPolicy: opts?.deletionPolicy ?? 'Orphan' }, 'finalized');
    return { kind: 'done' };
  }

  /** #writeStatus writes the status when it changed, and records an Event when Ready changed or a commit was pushed. */
  async #writeStatus(
    cb: ClusterBootstrap,
    status: ClusterBootstrapStatus,
    mgmt: KubeApi,
    log: Logger,
    signal: AbortSignal,
  ): Promise<void> {
    if (!(await writeStatus(mgmt, cb, status))) return;
    const before = findCondition(cb.status?.conditions, ConditionTypes.Ready);
    const after = findCondition(status.conditions, ConditionTypes.Ready);
    const record = this.#recorder(cb, log, signal);
    if (after && (before?.status !== after.status || before?.reason !== after.reason))
      await record(after.status === 'True' ? 'Normal' : 'Warning', after.reason, after.message);
    if (status.lastPushedCommit && status.lastPushedCommit !== cb.status?.lastPushedCommit)
      await record('Normal', 'Pushed', `pushed ${status.lastPushedRevision}`);
  }
}
