import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import { invalidRef, readRef, type Context, type KubeApi } from './context.ts';
import type { Step } from './types.ts';

/**
 * connectTarget builds a client for the target cluster from the kubeconfig Secret (Cluster API's
 * `<cluster>-kubeconfig`, key `value`), or for the operator's own cluster when spec.target is omitted (where
 * the operator's flags allow it), and checks that the API server answers.
 */
export async function connectTarget(ctx: Context): Promise<Step<KubeApi>> {
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
  let client: KubeApi;
  try {
    client = ctx.targetClient(kubeconfig);
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
