/**
 * Tests of the lab runtime (lab.ts), using it as a library.
 *
 * One lab for the whole file, in its own temp dir (never the developer's `<project root>/.lab`): `before` starts
 * it, the tests run in order against it, the last test takes it down (and `after` makes sure it is down even when
 * a test failed). `before` starts a second lab in another dir at the same time, to show that labs side by side
 * get distinct ports; the first test takes that one down again. Ports are picked free by the lab, so this runs
 * beside a developer's lab. Needs root and the lab binaries (built on first use, which takes long when the Go
 * cache is cold). The port allocation itself is tested in ports.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { listeningPorts } from './ports.ts';
import {
  PROJECT_ROOT,
  authorizeKey,
  createRepo,
  fluxStart,
  fluxStop,
  gitSshCommand,
  labDown,
  labPids,
  labUp,
  readLabEnv,
  type LabEnv,
} from './lab.ts';

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-test-'));
fs.chmodSync(work, 0o755); // the git user must traverse it
const dir = path.join(work, 'lab');
const workBeside = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-test-beside-'));
fs.chmodSync(workBeside, 0o755);
const dirBeside = path.join(workBeside, 'lab');
const log = process.env.LAB_TEST_VERBOSE ? (l: string) => console.error(`[lab] ${l}`) : undefined;
let env: LabEnv;
let envBeside: LabEnv;

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_') && k !== 'KUBECONFIG') e[k] = v;
  return {
    ...e,
    GIT_AUTHOR_NAME: 'lab',
    GIT_AUTHOR_EMAIL: 'lab@example.com',
    GIT_COMMITTER_NAME: 'lab',
    GIT_COMMITTER_EMAIL: 'lab@example.com',
    ...extra,
  };
}

async function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const p = execFileP(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? cleanEnv(),
    maxBuffer: 32 * 1024 * 1024,
    timeout: 120_000,
  });
  if (opts.input !== undefined) {
    p.child.stdin!.end(opts.input);
  }
  const { stdout } = await p;
  return stdout;
}

/** Like sh, but resolves to the exit code and output instead of throwing. */
async function shCode(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  try {
    const out = await sh(cmd, args, opts);
    return { code: 0, out };
  } catch (err: any) {
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

const kubectl = (kubeconfig: string, args: string[], input?: string) =>
  sh(path.join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { input });

const git = (args: string[], opts: { cwd?: string; key?: string; knownHosts?: string } = {}) =>
  sh('git', args, {
    cwd: opts.cwd,
    env: cleanEnv({
      GIT_SSH_COMMAND: gitSshCommand(opts.key ?? env.LAB_GIT_WRITER_KEY, opts.knownHosts ?? env.LAB_GIT_KNOWN_HOSTS),
    }),
  });

const gitCode = (args: string[], opts: { cwd?: string; key?: string } = {}) =>
  shCode('git', args, {
    cwd: opts.cwd,
    env: cleanEnv({ GIT_SSH_COMMAND: gitSshCommand(opts.key ?? env.LAB_GIT_WRITER_KEY, env.LAB_GIT_KNOWN_HOSTS) }),
  });

async function newKey(name: string): Promise<string> {
  const key = path.join(work, name);
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  return key;
}

before(
  async () => {
    const beside = (l: string) => log?.(`(beside) ${l}`);
    [env, envBeside] = await Promise.all([labUp({ dir, log }), labUp({ dir: dirBeside, log: log && beside })]);
  },
  { timeout: 3_600_000 },
);

after(async () => {
  await Promise.all([labDown({ dir }).catch(() => {}), labDown({ dir: dirBeside }).catch(() => {})]);
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(workBeside, { recursive: true, force: true });
});

/** The TCP ports the processes of the lab in `d` listen on. */
function labPorts(d: string): number[] {
  return Object.values(labPids(d)).flatMap((pid) => listeningPorts(pid));
}

test('two labs started side by side in different dirs both come up, on ports of their own', async () => {
  const ports = labPorts(dir);
  const portsBeside = labPorts(dirBeside);
  assert.ok(ports.length >= 7 && portsBeside.length >= 7, `each lab listens on its ports: ${ports} and ${portsBeside}`);
  assert.deepEqual(
    ports.filter((p) => portsBeside.includes(p)),
    [],
    'no port is shared',
  );
  for (const e of [env, envBeside]) {
    await kubectl(e.LAB_MGMT_KUBECONFIG, ['get', 'namespace', 'default']);
    await kubectl(e.LAB_TARGET_KUBECONFIG, ['get', 'namespace', 'default']);
    assert.equal(
      (
        await git(['ls-remote', e.LAB_GIT_URL], { key: e.LAB_GIT_WRITER_KEY, knownHosts: e.LAB_GIT_KNOWN_HOSTS })
      ).trim(),
      '',
    );
  }
  assert.notEqual(env.LAB_MGMT_SERVER, envBeside.LAB_MGMT_SERVER);
  await labDown({ dir: dirBeside });
  assert.equal(fs.existsSync(dirBeside), false, 'the lab beside is down');
  await kubectl(env.LAB_MGMT_KUBECONFIG, ['get', 'namespace', 'default']);
});

test('the lab writes its environment to <dir>/env', () => {
  const read = readLabEnv(dir);
  assert.deepEqual(read, env);
  for (const k of [
    'LAB_MGMT_KUBECONFIG',
    'LAB_TARGET_KUBECONFIG',
    'LAB_GIT_WRITER_KEY',
    'LAB_GIT_KNOWN_HOSTS',
  ] as const) {
    assert.ok(fs.existsSync(env[k]), `${k} = ${env[k]} exists`);
  }
  for (const b of [
    'etcd',
    'kube-apiserver',
    'kube-controller-manager',
    'kubectl',
    'source-controller',
    'kustomize-controller',
  ]) {
    assert.ok(fs.existsSync(path.join(env.LAB_BIN, b)), `${b} in LAB_BIN`);
  }
  assert.match(env.LAB_GIT_URL, /^ssh:\/\/fluxlab@127\.0\.0\.1:\d+\/gitops\.git$/);
  assert.equal(env.LAB_GIT_URL, `ssh://${env.LAB_GIT_USER}@${env.LAB_GIT_HOST}:${env.LAB_GIT_PORT}/gitops.git`);
  assert.match(
    fs.readFileSync(env.LAB_GIT_KNOWN_HOSTS, 'utf8'),
    new RegExp(`^\\[127\\.0\\.0\\.1\\]:${env.LAB_GIT_PORT} ssh-ed25519 AAAA`, 'm'),
  );
});

test('a second labUp on a running lab is a no-op returning the same env', async () => {
  const pids = labPids(dir);
  const again = await labUp({ dir });
  assert.deepEqual(again, env);
  assert.deepEqual(labPids(dir), pids);
});

test('the lab serves two distinct clusters', async () => {
  assert.notEqual(env.LAB_MGMT_SERVER, env.LAB_TARGET_SERVER);
  const ns = `lab-probe-${process.pid}`;
  await kubectl(env.LAB_MGMT_KUBECONFIG, ['create', 'namespace', ns]);
  await kubectl(env.LAB_MGMT_KUBECONFIG, ['get', 'namespace', ns]);
  await assert.rejects(kubectl(env.LAB_TARGET_KUBECONFIG, ['get', 'namespace', ns]), /NotFound|not found/);
  await kubectl(env.LAB_TARGET_KUBECONFIG, ['get', 'namespace', 'default']);
});

test('a deleted namespace finalizes and owned objects are garbage-collected (controller manager runs)', async () => {
  const kc = env.LAB_MGMT_KUBECONFIG;
  const ns = `lab-gc-${process.pid}`;
  await kubectl(kc, ['create', 'namespace', ns]);
  const owner = JSON.parse(await kubectl(kc, ['-n', ns, 'create', 'configmap', 'owner', '-o', 'json']));
  const owned = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'owned',
      namespace: ns,
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid }],
    },
  };
  await kubectl(kc, ['apply', '-f', '-'], JSON.stringify(owned));
  await kubectl(kc, ['-n', ns, 'delete', 'configmap', 'owner']);
  await waitUntil(
    'owned ConfigMap collected',
    60_000,
    async () =>
      (await shCode(path.join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', kc, '-n', ns, 'get', 'configmap', 'owned']))
        .code !== 0,
  );
  await kubectl(kc, ['delete', 'namespace', ns, '--wait=false']);
  await waitUntil(
    'namespace gone',
    60_000,
    async () =>
      (await shCode(path.join(env.LAB_BIN, 'kubectl'), ['--kubeconfig', kc, 'get', 'namespace', ns])).code !== 0,
  );
});

