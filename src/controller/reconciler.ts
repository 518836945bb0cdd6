import { createHash } from 'node:crypto';
import { ConditionTypes, Reasons, setCondition, findCondition } from '../api/conditions.ts';
import { PhaseError, errorMessage } from '../api/errors.ts';
import { API_VERSION, FINALIZER, KIND, RECONCILE_REQUESTED_AT, type ClusterBootstrap, type ClusterBootstrapStatus, type Condition } from '../api/types.ts';
import { validate, type BootstrapOptions } from '../api/validate.ts';
import { KubeClient, KubeError } from '../kube/client.ts';
import type { Repositories } from '../git/repository.ts';
import type { Logger } from '../logger.ts';
import type { Context } from '../phases/context.ts';
import { ensureIdentity } from '../phases/identity.ts';
import { readPushCredentials } from '../phases/credentials.ts';
import { checkDeployKey, commitManifests, trustHostKeys } from '../phases/git.ts';
import { applyToTarget, connectTarget } from '../phases/apply.ts';
import { observeFlux } from '../phases/flux.ts';
import { uninstallFlux } from '../phases/uninstall.ts';
import type { EventRecorder } from './events.ts';
import type { Metrics } from './metrics.ts';

/** Outcome tells the work queue what to do next with a key: look again after a while, or back off after an error. */
export interface Outcome {
  requeueAfterMs?: number;
  error?: Error;
}

export interface ReconcilerOptions {
  mgmt: KubeClient;
  repos: Repositories;
  log: Logger;
  events: EventRecorder;
  metrics?: Metrics;
  /** resyncMs is how often a Ready resource is checked again for drift. */
  resyncMs: number;
  targetClient?: (kubeconfig: string | undefined) => KubeClient;
}

type Step = { condition: string; run: (ctx: Context, state: State) => Promise<string> };
interface State {
  identity?: Awaited<ReturnType<typeof ensureIdentity>>;
  creds?: Awaited<ReturnType<typeof readPushCredentials>>;
  knownHosts?: string;
  head?: string;
  target?: KubeClient;
}

/**
 * PHASES is the bootstrap, in order. Each phase either returns the message of its condition or throws a
 * PhaseError; the first failure ends the reconcile, and the conditions of the phases after it keep what
 * they last said.
 */
const PHASES: Step[] = [
  {
    condition: ConditionTypes.IdentityReady,
    run: async (ctx, s) => {
      s.identity = await ensureIdentity(ctx);
      const { fingerprint, algorithm } = ctx.status.identity!;
      // Keys are never replaced behind the user's back: a changed spec.identity is reported, not applied.
      const stale = algorithm.includes(ctx.opts.identity.algorithm)
        ? ''
        : `; it is ${algorithm}, not ${ctx.opts.identity.algorithm} as spec.identity asks: delete the Secret to have a new key made, then register that one`;
      return `Flux reads with ${fingerprint} from Secret ${s.identity.secretName}${stale}`;
    },
  },
  {
    condition: ConditionTypes.HostKeyTrusted,
    run: async (ctx, s) => {
      s.creds = await readPushCredentials(ctx);
      if (ctx.opts.git.transport !== 'ssh') return 'https: the host is verified by TLS';
      s.knownHosts = await trustHostKeys(ctx, s.identity!, s.creds);
      return `pinned ${ctx.status.hostKeys!.fingerprints.join(', ')}`;
    },
  },
  {
    condition: ConditionTypes.DeployKeyAuthorized,
    run: async (ctx, s) => {
      if (s.creds!.transport === 'https') return 'https: Flux reads with the push credentials';
      await checkDeployKey(ctx, s.identity!, s.creds!, s.knownHosts ?? '');
      return `Flux's key can read ${ctx.opts.git.url}`;
    },
  },
  {
    condition: ConditionTypes.Committed,
    run: async (ctx, s) => {
      s.head = await commitManifests(ctx, s.creds!, s.knownHosts ?? '');
      return `${ctx.opts.git.path}/flux-system is up to date at ${ctx.opts.git.branch}@sha1:${s.head}`;
    },
  },
  {
    condition: ConditionTypes.Applied,
    run: async (ctx, s) => {
      s.target = await connectTarget(ctx);
      const { selfManaged } = await applyToTarget(ctx, s.target, fluxSecretData(s.identity!, s.creds!, s.knownHosts ?? ''));
      return selfManaged ? 'identity and sync applied; Flux manages its components from git' : `Flux ${ctx.opts.flux.version} components, identity and sync applied`;
    },
  },
  {
    condition: ConditionTypes.FluxReady,
    run: async (ctx, s) => {
      const revision = await observeFlux(ctx, s.target!, s.head ?? '');
      ctx.status.fluxVersion = ctx.opts.flux.version;
      return `Flux applied ${revision}`;
    },
  },
];

