/**
 * `npm run bench -- --clusters N`: figures, not assertions. On a lab of its own it bootstraps N real target
 * clusters from one repository three ways, each on N fresh targets (the previous round's stopped first):
 *
 * - seed: the seed's manual procedure, scripted with the standard tools, one cluster after another;
 * - floor: the same objects server-side applied to every target in parallel from this process, plus one push
 *   of every cluster's files — no keys, no checks: what this machine cannot beat;
 * - operator: one ClusterBootstrapSet selecting the N clusters' kubeconfig Secrets, the operator at its
 *   defaults, deploy keys registered as they appear in status (as a git host's API or a person would).
 *
 * Then it checks that every cluster's files are in the repository, every target has its objects and no
 * commit is lost, prints a table, and as its last line one JSON object with the figures.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { validate } from '../src/api/validate.ts';
import { API_VERSION, KIND, SET_KIND, type ClusterBootstrap } from '../src/api/types.ts';
import { KubeClient, type KubeObject } from '../src/kube/client.ts';
import { componentObjects, fluxFiles } from '../src/manifests/files.ts';
import { syncObjects } from '../src/manifests/sync.ts';
import { labDown, labUp, PROJECT_ROOT, type LabEnv } from './lab/lab.ts';
import { makeTargetPki, startTargets, targetName, targetProcesses, type LabTarget } from './lab/fleet.ts';
import { run, running, stopProcesses } from './lab/process.ts';

/**
 * ROUNDS are the ways measured (BENCH_ROUNDS, comma-separated; all three by default): `operator` alone is quick to
 * iterate on.
 */
const ROUNDS = (process.env.BENCH_ROUNDS ?? 'seed,floor,operator').split(',');
const { values } = parseArgs({
  options: { clusters: { type: 'string', default: process.env.BENCH_CLUSTERS ?? '20' } },
});
const N = Number(values.clusters);
if (!Number.isInteger(N) || N < 1)
  throw new Error(`--clusters must be a positive whole number, not ${values.clusters}`);

// The benchmark runs its own lab, beside any test or demo lab.
process.env.E2E_LAB_DIR ??= join(tmpdir(), 'fbo-bench-lab');
const {
  authorize,
  createRepoUrl,
  git,
  installCRD,
  mgmt,
  namespace,
  pushSecret,
  secret,
  sleep,
  startOperator,
  waitFor,
  E2E_LAB_DIR,
} = await import('./e2e/harness.ts').then((h) => ({ ...h, createRepoUrl: h.repo }));

const VERSION = 'v2.9.4';
/** OPERATOR_LOG keeps the operator's log lines of the last run, to read where its time went. */
const OPERATOR_LOG = join(tmpdir(), 'fbo-bench-operator.log');
const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const row = (what: string, value: string | number | null) => console.log(`${what.padEnd(58)} ${value ?? '-'}`);
const seconds = (ms: number) => Math.round(ms / 10) / 100;
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)];

/** optionsFor is what the operator would render for a cluster whose files live in `path` of the repository. */
function optionsFor(url: string, path: string) {
  const cb = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: 'c', namespace: 'bench', uid: 'u' },
    spec: { git: { url, secretRef: { name: 's' }, path }, flux: { version: VERSION } },
  };
  return validate(cb as ClusterBootstrap, { targetlessNamespaces: ['bench'] });
}

/**
 * fleet starts N fresh targets numbered from `first`; `stop` ends them so that the next round has the machine to
 * itself.
 */
async function fleet(
  env: LabEnv,
  first: number,
): Promise<{ targets: LabTarget[]; cpu: () => number; stop: () => Promise<void> }> {
  const indexes = Array.from({ length: N }, (_, k) => first + k);
  const t0 = performance.now();
  await Promise.all(indexes.map((i) => makeTargetPki(env.LAB_DIR, i)));
  // Ten at a time: fifty API servers starting at once on two cores miss their own deadlines.
  const targets: LabTarget[] = [];
  for (let k = 0; k < indexes.length; k += 10)
    targets.push(
      ...(await startTargets(env.LAB_DIR, env.LAB_BIN, env.LAB_ETCD_URL, indexes.slice(k, k + 10), { log: () => {} })),
    );
  say(`${N} targets up in ${seconds(performance.now() - t0)} s`);
  const pids = await settle(env, indexes);
  return {
    targets,
    cpu: () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    stop: () => stopProcesses(env.LAB_DIR, indexes.flatMap(targetProcesses)),
  };
}

