import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import type { KubeClient } from '../kube/client.ts';
import { decodeSecret } from '../kube/objects.ts';
import type { Context } from './context.ts';
import type { Step } from './types.ts';

/**
 * connectTarget builds a client for the target cluster from the kubeconfig Secret (Cluster API's
 * `<cluster>-kubeconfig`, key `value`), or for the operator's own cluster when spec.target is omitted (where
 * the operator's flags allow it), and checks that the API server answers.
 */
export async function connectTarget(ctx: Context): Promise<Step<KubeClient>> {
  const { opts, cb } = ctx;
  let kubeconfig: string | undefined;
  if (opts.target) {
    const ref = `Secret ${cb.metadata.namespace}/${opts.target.secretName}`;
    const secret = await ctx.mgmt.get('v1', 'Secret', cb.metadata.namespace, opts.target.secretName);
    if (!secret)
      throw new PhaseError(Reasons.KubeconfigSecretMissing, `${ref} (spec.target.kubeconfigSecretRef) does not exist`, {
        retryAfterMs: 30_000,
      });
    kubeconfig = decodeSecret(secret)[opts.target.key];
    if (!kubeconfig)
      throw new PhaseError(Reasons.KubeconfigInvalid, `${ref} has no key "${opts.target.key}" holding a kubeconfig`, {
        retryAfterMs: 60_000,
      });
  }
  let client: KubeClient;
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
      { retryAfterMs: 60_000 },
    );
  }
  try {
    await client.request('GET', '/version');
  } catch (cause) {
    throw new PhaseError(
      Reasons.TargetUnreachable,
      `the target cluster's API server ${client.server} does not answer`,
      { cause },
    );
  }
  return { result: client };
}