/**
 * Reconciler brings one ClusterBootstrap to its desired state. It reads the latest object itself, runs the
 * phases in order, and writes the status once, at the end; every write error is thrown to the queue.
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
    if (!cb.metadata.finalizers?.includes(FINALIZER)) {
      const updated = await this.#o.mgmt.mergePatch<ClusterBootstrap>(API_VERSION, KIND, namespace, name, {
        metadata: { finalizers: [...(cb.metadata.finalizers ?? []), FINALIZER], resourceVersion: cb.metadata.resourceVersion },
      });
      cb.metadata = updated.metadata;
    }

    const prev = cb.status ?? {};
    const status: ClusterBootstrapStatus = { ...prev, observedGeneration: cb.metadata.generation, conditions: [...(prev.conditions ?? [])] };
    const requestedAt = cb.metadata.annotations?.[RECONCILE_REQUESTED_AT];
    if (requestedAt) status.lastHandledReconcileAt = requestedAt;
    const gen = cb.metadata.generation;
    const mark = (type: string, s: Condition['status'], reason: string, message: string) => {
      status.conditions = setCondition(status.conditions!, { type, status: s, reason, message, observedGeneration: gen });
    };

    let outcome: Outcome = {};
    try {
      const ctx = this.#context(cb, validate(cb), log, status);
      await this.#checkConflicts(ctx);
      if (ctx.opts.suspend) {
        mark(ConditionTypes.Reconciling, 'False', Reasons.Suspended, 'spec.suspend is true: the operator leaves this cluster alone');
        status.message = 'suspended';
        await this.#writeStatus(cb, status, log);
        return {};
      }
      mark(ConditionTypes.Reconciling, 'True', Reasons.Progressing, 'reconciling');
      const state: State = {};
      for (const phase of PHASES) {
        const started = performance.now();
        try {
          mark(phase.condition, 'True', Reasons.Succeeded, await phase.run(ctx, state));
        } catch (err) {
          throw phaseError(phase.condition, err, namespace);
        } finally {
          this.#o.metrics?.phaseDuration.observe({ phase: phase.condition }, (performance.now() - started) / 1000);
        }
      }
      const message = `Flux ${ctx.opts.flux.version} is in sync at ${ctx.opts.git.branch}@sha1:${state.head}`;
      mark(ConditionTypes.Ready, 'True', Reasons.Succeeded, message);
      mark(ConditionTypes.Reconciling, 'False', Reasons.Succeeded, 'reconciled');
      mark(ConditionTypes.Stalled, 'False', Reasons.Succeeded, 'not stalled');
      status.message = message;
      outcome = { requeueAfterMs: this.#o.resyncMs };
    } catch (err) {
      const pe = err instanceof PhaseError ? err : new PhaseError(ConditionTypes.Ready, Reasons.InternalError, 'reconcile failed', { cause: err });
      const message = errorMessage(pe);
      if (pe.condition !== ConditionTypes.Ready) mark(pe.condition, 'False', pe.reason, message);
      mark(ConditionTypes.Ready, 'False', pe.reason, message);
      mark(ConditionTypes.Stalled, pe.terminal ? 'True' : 'False', pe.terminal ? pe.reason : Reasons.Progressing, pe.terminal ? message : 'not stalled');
      mark(ConditionTypes.Reconciling, pe.terminal ? 'False' : 'True', pe.terminal ? pe.reason : Reasons.Progressing, pe.terminal ? 'stalled: fix the spec' : message);
      status.message = message;
      const level = pe.reason === Reasons.DeployKeyNotAuthorized || pe.reason === Reasons.FluxNotReady ? 'info' : 'warn';
      log[level]({ err: pe, reason: pe.reason, condition: pe.condition }, message);
      outcome = pe.terminal ? {} : pe.retryAfterMs ? { requeueAfterMs: pe.retryAfterMs } : { error: pe };
    }
    await this.#writeStatus(cb, status, log);
    this.#o.metrics?.setReady(`${namespace}/${name}`, findCondition(status.conditions, ConditionTypes.Ready)?.status ?? 'Unknown');
    return outcome;
  }

  /** #context is what the phases of one pass over a ClusterBootstrap see. */
  #context(cb: ClusterBootstrap, opts: BootstrapOptions, log: Logger, status: ClusterBootstrapStatus): Context {
    return { cb, opts, mgmt: this.#o.mgmt, repos: this.#o.repos, log, targetClient: this.#o.targetClient ?? defaultTargetClient, status };
  }

  /**
   * #checkConflicts refuses a second ClusterBootstrap on the same repository, branch and path: the oldest
   * one keeps it, the others are Stalled until their spec changes.
   */
  async #checkConflicts(ctx: Context): Promise<void> {
    const { cb, opts } = ctx;
    const all = await this.#o.mgmt.list<ClusterBootstrap>(API_VERSION, KIND).catch(() => this.#o.mgmt.list<ClusterBootstrap>(API_VERSION, KIND, cb.metadata.namespace));
    const order = (x: ClusterBootstrap) => `${x.metadata.creationTimestamp}|${x.metadata.namespace}/${x.metadata.name}`;
    for (const other of all) {
      if (other.metadata.uid === cb.metadata.uid || other.metadata.deletionTimestamp) continue;
      let o: BootstrapOptions;
      try {
        o = validate(other);
      } catch {
        continue;
      }
      if (o.git.url === opts.git.url && o.git.branch === opts.git.branch && o.git.path === opts.git.path && order(other) < order(cb))
        throw new PhaseError(
          ConditionTypes.Ready,
          Reasons.PathConflict,
          `ClusterBootstrap ${other.metadata.namespace}/${other.metadata.name} already bootstraps ${opts.git.path} on ${opts.git.branch} of ${opts.git.url}: choose another spec.git.path`,
        );
    }
  }

  /** #finalize carries out the deletion policy, then lets the ClusterBootstrap go. */
  async #finalize(cb: ClusterBootstrap, log: Logger): Promise<Outcome> {
    if (!cb.metadata.finalizers?.includes(FINALIZER)) return {};
    let opts: BootstrapOptions | undefined;
    try {
      opts = validate(cb);
    } catch (err) {
      log.warn({ err }, 'the spec is invalid: deleting without uninstalling Flux');
    }
    if (opts?.deletionPolicy === 'Uninstall') {
      const ctx = this.#context(cb, opts, log, { ...cb.status });
      try {
        await uninstallFlux(ctx, await connectTarget(ctx));
      } catch (err) {
        const message = `uninstalling Flux failed (set spec.deletionPolicy to Orphan to delete without it): ${errorMessage(err)}`;
        const status = { ...cb.status, conditions: setCondition(cb.status?.conditions ?? [], { type: ConditionTypes.Ready, status: 'False', reason: Reasons.Deleting, message }) };
        await this.#writeStatus(cb, status, log);
        return { error: new Error(message, { cause: err }) };
      }
    }
    await this.#o.mgmt.mergePatch(API_VERSION, KIND, cb.metadata.namespace, cb.metadata.name, {
      metadata: { finalizers: cb.metadata.finalizers.filter((f) => f !== FINALIZER), resourceVersion: cb.metadata.resourceVersion },
    });
    log.info({ deletionPolicy: opts?.deletionPolicy ?? 'Orphan' }, 'finalized');
    return {};
  }

  /** #writeStatus writes the status only when it changed, and records an Event when Ready changed. */
  async #writeStatus(cb: ClusterBootstrap, status: ClusterBootstrapStatus, log: Logger): Promise<void> {
    if (JSON.stringify(status) === JSON.stringify(cb.status ?? {})) return;
    await this.#o.mgmt.mergePatch(API_VERSION, KIND, cb.metadata.namespace, cb.metadata.name, { status }, 'status');
    const before = findCondition(cb.status?.conditions, ConditionTypes.Ready);
    const after = findCondition(status.conditions, ConditionTypes.Ready);
    if (after && (before?.status !== after.status || before?.reason !== after.reason)) {
      await this.#o.events.record(cb, after.status === 'True' ? 'Normal' : 'Warning', after.reason, after.message).catch((err) => log.warn({ err }, 'cannot record an Event'));
    }
    if (status.lastPushedCommit && status.lastPushedCommit !== cb.status?.lastPushedCommit) {
      await this.#o.events.record(cb, 'Normal', 'Pushed', `pushed ${status.lastPushedRevision}`).catch((err) => log.warn({ err }, 'cannot record an Event'));
    }
  }
}