/**
 * settle waits until the new API servers have finished starting up — their post-start work burns CPU for a while
 * after /readyz answers — so that no round pays for the start of its targets: until they use less than a tenth of
 * a core together over a second (at most a minute).
 */
async function settle(env: LabEnv, indexes: number[]): Promise<number[]> {
  const pids = indexes
    .map((i) => running(env.LAB_DIR, `${targetName(i)}-apiserver`))
    .filter((p): p is number => p !== undefined);
  const t0 = performance.now();
  let last = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  for (let i = 0; i < 60; i++) {
    await sleep(1000);
    const now = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const busy = now - last;
    last = now;
    if (busy < 0.1) break;
  }
  say(`targets settled in ${seconds(performance.now() - t0)} s`);
  return pids;
}

/** A clone of the bench repository with the lab's writer key, and what has been pushed to it by the bench itself. */
function workClone(url: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbo-bench-clone-'));
  git(['clone', '-q', url, dir]);
  git(['config', 'user.email', 'seed@example.com'], dir);
  git(['config', 'user.name', 'seed'], dir);
  return dir;
}

/**
 * writeFiles writes a cluster's three flux-system files into a clone, as `flux install --export` and a person would.
 */
function writeFiles(clone: string, opts: ReturnType<typeof optionsFor>): void {
  for (const f of fluxFiles(opts)) {
    mkdirSync(dirname(join(clone, f.path)), { recursive: true });
    writeFileSync(join(clone, f.path), f.render(undefined));
  }
}

/**
 * seed runs the seed's procedure for each cluster, one after another: a key pair, the git host's keys, the
 * identity Secret rendered by kubectl, the deploy key registered, the three files committed and pushed, then the
 * components applied, the CRDs waited for, the Secret and the sync objects applied. Returns the commits it pushed.
 */
async function seed(env: LabEnv, url: string, targets: LabTarget[]): Promise<string[]> {
  const kubectl = join(env.LAB_BIN, 'kubectl');
  const pushed: string[] = [];
  for (const t of targets) {
    const work = mkdtempSync(join(tmpdir(), 'fbo-bench-seed-'));
    const opts = optionsFor(url, `clusters/seed-${t.index}`);
    const k = (args: string[]) => run(kubectl, ['--kubeconfig', t.kubeconfig, ...args], { timeoutMs: 120_000 });
    await run('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      `flux-seed-${t.index}`,
      '-f',
      join(work, 'identity'),
    ]);
    writeFileSync(join(work, 'known_hosts'), await run('ssh-keyscan', ['-p', env.LAB_GIT_PORT, env.LAB_GIT_HOST]));
    const secretYaml = await run(kubectl, [
      'create',
      'secret',
      'generic',
      'flux-system',
      '--namespace',
      'flux-system',
      '--dry-run=client',
      '-o',
      'yaml',
      `--from-file=identity=${join(work, 'identity')}`,
      `--from-file=identity.pub=${join(work, 'identity.pub')}`,
      `--from-file=known_hosts=${join(work, 'known_hosts')}`,
    ]);
    writeFileSync(join(work, 'secret.yaml'), secretYaml);
    authorize(readFileSync(join(work, 'identity.pub'), 'utf8'));
    const clone = join(work, 'repo');
    const gitEnv = {
      ...process.env,
      GIT_SSH_COMMAND: env.LAB_GIT_SSH_COMMAND,
      GIT_AUTHOR_NAME: 'seed',
      GIT_AUTHOR_EMAIL: 'seed@example.com',
      GIT_COMMITTER_NAME: 'seed',
      GIT_COMMITTER_EMAIL: 'seed@example.com',
    };
    await run('git', ['clone', '-q', url, clone], { env: gitEnv });
    writeFiles(clone, opts);
    await run('git', ['add', '-A'], { cwd: clone, env: gitEnv });
    await run('git', ['commit', '-q', '-m', `Add Flux ${VERSION} for seed-${t.index}`], { cwd: clone, env: gitEnv });
    await run('git', ['push', '-q', 'origin', 'HEAD:main'], { cwd: clone, env: gitEnv });
    pushed.push((await run('git', ['rev-parse', 'HEAD'], { cwd: clone })).trim());
    const dir = join(clone, opts.sync.path, 'flux-system');
    await k(['apply', '--server-side', '-f', join(dir, 'gotk-components.yaml')]);
    await k(['wait', '--for=condition=Established', 'crd', '-l', 'app.kubernetes.io/part-of=flux', '--timeout=120s']);
    await k(['apply', '-f', join(work, 'secret.yaml')]);
    await k(['apply', '--server-side', '-f', join(dir, 'gotk-sync.yaml')]);
  }
  return pushed;
}

