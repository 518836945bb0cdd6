import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { invalidRef, readRef, type Context, type KubeApi } from './context.ts';
import type { Step } from './types.ts';

/**
 * connectTarget builds a client for the target cluster from the kubeconfig Secret (Cluster API's
 * `<cluster>-kubeconfig`, key `value`), or for the operator's own cluster when spec.target is omitted (where
 * the operator's flags allow it) — or takes the one judgeKubeconfig built — and checks that the API server
 * answers.
 */
export async function connectTarget(ctx: Context, judged?: KubeApi): Promise<Step<KubeApi>> {
  const client = judged ?? (await targetOf(ctx));
  try {
    await client.request('GET', '/version');
  } catch (cause) {
    throw new PhaseError(
      Reasons.TargetUnreachable,
      `the target cluster's API server ${client.server} does not answer`,
      {
        cause,
      },
    );
  }
  return { result: client };
}

/**
 * judgeKubeconfig refuses, before anything is committed, a kubeconfig that can never be used (an exec plugin,
 * a token file, no current context …): no cluster folder is pushed for a cluster the operator cannot reach. A
 * Secret not there yet is no verdict — Cluster API writes it once the control plane is up — and the commit
 * goes ahead. It returns the client it built, for connectTarget after the commit (one read of the Secret a pass).
 */
export async function judgeKubeconfig(ctx: Context): Promise<Step<KubeApi | undefined>> {
  if (!ctx.opts.target) return { result: undefined };
  try {
    return { result: await targetOf(ctx) };
  } catch (err) {
    if (!(err instanceof PhaseError && err.reason === Reasons.KubeconfigSecretMissing)) throw err;
    return { result: undefined };
  }
}

/** targetOf reads the kubeconfig Secret and builds the target's client from it, or the operator's own. */
async function targetOf(ctx: Context): Promise<KubeApi> {
  const { opts } = ctx;
  let kubeconfig: string | undefined;
  if (opts.target) {
    const ref = {
      name: opts.target.secretName,
      field: 'spec.target.kubeconfigSecretRef',
      what: "the cluster's kubeconfig",
    };
    kubeconfig = (await readRef(ctx, ref, Reasons.KubeconfigSecretMissing))[opts.target.key];
    if (!kubeconfig)
      throw invalidRef(ctx, ref, `has no key "${opts.target.key}" holding a kubeconfig`, Reasons.KubeconfigInvalid);
  }
  try {
    return ctx.targetClient(kubeconfig);
  } catch (err) {
    // A parser's message may quote the kubeconfig, credentials included: only our own checks' words reach status.
    const why =
      err instanceof Error && err.name === 'KubeconfigError'
        ? `: ${err.message}`
        : ': it must be a kubeconfig YAML with a current context';
    throw new PhaseError(
      Reasons.KubeconfigInvalid,
      `the kubeconfig in Secret ${opts.target?.secretName} (key ${opts.target?.key}) cannot be used${why}`,
    );
  }
}