/** phaseError reports an error as a failure of the phase that was running, naming the fix for a refused API call. */
function phaseError(condition: string, err: unknown, namespace: string): PhaseError {
  if (err instanceof PhaseError) return err.inPhase(condition);
  if (err instanceof KubeError && err.code === 403)
    return new PhaseError(
      condition,
      Reasons.Forbidden,
      `the operator is not allowed to do this in the management cluster: bind ClusterRole flux-bootstrap-operator-secrets in namespace ${namespace} (deploy/examples/tenant-rolebinding.yaml)`,
      { cause: err, retryAfterMs: 30_000 },
    );
  return new PhaseError(condition, Reasons.InternalError, `${condition} failed`, { cause: err });
}

/** fluxSecretData is what Flux reads git with: its own key and the pinned host keys, or the https credentials. */
function fluxSecretData(identity: NonNullable<State['identity']>, creds: NonNullable<State['creds']>, knownHosts: string): Record<string, string> {
  if (creds.transport === 'https') return { username: creds.username, password: creds.password };
  return { identity: identity.privateKey, 'identity.pub': identity.publicKey, known_hosts: knownHosts };
}

const targetClients = new Map<string, KubeClient>();

/**
 * defaultTargetClient keeps one client per kubeconfig (keyed by its content, so a rotated kubeconfig gets a
 * new client), so that discovery is not repeated on every reconcile of every cluster.
 */
function defaultTargetClient(kubeconfig: string | undefined): KubeClient {
  const key = kubeconfig === undefined ? '' : createHash('sha256').update(kubeconfig).digest('hex');
  let client = targetClients.get(key);
  if (!client) {
    client = kubeconfig === undefined ? KubeClient.fromDefault() : KubeClient.fromKubeconfig(kubeconfig);
    if (targetClients.size >= 1024) targetClients.delete(targetClients.keys().next().value!);
    targetClients.set(key, client);
  }
  return client;
}
