/**
 * Tests of the lab's fleet (fleet.ts: extra target clusters, Flux per target) and of Cluster API's CRD in the lab
 * (capi.ts). One lab for the whole file, in its own temp dir, started with `labUp({ targets: 3, capi: true })`;
 * the tests run in order against it and the last takes it down (`after` makes sure). Needs root and the lab
 * binaries (built on first use), and the Go toolchain with the module proxy the first time Cluster API's CRDs
 * are fetched.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { goModDownload } from './build.ts';
import { httpRequest, pkiCreds } from './kube.ts';
import { targetCluster } from './fleet.ts';
import {
  CLUSTER_API_VERSION,
  CLUSTER_CRD_FILE,
  PROJECT_ROOT,
  authorizeKey,
  createRepo,
  fluxRunning,
  fluxStart,
  fluxStop,
  gitSshCommand,
  labDown,
  labPids,
  labTargets,
  labUp,
  readLabEnv,
  type LabEnv,
} from './lab.ts';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-fleet-test-'));
fs.chmodSync(work, 0o755); // the git user must traverse it
const dir = path.join(work, 'lab');
const log = process.env.LAB_TEST_VERBOSE ? (l: string) => console.error(`[lab] ${l}`) : undefined;
let env: LabEnv;

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('GIT_') && !k.startsWith('LAB_') && k !== 'KUBECONFIG') e[k] = v;
  return {
    ...e,
    GIT_AUTHOR_NAME: 'lab',
    GIT_AUTHOR_EMAIL: 'lab@example.com',
    GIT_COMMITTER_NAME: 'lab',
    GIT_COMMITTER_EMAIL: 'lab@example.com',
    ...extra,
  };
}

async function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<string> {
  const p = execFileP(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? cleanEnv(),
    maxBuffer: 32 * 1024 * 1024,
    timeout: 120_000,
  });
  if (opts.input !== undefined) p.child.stdin!.end(opts.input);
  return (await p).stdout;
}

/** Like sh, but resolves to the exit code and output instead of throwing. */
async function shCode(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    return { code: 0, out: await sh(cmd, args) };
  } catch (err: any) {
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

const kubectl = (kubeconfig: string, args: string[], input?: string) =>
  sh(path.join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { input });
const kubectlCode = (kubeconfig: string, args: string[]) =>
  shCode(path.join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', kubeconfig, ...args]);

async function waitUntil<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | false | undefined>,
  onTimeout?: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline)
      assert.fail(`timed out after ${ms / 1000} s waiting for ${what}${onTimeout ? `\n${await onTimeout()}` : ''}`);
    await sleep(1000);
  }
}

/** The process has exited (a zombie not yet reaped counts as exited). */
function gone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

function fluxComponentsFile(): string {
  const inRepo = path.join(PROJECT_ROOT, 'src/manifests/flux/v2.9.4/gotk-components.yaml');
  if (fs.existsSync(inRepo)) return inRepo;
  return path.resolve(PROJECT_ROOT, '../shared/fixtures/flux/v2.9.4/gotk-components.yaml');
}

before(
  async () => {
    env = await labUp({ dir, log, targets: 3, capi: true });
  },
  { timeout: 3_600_000 },
);

after(async () => {
  await labDown({ dir }).catch(() => {});
  fs.rmSync(work, { recursive: true, force: true });
});

test('labUp({ targets: 3 }) writes three extra targets to the env, each with a server and a kubeconfig of its own', () => {
  assert.deepEqual(readLabEnv(dir), env);
  const kubeconfigs = env.LAB_TARGET_KUBECONFIGS!.split(' ');
  const servers = env.LAB_TARGET_SERVERS!.split(' ');
  assert.equal(kubeconfigs.length, 3);
  assert.equal(servers.length, 3);
  assert.equal(
    new Set([...kubeconfigs, env.LAB_TARGET_KUBECONFIG, env.LAB_MGMT_KUBECONFIG]).size,
    5,
    'five distinct kubeconfigs',
  );
  assert.equal(new Set([...servers, env.LAB_TARGET_SERVER, env.LAB_MGMT_SERVER]).size, 5, 'five distinct servers');
  for (const s of servers) assert.match(s, /^https:\/\/127\.0\.0\.1:\d+$/);
  for (const k of kubeconfigs) assert.ok(fs.existsSync(k), `${k} exists`);
  assert.deepEqual(
    labTargets(env).map((t) => t.index),
    [1, 2, 3],
  );
  const pids = labPids(dir);
  for (const i of [1, 2, 3]) {
    assert.ok(pids[`target-${i}-apiserver`], `target-${i}-apiserver runs`);
    assert.equal(pids[`target-${i}-controller-manager`], undefined, 'no controller manager unless asked for');
  }
});