test('a ServiceAccount token from TokenRequest authenticates as that ServiceAccount, in its own cluster only', async () => {
  const kc = env.LAB_MGMT_KUBECONFIG;
  await kubectl(kc, ['-n', 'default', 'create', 'serviceaccount', 'lab-sa']);
  const token = (await kubectl(kc, ['-n', 'default', 'create', 'token', 'lab-sa'])).trim();
  const whoami = (server: string) =>
    sh(path.join(env.LAB_BIN, 'kubectl'), [
      '--kubeconfig',
      '/dev/null',
      '--server',
      server,
      '--certificate-authority',
      env.LAB_CA_FILE,
      '--token',
      token,
      'auth',
      'whoami',
      '-o',
      'jsonpath={.status.userInfo.username}',
    ]);
  assert.equal(await whoami(env.LAB_MGMT_SERVER), 'system:serviceaccount:default:lab-sa');
  await assert.rejects(whoami(env.LAB_TARGET_SERVER), /Unauthorized|must be logged in/);
});

test('the writer key sees the empty gitops repo over ssh with strict host key checking', async () => {
  const out = await git(['ls-remote', env.LAB_GIT_URL]);
  assert.equal(out.trim(), '', 'the gitops repo starts empty');
});

test('a key authorized read-only can clone but its push is refused; the writer can push', async () => {
  const url = createRepo('ro-probe', { dir });
  assert.equal(url, `${env.LAB_GIT_BASE_URL}/ro-probe.git`);
  const src = path.join(work, 'ro-src');
  await sh('git', ['init', '-q', '-b', 'main', src]);
  await sh('git', ['commit', '-q', '--allow-empty', '-m', 'first'], { cwd: src });
  await git(['push', '-q', url, 'main'], { cwd: src });

  const ro = await newKey('ro-key');
  const unknown = await gitCode(['ls-remote', url], { key: ro });
  assert.notEqual(unknown.code, 0, 'a key that is not authorized cannot read');
  authorizeKey(`${ro}.pub`, { access: 'ro', dir });
  const clone = path.join(work, 'ro-clone');
  await git(['clone', '-q', url, clone], { key: ro });
  assert.equal((await sh('git', ['log', '--format=%s'], { cwd: clone })).trim(), 'first');

  await sh('git', ['commit', '-q', '--allow-empty', '-m', 'second'], { cwd: clone });
  const push = await gitCode(['push', url, 'HEAD:refs/heads/ro-branch'], { cwd: clone, key: ro });
  assert.notEqual(push.code, 0);
  assert.match(push.out, /read-only key: push refused/);
  assert.equal((await git(['ls-remote', url, 'refs/heads/ro-branch'])).trim(), '');

  await git(['push', '-q', url, 'HEAD:refs/heads/main'], { cwd: clone });
  const head = (await sh('git', ['rev-parse', 'HEAD'], { cwd: clone })).trim();
  assert.match(await git(['ls-remote', url, 'refs/heads/main']), new RegExp(`^${head}\\s`));
});

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