/**
 * floor applies every target's objects server-side in parallel from this process (CRDs, then the rest, then the
 * identity Secret and the sync objects) and pushes every cluster's files in one commit. Returns that commit.
 */
async function floor(url: string, targets: LabTarget[]): Promise<string> {
  const push = (async () => {
    const clone = workClone(url);
    for (const t of targets) writeFiles(clone, optionsFor(url, `clusters/floor-${t.index}`));
    git(['add', '-A'], clone);
    git(['commit', '-q', '-m', `Add Flux ${VERSION} for ${targets.length} clusters`], clone);
    git(['push', '-q', 'origin', 'HEAD:main'], clone);
    return git(['rev-parse', 'HEAD'], clone);
  })();
  await Promise.all(
    targets.map(async (t) => {
      const client = KubeClient.fromTrustedKubeconfig(readFileSync(t.kubeconfig, 'utf8'), {
        fieldManager: 'bench-floor',
      });
      const opts = optionsFor(url, `clusters/floor-${t.index}`);
      const objects = componentObjects(opts.flux) as KubeObject[];
      const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');
      await Promise.all(crds.map((o) => client.apply(o)));
      for (const crd of crds)
        await waitFor(`CRD ${crd.metadata.name} Established`, async () =>
          (
            await client.get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', undefined, crd.metadata.name)
          )?.status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True'),
        );
      client.forget();
      for (const o of objects.filter((o) => o.kind === 'Namespace')) await client.apply(o);
      await Promise.all(
        objects
          .filter((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'Namespace')
          .map((o) => client.apply(o)),
      );
      const secretObject = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'flux-system', namespace: 'flux-system' },
        stringData: { identity: 'x', 'identity.pub': 'x', known_hosts: 'x' },
      };
      await client.apply(secretObject as KubeObject);
      await Promise.all(syncObjects(opts.sync).map((o) => client.apply(o as KubeObject)));
      client.close();
    }),
  );
  return push;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** cpuSeconds is the CPU time a process has used (user and system), from /proc; 0 for one that is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** procStats reads a process's peak RSS (MiB) and CPU time (s) from /proc. */
function procStats(pid: number): { peakRssMiB: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { peakRssMiB: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024, cpuS: cpuSeconds(pid) };
}

/**
 * operatorRound bootstraps the targets through one ClusterBootstrapSet and registers each deploy key as soon as
 * its public key shows in status. Returns the time to all Applied, each cluster's time, and the operator's figures.
 */