test('the extra targets are distinct clusters: a namespace created in one is absent in the others', async () => {
  const all = [env.LAB_MGMT_KUBECONFIG, env.LAB_TARGET_KUBECONFIG, ...labTargets(env).map((t) => t.kubeconfig)];
  for (const t of labTargets(env)) await kubectl(t.kubeconfig, ['create', 'namespace', `fleet-probe-${t.index}`]);
  for (const t of labTargets(env)) {
    for (const kc of all) {
      const r = await kubectlCode(kc, ['get', 'namespace', `fleet-probe-${t.index}`, '-o', 'name']);
      if (kc === t.kubeconfig)
        assert.equal(r.code, 0, `namespace fleet-probe-${t.index} is in target ${t.index}: ${r.out}`);
      else assert.match(r.out, /NotFound|not found/, `namespace fleet-probe-${t.index} is not in ${kc}`);
    }
  }
});

test('each target kubeconfig carries its credentials inline, names no file, and works from anywhere', async () => {
  for (const t of labTargets(env)) {
    assert.equal(fs.statSync(t.kubeconfig).mode & 0o077, 0, 'only its owner reads it');
    const text = fs.readFileSync(t.kubeconfig, 'utf8');
    const kc = yaml.load(text) as any;
    assert.equal(kc.clusters.length, 1);
    assert.equal(kc.users.length, 1);
    const cluster = kc.clusters[0].cluster;
    const user = kc.users[0].user;
    assert.equal(cluster.server, t.server);
    assert.deepEqual(Object.keys(cluster).sort(), ['certificate-authority-data', 'server']);
    assert.deepEqual(Object.keys(user).sort(), ['client-certificate-data', 'client-key-data']);
    assert.match(
      Buffer.from(cluster['certificate-authority-data'], 'base64').toString(),
      /^-----BEGIN CERTIFICATE-----/,
    );
    assert.match(Buffer.from(user['client-key-data'], 'base64').toString(), /^-----BEGIN PRIVATE KEY-----/);
    assert.doesNotMatch(text, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no path of the lab in it');
    // as the operator gets it: the text alone, somewhere else
    const copy = path.join(work, `copy-${t.index}.kubeconfig`);
    fs.writeFileSync(copy, text, { mode: 0o600 });
    assert.equal(await kubectl(copy, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']), 'lab-admin');
  }
});

test('no credential of one target is accepted by another (each has its own CA)', async () => {
  const [t1, t2] = labTargets(env);
  const c1 = pkiCreds(targetCluster(dir, 1).pki, t1.server);
  const c2 = pkiCreds(targetCluster(dir, 2).pki, t2.server);
  assert.equal(
    (await httpRequest(`${t2.server}/api/v1/namespaces`, { ca: c2.ca, cert: c2.cert, key: c2.key })).status,
    200,
  );
  // target 1's client certificate, presented to target 2
  assert.equal(
    (await httpRequest(`${t2.server}/api/v1/namespaces`, { ca: c2.ca, cert: c1.cert, key: c1.key })).status,
    401,
  );
  // target 1's CA does not vouch for target 2's serving certificate
  await assert.rejects(
    httpRequest(`${t2.server}/readyz`, { ca: c1.ca }),
    /self[- ]signed|unable to verify|certificate/i,
  );
});

test('labUp on the running lab with the same targets is a no-op; with targets: 4 it adds target 4 only', async () => {
  const pids = labPids(dir);
  assert.deepEqual(await labUp({ dir, targets: 3, capi: true }), env);
  assert.deepEqual(labPids(dir), pids);
  const more = await labUp({ dir, targets: 4, log });
  assert.deepEqual(labTargets(more).slice(0, 3), labTargets(env), 'targets 1…3 unchanged');
  assert.equal(labTargets(more).length, 4);
  for (const [name, pid] of Object.entries(pids))
    assert.equal(labPids(dir)[name], pid, `${name} still the same process`);
  assert.deepEqual(readLabEnv(dir), more);
  await kubectl(labTargets(more)[3].kubeconfig, ['get', 'namespace', 'default']);
  env = more;
});

test(
  'Flux runs for a chosen subset of targets, one controller pair per target, each syncing into its own cluster',
  { timeout: 600_000 },
  async () => {
    const [t1, t2, t3] = labTargets(env);
    // one repo, one folder per target
    const url = createRepo('fleet', { dir });
    const src = path.join(work, 'fleet-src');
    await sh('git', ['init', '-q', '-b', 'main', src]);
    for (const i of [1, 2]) {
      fs.mkdirSync(path.join(src, `clusters/t${i}`), { recursive: true });
      fs.writeFileSync(
        path.join(src, `clusters/t${i}/configmap.yaml`),
        `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fleet-synced\n  namespace: default\ndata:\n  target: ` +
          `"${i}"\n`,
      );
    }
    await sh('git', ['add', '.'], { cwd: src });
    await sh('git', ['commit', '-q', '-m', 'fleet'], { cwd: src });
    const sshEnv = cleanEnv({ GIT_SSH_COMMAND: gitSshCommand(env.LAB_GIT_WRITER_KEY, env.LAB_GIT_KNOWN_HOSTS) });
    await sh('git', ['push', '-q', url, 'main'], { cwd: src, env: sshEnv });
    const deployKey = path.join(work, 'fleet-deploy-key');
    await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'fleet', '-f', deployKey]);
    authorizeKey(`${deployKey}.pub`, { access: 'ro', dir });

    for (const t of [t1, t2]) {
      await kubectl(t.kubeconfig, ['apply', '--server-side', '--field-manager=lab-test', '-f', fluxComponentsFile()]);
      await kubectl(t.kubeconfig, [
        '-n',
        'flux-system',
        'create',
        'secret',
        'generic',
        'flux-system',
        `--from-file=identity=${deployKey}`,
        `--from-file=known_hosts=${env.LAB_GIT_KNOWN_HOSTS}`,
      ]);
      await kubectl(
        t.kubeconfig,
        ['apply', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [
            {
              apiVersion: 'source.toolkit.fluxcd.io/v1',
              kind: 'GitRepository',
              metadata: { name: 'flux-system', namespace: 'flux-system' },
              spec: { interval: '1m', url, ref: { branch: 'main' }, secretRef: { name: 'flux-system' } },
            },
            {
              apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
              kind: 'Kustomization',
              metadata: { name: 'flux-system', namespace: 'flux-system' },
              spec: {
                interval: '1m',
                path: `./clusters/t${t.index}`,
                prune: true,
                sourceRef: { kind: 'GitRepository', name: 'flux-system' },
              },
            },
          ],
        }),
      );
    }

    const infos = await fluxStart({ dir, log, targets: [1, 2], timeoutMs: 120_000 });
    assert.deepEqual(
      infos.map((f) => f.target),
      [1, 2],
    );
    assert.notEqual(infos[0].storageAddr, infos[1].storageAddr);
    assert.notEqual(infos[0].sourceControllerHealth, infos[1].sourceControllerHealth);
    assert.notEqual(infos[0].kustomizeControllerHealth, infos[1].kustomizeControllerHealth);
    assert.ok(fluxRunning(dir, 1) && fluxRunning(dir, 2), 'Flux runs for targets 1 and 2');
    assert.ok(!fluxRunning(dir, 0) && !fluxRunning(dir, 3), 'and not for target 0 or 3');
    assert.deepEqual(
      await fluxStart({ dir, targets: [2, 1] }).then((again) => again.map((f) => f.storageAddr)),
      [infos[1].storageAddr, infos[0].storageAddr],
      'a second fluxStart for running targets leaves them as they are',
    );

    for (const t of [t1, t2]) {
      const status = async () =>
        (
          await kubectl(t.kubeconfig, ['-n', 'flux-system', 'get', 'gitrepository,kustomization', '-o', 'yaml']).catch(
            String,
          )
        )
          .split('\n')
          .filter((l) => /message|reason|status:/.test(l))
          .join('\n');
      await waitUntil(
        `ConfigMap synced into target ${t.index}`,
        180_000,
        async () =>
          JSON.parse(await kubectl(t.kubeconfig, ['-n', 'default', 'get', 'configmap', 'fleet-synced', '-o', 'json']))
            .data.target === String(t.index),
        status,
      );
      await waitUntil(`Deployment source-controller available in target ${t.index}`, 30_000, async () => {
        const d = JSON.parse(
          await kubectl(t.kubeconfig, ['-n', 'flux-system', 'get', 'deployment', 'source-controller', '-o', 'json']),
        );
        return (d.status?.conditions ?? []).some((c: any) => c.type === 'Available' && c.status === 'True');
      });
    }
    assert.match(
      (await kubectlCode(t3.kubeconfig, ['-n', 'default', 'get', 'configmap', 'fleet-synced'])).out,
      /NotFound|not found/,
    );

    const pids = labPids(dir);
    await fluxStop({ dir });
    for (const i of [1, 2]) {
      for (const n of ['source-controller', 'kustomize-controller', 'kubelet']) {
        const pid = pids[`target-${i}-${n}`];
        assert.ok(pid, `target-${i}-${n} was running`);
        assert.ok(gone(pid), `target-${i}-${n} stopped`);
      }
    }
    assert.ok(labPids(dir)['target-1-apiserver'], 'the targets themselves keep running');
  },
);

