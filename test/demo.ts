/**
 * `npm run demo`: the operator's main job, on the lab. Starts the lab, installs the CRD, runs the operator,
 * applies deploy/examples/clusterbootstrap.yaml (pointed at the lab's empty repository), registers the deploy
 * key the operator asks for, starts Flux's controllers and ends when the ClusterBootstrap is Ready. The lab
 * and the operator keep running afterwards; `npm run lab:down` stops everything.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { authorizeKey, fluxStart, labUp, PROJECT_ROOT, DEFAULT_LAB_DIR, freePorts } from './lab/lab.ts';
import { KubeClient } from '../src/kube/client.ts';
import { API_VERSION, KIND, type ClusterBootstrap } from '../src/api/types.ts';

const say = (line: string) => process.stdout.write(`\x1b[1m==>\x1b[0m ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const started = Date.now();
say('starting the lab (the first run builds etcd, Kubernetes and Flux from Go modules: allow 10-15 minutes)');
const env = await labUp({ log: (l) => process.stdout.write(`    ${l}\n`) });
const kubectl = (...args: string[]) =>
  execFileSync(join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', env.LAB_MGMT_KUBECONFIG, ...args], { encoding: 'utf8' });
const mgmt = KubeClient.fromTrustedKubeconfig(readFileSync(env.LAB_MGMT_KUBECONFIG, 'utf8'));

say('installing the ClusterBootstrap CRD into the management cluster');
process.stdout.write(kubectl('apply', '--server-side', '-k', join(PROJECT_ROOT, 'crds')));
kubectl('wait', '--for=condition=Established', 'crd/clusterbootstraps.fluxbootstrap.dev', '--timeout=30s');

const example = yaml.load(
  readFileSync(join(PROJECT_ROOT, 'deploy/examples/clusterbootstrap.yaml'), 'utf8'),
) as ClusterBootstrap;
const { namespace, name } = example.metadata;
say(`creating namespace ${namespace} with the target's kubeconfig Secret and the operator's push key`);
await mgmt.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }, { fieldManager: 'demo' });
await mgmt.apply(
  {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: example.spec.target!.kubeconfigSecretRef!.name, namespace },
    stringData: { value: readFileSync(env.LAB_TARGET_KUBECONFIG, 'utf8') },
  },
  { fieldManager: 'demo' },
);
await mgmt.apply(
  {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: example.spec.git.secretRef.name, namespace },
    stringData: { identity: readFileSync(env.LAB_GIT_WRITER_KEY, 'utf8') },
  },
  { fieldManager: 'demo' },
);

const pidFile = join(DEFAULT_LAB_DIR, 'pids', 'operator');
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
if (existsSync(pidFile) && alive(Number(readFileSync(pidFile, 'utf8')))) {
  say('the operator is already running (logs: .lab/logs/operator.log)');
} else {
  say('starting the operator (logs: .lab/logs/operator.log)');
  const [metricsPort, healthPort] = await freePorts(2);
  const workDir = join(DEFAULT_LAB_DIR, 'operator');
  mkdirSync(workDir, { recursive: true });
  const logFd = openSync(join(env.LAB_LOGS, 'operator.log'), 'a');
  const operator = spawn(
    process.execPath,
    [
      join(PROJECT_ROOT, 'src/main.ts'),
      '--leader-elect=false',
      `--work-dir=${workDir}`,
      `--metrics-addr=127.0.0.1:${metricsPort}`,
      `--health-addr=127.0.0.1:${healthPort}`,
    ],
    {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, KUBECONFIG: env.LAB_MGMT_KUBECONFIG },
      stdio: ['ignore', logFd, logFd],
      detached: true,
    },
  );
  operator.unref();
  closeSync(logFd);
  writeFileSync(pidFile, `${operator.pid}\n`);
}

say(`applying deploy/examples/clusterbootstrap.yaml with spec.git.url = ${env.LAB_GIT_URL}`);
example.spec.git.url = env.LAB_GIT_URL;
await mgmt.apply(example as any, { fieldManager: 'demo' });

async function waitFor(
  what: string,
  test: (cb: ClusterBootstrap) => boolean,
  timeoutMs = 180_000,
): Promise<ClusterBootstrap> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const cb = await mgmt.get<ClusterBootstrap>(API_VERSION, KIND, namespace, name);
    if (cb && test(cb)) return cb;
    const msg = cb?.status?.message ?? '';
    if (msg && msg !== last) process.stdout.write(`    status: ${msg.slice(0, 160)}\n`);
    last = msg;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; see .lab/logs/operator.log`);
    await sleep(500);
  }
}

const withKey = await waitFor('the public key', (cb) => Boolean(cb.status?.identity?.publicKey));
const publicKey = withKey.status!.identity!.publicKey;
say(`the operator asks for this deploy key (read-only) on the repository:\n    ${publicKey}`);
say('registering it on the lab git server, as you would on your git host');
authorizeKey(publicKey, { access: 'ro' });

await waitFor(
  'the commit',
  (cb) => cb.status?.conditions?.some((c) => c.type === 'Committed' && c.status === 'True') ?? false,
);
say("starting Flux's source-controller and kustomize-controller against the target cluster");
await fluxStart();

const ready = await waitFor(
  'Ready',
  (cb) => cb.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
);
say(`Ready in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
process.stdout.write(kubectl('get', 'clusterbootstrap', '-n', namespace));
const commit = ready.status!.lastPushedCommit!;
const bare = join(env.LAB_GIT_ROOT, env.LAB_GIT_URL.split('/').at(-1)!);
process.stdout.write(
  `\n${execFileSync('git', ['--git-dir', bare, 'show', '--stat', '--format=commit %H%nAuthor: %an <%ae>%n%n    %s%n', commit], { encoding: 'utf8' })}`,
);
process.stdout.write(`
Look around:
  source .lab/env
  $LAB_BIN/kubectl --kubeconfig $LAB_MGMT_KUBECONFIG describe clusterbootstrap -n ${namespace} ${name}
  $LAB_BIN/kubectl --kubeconfig $LAB_TARGET_KUBECONFIG get deploy,gitrepositories,kustomizations -n flux-system
  GIT_SSH_COMMAND="$LAB_GIT_SSH_COMMAND" git clone $LAB_GIT_URL /tmp/fleet   # add manifests under clusters/${name}/ and push
  tail -f .lab/logs/operator.log
Stop everything:
  npm run lab:down
`);
