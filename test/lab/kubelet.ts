/**
 * The lab's stand-in for a kubelet: while Flux's controllers run as local processes (see `fluxStart` in flux.ts),
 * nothing would ever report their Deployments as available, since the lab has no kubelet, scheduler or
 * deployment controller. Every ~2 s this process marks the Deployments `source-controller` and
 * `kustomize-controller` in `flux-system` of the target cluster as rolled out and available (status
 * subresource: replicas, ready/available/updated = spec.replicas, observedGeneration = generation,
 * Available=True and Progressing=True/NewReplicaSetAvailable), whenever they exist and their status is stale.
 *
 * Started detached by flux.ts: `node test/lab/kubelet.ts --dir <lab dir> [--target <i>]` (i: 0 the lab's target,
 * default; 1…N an extra target of fleet.ts); stopped by PID (`.lab/pids/kubelet`, `.lab/pids/target-<i>-kubelet`).
 */
import path from 'node:path';
import { kubeRequest, sleep } from './kube.ts';
import { readLabEnv } from './env.ts';
import { targetCreds } from './fleet.ts';

const NAMESPACE = 'flux-system';
const DEPLOYMENTS = ['source-controller', 'kustomize-controller'];

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

function wantedStatus(dep: any, now: string): any {
  const replicas = dep.spec?.replicas ?? 1;
  const old = dep.status?.conditions ?? [];
  const cond = (type: string, reason: string, message: string) => {
    const prev = old.find((c: any) => c.type === type);
    const same = prev?.status === 'True';
    return {
      type,
      status: 'True',
      reason,
      message,
      lastUpdateTime: same && prev.reason === reason ? prev.lastUpdateTime : now,
      lastTransitionTime: same ? prev.lastTransitionTime : now,
    };
  };
  return {
    observedGeneration: dep.metadata.generation,
    replicas,
    updatedReplicas: replicas,
    readyReplicas: replicas,
    availableReplicas: replicas,
    conditions: [
      cond('Available', 'MinimumReplicasAvailable', 'Deployment has minimum availability (lab).'),
      cond(
        'Progressing',
        'NewReplicaSetAvailable',
        `ReplicaSet "${dep.metadata.name}" has successfully progressed (lab).`,
      ),
    ],
  };
}

function stale(dep: any): boolean {
  const s = dep.status ?? {};
  const replicas = dep.spec?.replicas ?? 1;
  const ok = (t: string, reason?: string) =>
    (s.conditions ?? []).some((c: any) => c.type === t && c.status === 'True' && (!reason || c.reason === reason));
  return !(
    s.observedGeneration === dep.metadata.generation &&
    s.replicas === replicas &&
    s.updatedReplicas === replicas &&
    s.readyReplicas === replicas &&
    s.availableReplicas === replicas &&
    (s.unavailableReplicas ?? 0) === 0 &&
    ok('Available') &&
    ok('Progressing', 'NewReplicaSetAvailable')
  );
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--dir');
  if (i < 0 || !process.argv[i + 1]) throw new Error('usage: kubelet.ts --dir <lab dir> [--target <i>]');
  const dir = path.resolve(process.argv[i + 1]);
  const t = process.argv.indexOf('--target');
  const target = t < 0 ? 0 : Number(process.argv[t + 1]);
  const env = readLabEnv(dir);
  const creds = targetCreds(env, target);
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  process.on('SIGINT', () => (stop = true));
  log(`lab kubelet: watching deployments ${DEPLOYMENTS.join(', ')} in ${NAMESPACE} at ${creds.server}`);
  while (!stop) {
    for (const name of DEPLOYMENTS) {
      try {
        const base = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${name}`;
        const got = await kubeRequest(creds, 'GET', base);
        if (got.status === 404) continue;
        if (got.status !== 200) {
          log(`get ${name}: HTTP ${got.status} ${got.text.slice(0, 200)}`);
          continue;
        }
        if (!stale(got.json)) continue;
        const patch = { status: wantedStatus(got.json, new Date().toISOString().replace(/\.\d+Z$/, 'Z')) };
        const res = await kubeRequest(creds, 'PATCH', `${base}/status`, patch, 'application/merge-patch+json');
        log(
          res.status === 200
            ? `marked ${name} available (generation ${got.json.metadata.generation})`
            : `patch ${name}: HTTP ${res.status} ${res.text.slice(0, 200)}`,
        );
      } catch (err) {
        log(`${name}: ${(err as Error).message}`);
      }
    }
    for (let t = 0; t < 20 && !stop; t++) await sleep(100);
  }
  log('lab kubelet: stopped');
}

main().catch((err) => {
  log(`lab kubelet failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