test(
  `Cluster API's Cluster CRD (${CLUSTER_API_VERSION}, from its Go module) is served in the management cluster ` +
    `only, v1beta2 its storage version`,
  async () => {
    assert.ok(env.LAB_CAPI_CRDS, 'LAB_CAPI_CRDS is set');
    assert.match(
      fs.readFileSync(path.join(env.LAB_CAPI_CRDS!, 'SOURCE'), 'utf8'),
      new RegExp(`^sigs\\.k8s\\.io/cluster-api@${CLUSTER_API_VERSION} h1:`),
    );
    const mod = await goModDownload('sigs.k8s.io/cluster-api', CLUSTER_API_VERSION);
    assert.equal(
      fs.readFileSync(path.join(env.LAB_CAPI_CRDS!, CLUSTER_CRD_FILE), 'utf8'),
      fs.readFileSync(path.join(mod.Dir, 'core/config/crd/bases', CLUSTER_CRD_FILE), 'utf8'),
      "the module's own file",
    );

    const crd = JSON.parse(
      await kubectl(env.LAB_MGMT_KUBECONFIG, ['get', 'crd', 'clusters.cluster.x-k8s.io', '-o', 'json']),
    );
    const versions = Object.fromEntries(
      crd.spec.versions.map((v: any) => [v.name, { served: v.served, storage: v.storage }]),
    );
    assert.deepEqual(versions, { v1beta1: { served: true, storage: false }, v1beta2: { served: true, storage: true } });
    assert.ok(crd.status.conditions.some((c: any) => c.type === 'Established' && c.status === 'True'));
    const group = JSON.parse(
      await kubectl(env.LAB_MGMT_KUBECONFIG, ['get', '--raw', '/apis/cluster.x-k8s.io/v1beta2']),
    );
    assert.ok(
      group.resources.some((r: any) => r.name === 'clusters/status'),
      'clusters and their status subresource are served',
    );
    for (const t of labTargets(env)) {
      assert.match(
        (await kubectlCode(t.kubeconfig, ['get', 'crd', 'clusters.cluster.x-k8s.io'])).out,
        /NotFound|not found/,
      );
    }
  },
);