/** The process has exited (a zombie not yet reaped by this process counts as exited). */
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

test(
  'Flux really syncs a pushed commit into the target cluster, and the lab reports its Deployments available',
  { timeout: 600_000 },
  async () => {
    const kc = env.LAB_TARGET_KUBECONFIG;
    await kubectl(kc, ['apply', '--server-side', '--field-manager=lab-test', '-f', fluxComponentsFile()]);

    // a repo with one ConfigMap, pushed by the writer
    const url = createRepo('flux-sync', { dir });
    const src = path.join(work, 'flux-src');
    await sh('git', ['init', '-q', '-b', 'main', src]);
    fs.mkdirSync(path.join(src, 'clusters/lab'), { recursive: true });
    fs.writeFileSync(
      path.join(src, 'clusters/lab/configmap.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lab-synced\n  namespace: default\ndata:\n  synced: "yes"\n',
    );
    await sh('git', ['add', '.'], { cwd: src });
    await sh('git', ['commit', '-q', '-m', 'lab sync probe'], { cwd: src });
    const sha = (await sh('git', ['rev-parse', 'HEAD'], { cwd: src })).trim();
    await git(['push', '-q', url, 'main'], { cwd: src });

    // Flux's own deploy key: read-only
    const deployKey = await newKey('flux-deploy-key');
    authorizeKey(`${deployKey}.pub`, { access: 'ro', dir });
    await kubectl(kc, [
      '-n',
      'flux-system',
      'create',
      'secret',
      'generic',
      'flux-system',
      `--from-file=identity=${deployKey}`,
      `--from-file=identity.pub=${deployKey}.pub`,
      `--from-file=known_hosts=${env.LAB_GIT_KNOWN_HOSTS}`,
    ]);
    const objects = {
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
            path: './clusters/lab',
            prune: true,
            sourceRef: { kind: 'GitRepository', name: 'flux-system' },
          },
        },
      ],
    };
    await kubectl(kc, ['apply', '-f', '-'], JSON.stringify(objects));

    await fluxStart({ dir, log, timeoutMs: 120_000 });
    const status = async () => {
      const out = await kubectl(kc, ['-n', 'flux-system', 'get', 'gitrepository,kustomization', '-o', 'yaml']).catch(
        (e) => String(e),
      );
      const logs = ['source-controller', 'kustomize-controller'].map((n) => {
        try {
          return `--- ${n}\n${fs
            .readFileSync(path.join(env.LAB_LOGS, `${n}.log`), 'utf8')
            .split('\n')
            .slice(-10)
            .join('\n')}`;
        } catch {
          return '';
        }
      });
      return [
        out
          .split('\n')
          .filter((l) => /message|reason|status:|Revision|revision/.test(l))
          .join('\n'),
        ...logs,
      ].join('\n');
    };
    await waitUntil(
      `Kustomization Ready at main@sha1:${sha}`,
      180_000,
      async () => {
        const ks = JSON.parse(
          await kubectl(kc, ['-n', 'flux-system', 'get', 'kustomization', 'flux-system', '-o', 'json']),
        );
        const ready = (ks.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
        return ready?.status === 'True' && ks.status?.lastAppliedRevision === `main@sha1:${sha}`;
      },
      status,
    );
    const cm = JSON.parse(await kubectl(kc, ['-n', 'default', 'get', 'configmap', 'lab-synced', '-o', 'json']));
    assert.equal(cm.data.synced, 'yes');
    assert.equal(cm.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'], 'flux-system');

    for (const name of ['source-controller', 'kustomize-controller']) {
      await waitUntil(`Deployment ${name} available`, 30_000, async () => {
        const d = JSON.parse(await kubectl(kc, ['-n', 'flux-system', 'get', 'deployment', name, '-o', 'json']));
        const want = d.spec.replicas ?? 1;
        const available = (d.status?.conditions ?? []).some((c: any) => c.type === 'Available' && c.status === 'True');
        return (
          available &&
          d.status.availableReplicas === want &&
          d.status.readyReplicas === want &&
          d.status.observedGeneration === d.metadata.generation
        );
      });
    }

    const pids = labPids(dir);
    await fluxStop({ dir });
    for (const name of ['source-controller', 'kustomize-controller', 'kubelet']) {
      assert.ok(pids[name], `${name} was running`);
      assert.ok(gone(pids[name]), `${name} stopped`);
    }
  },
);

test('lab down stops every lab process and leaves none behind', async () => {
  const pids = labPids(dir);
  assert.ok(Object.keys(pids).length >= 6, `lab processes recorded: ${JSON.stringify(pids)}`);
  await labDown({ dir });
  assert.equal(fs.existsSync(dir), false, 'lab dir removed');
  for (const [name, pid] of Object.entries(pids)) assert.ok(gone(pid), `${name} (${pid}) is gone`);
  const pgrep = await shCode('pgrep', ['-f', dir]);
  assert.equal(pgrep.out.trim(), '', `no process mentions ${dir}`);
});