async function operatorRound(env: LabEnv, url: string, targets: LabTarget[]) {
  await installCRD();
  const ns = await namespace('bench');
  await pushSecret(ns);
  for (const t of targets)
    await secret(ns, `fleet-${t.index}-kubeconfig`, { value: readFileSync(t.kubeconfig, 'utf8') }).then(() =>
      mgmt().request(
        'PATCH',
        `/api/v1/namespaces/${ns}/secrets/fleet-${t.index}-kubeconfig`,
        { metadata: { labels: { fleet: 'bench' } } },
        'application/merge-patch+json',
      ),
    );
  // The operator as the image runs it: compiled, not type-stripped (stripping costs ≈ 20 MiB of RSS).
  execFileSync('npm', ['run', '-s', 'build'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  const operator = await startOperator({
    script: join(PROJECT_ROOT, 'dist', 'main.js'),
    namespaces: [ns],
    args: [
      `--log-level=${process.env.BENCH_LOG_LEVEL ?? 'info'}`,
      ...(process.env.BENCH_OPERATOR_ARGS ?? '').split(' ').filter(Boolean),
    ],
    nodeArgs: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
  });
  const client = mgmt();
  const authorized = new Set<string>();
  const appliedAt = new Map<string, number>();
  const t0 = performance.now();
  await client.apply(
    {
      apiVersion: API_VERSION,
      kind: SET_KIND,
      metadata: { name: 'fleet', namespace: ns },
      spec: {
        kubeconfigSecretSelector: { matchLabels: { fleet: 'bench' } },
        template: { spec: { git: { url, secretRef: { name: 'git-push' } }, flux: { version: VERSION } } },
      },
    } as KubeObject,
    { fieldManager: 'bench' },
  );
  const deadline = Date.now() + 20 * 60_000;
  while (appliedAt.size < targets.length) {
    if (Date.now() > deadline)
      throw new Error(`only ${appliedAt.size} of ${targets.length} ClusterBootstraps Applied after 20 minutes`);
    for (const cb of await client.list<ClusterBootstrap>(API_VERSION, KIND, ns)) {
      const key = cb.status?.identity?.publicKey;
      if (key && !authorized.has(key)) {
        authorize(key);
        authorized.add(key);
      }
      if (
        !appliedAt.has(cb.metadata.name) &&
        cb.status?.conditions?.some((c) => c.type === 'Applied' && c.status === 'True')
      )
        appliedAt.set(cb.metadata.name, performance.now() - t0);
    }
    await sleep(100);
  }
  const elapsed = performance.now() - t0;
  const stats = procStats(operator.proc.pid!);
  const metrics = await (await fetch(operator.metricsUrl)).text();
  await operator.stop();
  writeFileSync(OPERATOR_LOG, operator.logs.join('\n') + '\n');
  return { elapsed, each: [...appliedAt.values()], stats, metrics };
}

/** allApplied checks that every target has Flux's Deployments and its GitRepository. */
async function allApplied(targets: LabTarget[]): Promise<boolean> {
  const found = await Promise.all(
    targets.map(async (t) => {
      const client = KubeClient.fromTrustedKubeconfig(readFileSync(t.kubeconfig, 'utf8'));
      try {
        const deployments = await client.list('apps/v1', 'Deployment', 'flux-system');
        const repo = await client.get('source.toolkit.fluxcd.io/v1', 'GitRepository', 'flux-system', 'flux-system');
        return deployments.length >= 4 && !!repo;
      } finally {
        client.close();
      }
    }),
  );
  return found.every(Boolean);
}

say(`lab at ${E2E_LAB_DIR}; ${N} clusters per round`);
const env = await labUp({ dir: E2E_LAB_DIR, log: process.env.BENCH_VERBOSE ? say : undefined });
try {
  const url = await createRepoUrl('bench');
  const outsider: string[] = [];

  /**
   * round runs one way of bootstrapping on N fresh targets numbered from `first`, timed, and checks the targets after.
   */
  const round = async <T>(name: string, first: number, fn: (targets: LabTarget[]) => Promise<T>) => {
    if (!ROUNDS.includes(name)) return undefined;
    say(name);
    const f = await fleet(env, first);
    const cpu0 = f.cpu();
    const t0 = performance.now();
    const value = await fn(f.targets);
    const ms = performance.now() - t0;
    const targetCpu = f.cpu() - cpu0;
    const applied = await allApplied(f.targets);
    await f.stop();
    return { value, ms, targetCpu, applied };
  };
  const seeded = await round('seed', 1, (targets) => seed(env, url, targets));
  const floored = await round('floor', N + 1, (targets) => floor(url, targets));
  outsider.push(...(seeded?.value ?? []), ...(floored ? [floored.value] : []));
  const commits = (clone: string) => Number(git(['rev-list', '--count', '--all'], clone) || 0);
  const before = commits(workClone(url));
  const operated = (await round('operator', 2 * N + 1, (targets) => operatorRound(env, url, targets)))!;
  // From applying the set, not from starting the operator and writing the kubeconfig Secrets.
  const op = operated.value;

  const check = workClone(url);
  const lost = outsider.filter((sha) => {
    try {
      git(['merge-base', '--is-ancestor', sha, 'main'], check);
      return false;
    } catch {
      return true;
    }
  }).length;
  const range = (first: number, prefix: string) =>
    Array.from({ length: N }, (_, k) => `clusters/${prefix}-${first + k}`);
  const paths = [
    ...(seeded ? range(1, 'seed') : []),
    ...(floored ? range(N + 1, 'floor') : []),
    ...range(2 * N + 1, 'fleet'),
  ];
  const tree = new Set(git(['ls-tree', '-r', '--name-only', 'main'], check).split('\n'));
  const missingFiles = paths.filter(
    (p) =>
      !['gotk-components.yaml', 'gotk-sync.yaml', 'kustomization.yaml'].every((f) => tree.has(`${p}/flux-system/${f}`)),
  );
  const pushes = commits(check) - before;

  const result = {
    clusters: N,
    operator_s: seconds(op.elapsed),
    seed_s: seeded ? seconds(seeded.ms) : null,
    ratio: seeded ? Math.round((seeded.ms / op.elapsed) * 10) / 10 : null,
    floor_s: floored ? seconds(floored.ms) : null,
    floor_ratio: floored ? Math.round((op.elapsed / floored.ms) * 100) / 100 : null,
    p50_s: seconds(quantile(op.each, 0.5)),
    p95_s: seconds(quantile(op.each, 0.95)),
    pushes,
    peak_rss_mib: Math.round(op.stats.peakRssMiB),
    cpu_s: Math.round(op.stats.cpuS * 10) / 10,
    lost_commits: lost,
    all_applied:
      (seeded?.applied ?? true) && (floored?.applied ?? true) && operated.applied && missingFiles.length === 0,
  };
  console.log(`\n# ${N} clusters from one repository, each way on ${N} fresh lab targets`);
  row('seed procedure, one cluster after another', `${result.seed_s} s`);
  row('floor: parallel server-side apply + one push', `${result.floor_s} s`);
  row(
    'operator: ClusterBootstrapSet to all Applied',
    `${result.operator_s} s (p50 ${result.p50_s} s, p95 ${result.p95_s} s)`,
  );
  row(
    `CPU of the ${N} target API servers: seed, floor, operator`,
    [seeded, floored, operated].map((r) => (r ? `${r.targetCpu.toFixed(1)} s` : '-')).join(', '),
  );
  row('seed / operator', result.ratio);
  row('operator / floor', result.floor_ratio);
  row('operator commits for the set', pushes);
  row('operator peak RSS', `${result.peak_rss_mib} MiB`);
  row('operator CPU time', `${result.cpu_s} s`);
  for (const m of op.metrics.matchAll(
    /^controller_runtime_reconcile_total\{controller="(\w+)",result="(\w+)"\} (\d+)/gm,
  ))
    row(`reconciles of ${m[1]}: ${m[2]}`, m[3]);
  row('commits by others lost', lost);
  row('operator log', OPERATOR_LOG);
  if (missingFiles.length) row('clusters without their files', missingFiles.join(' '));
  console.log(JSON.stringify(result));
} finally {
  if (!process.env.E2E_KEEP_LAB) await labDown({ dir: E2E_LAB_DIR });
}