test('a v1beta2 Cluster can be created and its status patched to a control plane initialized', async () => {
  const kc = env.LAB_MGMT_KUBECONFIG;
  const cluster = {
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'Cluster',
    metadata: { name: 'fleet-a', namespace: 'default' },
    spec: {
      controlPlaneRef: { apiGroup: 'controlplane.cluster.x-k8s.io', kind: 'KubeadmControlPlane', name: 'fleet-a' },
    },
  };
  const created = JSON.parse(await kubectl(kc, ['create', '-f', '-', '-o', 'json'], JSON.stringify(cluster)));
  assert.equal(created.apiVersion, 'cluster.x-k8s.io/v1beta2');
  assert.equal(created.status?.initialization, undefined, 'nothing initialized yet');
  const patch = {
    status: {
      initialization: { infrastructureProvisioned: true, controlPlaneInitialized: true },
      conditions: [
        {
          type: 'ControlPlaneInitialized',
          status: 'True',
          reason: 'Initialized',
          message: '',
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
      ],
    },
  };
  await kubectl(kc, [
    'patch',
    'cluster.v1beta2.cluster.x-k8s.io',
    'fleet-a',
    '-n',
    'default',
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify(patch),
  ]);
  const got = JSON.parse(
    await kubectl(kc, ['get', 'cluster.v1beta2.cluster.x-k8s.io', 'fleet-a', '-n', 'default', '-o', 'json']),
  );
  assert.equal(got.status.initialization.controlPlaneInitialized, true);
  assert.equal(got.status.conditions.find((c: any) => c.type === 'ControlPlaneInitialized')?.status, 'True');
  assert.equal(got.metadata.generation, created.metadata.generation, 'a status patch does not touch the spec');
  // the schema is enforced: a v1beta2 Cluster needs a spec with something in it
  await assert.rejects(
    kubectl(
      kc,
      ['create', '-f', '-'],
      JSON.stringify({ ...cluster, metadata: { name: 'fleet-b', namespace: 'default' }, spec: {} }),
    ),
    /should have at least 1 properties/,
  );
});

test('lab down stops every process of every target and leaves nothing behind', async () => {
  const pids = labPids(dir);
  assert.ok(
    Object.keys(pids).filter((n) => /^target-\d+-apiserver$/.test(n)).length === 4,
    `four extra API servers: ${Object.keys(pids)}`,
  );
  const servers = env.LAB_TARGET_SERVERS!.split(' ');
  await labDown({ dir });
  assert.equal(fs.existsSync(dir), false, 'lab dir removed');
  for (const [name, pid] of Object.entries(pids)) assert.ok(gone(pid), `${name} (${pid}) is gone`);
  assert.equal((await shCode('pgrep', ['-f', dir])).out.trim(), '', `no process mentions ${dir}`);
  for (const server of servers)
    await assert.rejects(httpRequest(`${server}/readyz`, { insecure: true, timeoutMs: 2000 }), /ECONNREFUSED/);
});
