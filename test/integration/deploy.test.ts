/**
 * What `kubectl apply -k deploy/` installs and what the Dockerfile builds, checked without a cluster or a
 * Docker engine: the image's build inputs exist and build, the Deployment is locked down, RBAC keeps
 * Secrets namespaced. test/e2e/rbac.test.ts runs the operator with this RBAC against a real API server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { loadConfig, OPTIONS } from '../../src/config.ts';
import { NODE_ENV, NODE_FLAGS } from '../node-runtime.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const NAMESPACE = 'flux-bootstrap-system';
const SERVICE_ACCOUNT = 'flux-bootstrap-operator';
const IMAGE = 'ghcr.io/flux-bootstrap-operator/flux-bootstrap-operator:v0.1.0';

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
};
type Rule = { apiGroups?: string[]; resources?: string[]; verbs: string[]; resourceNames?: string[] };

// --- Dockerfile ---------------------------------------------------------------------------------------

interface Instruction {
  cmd: string;
  args: string;
  stage: number;
}

/**
 * dockerfile reads the Dockerfile's instructions (continuation lines joined, comments dropped), numbering the stages.
 */
function dockerfile(): Instruction[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\r?\n/g, ' ');
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    const [, cmd, args] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    if (!cmd) continue;
    if (cmd.toUpperCase() === 'FROM') stage++;
    out.push({ cmd: cmd.toUpperCase(), args: args.replace(/\s+/g, ' ').trim(), stage });
  }
  return out;
}

/** contextCopies lists the sources of every COPY/ADD that reads the build context (not `--from=` a stage). */
function contextCopies(): string[] {
  const sources: string[] = [];
  for (const i of dockerfile()) {
    if (i.cmd !== 'COPY' && i.cmd !== 'ADD') continue;
    const words = i.args.split(' ');
    if (words.some((w) => w.startsWith('--from='))) continue;
    const paths = words.filter((w) => !w.startsWith('--'));
    sources.push(...paths.slice(0, -1));
  }
  return sources;
}

/**
 * dockerignored says whether a .dockerignore pattern (as this project writes them: names, no globs) excludes a path.
 */
function dockerignored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const clean = path.replace(/^\.\//, '').replace(/\/$/, '');
  return patterns.some((p) => {
    const re = new RegExp(
      `^${p
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^/]*')}(/|$)`,
    );
    return re.test(clean);
  });
}

test('every path the Dockerfile copies from the build context exists and is not excluded by .dockerignore', () => {
  const sources = contextCopies();
  assert.deepEqual(sources.sort(), [
    'package-lock.json',
    'package.json',
    'src',
    'tsconfig.build.json',
    'tsconfig.json',
  ]);
  for (const s of sources) {
    assert.ok(existsSync(join(ROOT, s)), `COPY ${s}: no such path in the build context`);
    assert.ok(!dockerignored(s), `COPY ${s}: .dockerignore excludes it`);
  }
});

test('.dockerignore keeps dependencies, build output, the lab, git history and tests out of the build context', () => {
  for (const p of [
    'node_modules',
    'dist',
    '.lab',
    '.git',
    'test',
    'test/e2e/harness.ts',
    'node_modules/js-yaml/index.js',
  ])
    assert.ok(dockerignored(p), `${p} is sent to the Docker daemon`);
});

test('both stages are node:24-slim; the build stage runs npm ci, npm run build and drops the dev dependencies', () => {
  const d = dockerfile();
  const froms = d.filter((i) => i.cmd === 'FROM').map((i) => i.args.split(' ')[0]);
  assert.deepEqual(froms, ['node:24-slim', 'node:24-slim']);
  const buildRuns = d
    .filter((i) => i.stage === 0 && i.cmd === 'RUN')
    .map((i) => i.args)
    .join(' && ');
  assert.match(buildRuns, /npm ci\b/);
  assert.match(buildRuns, /npm run build\b/);
  assert.match(buildRuns, /npm (prune|ci) --omit=dev\b/);
  assert.ok(
    buildRuns.indexOf('npm run build') < buildRuns.search(/--omit=dev/),
    'dev dependencies are dropped after the build, not before',
  );
});

test('the runtime stage installs git, ssh and CA certificates, runs as user 65532 and starts dist/main.js', () => {
  const runtime = dockerfile().filter((i) => i.stage === 1);
  const runs = runtime
    .filter((i) => i.cmd === 'RUN')
    .map((i) => i.args)
    .join(' && ');
  assert.match(runs, /apt-get install -y --no-install-recommends [^&]*\bgit\b/);
  for (const pkg of ['git', 'openssh-client', 'ca-certificates', 'tini'])
    assert.match(runs, new RegExp(`apt-get install[^&]*\\s${pkg}(\\s|$)`), `apt-get install ${pkg}`);
  assert.match(runs, /useradd [^&]*--uid 65532/, 'ssh refuses to run for a uid without a passwd entry');
  const users = runtime.filter((i) => i.cmd === 'USER').map((i) => i.args);
  assert.equal(users.at(-1)?.split(':')[0], '65532');
  const copies = runtime.filter((i) => i.cmd === 'COPY').map((i) => i.args);
  for (const p of ['/app/dist', '/app/node_modules', '/app/package.json'])
    assert.ok(
      copies.some((c) => c.startsWith(`--from=build ${p} `)),
      `the runtime copies ${p} from the build stage`,
    );
  assert.deepEqual(JSON.parse(runtime.find((i) => i.cmd === 'ENTRYPOINT')!.args), [
    'tini',
    '--',
    'node',
    ...NODE_FLAGS,
    'dist/main.js',
  ]);
  for (const [k, v] of Object.entries(NODE_ENV))
    assert.match(
      runtime.find((i) => i.cmd === 'ENV')!.args,
      new RegExp(`\\b${k}=${v}\\b`),
      `the image runs node as the tests do: ${k}=${v}`,
    );
});

// --- the build ----------------------------------------------------------------------------------------

let built: string;

before(() => {
  // The build context as the Dockerfile's build stage sees it: only what it COPYs, plus the dependencies.
  built = mkdtempSync(join(tmpdir(), 'fbo-image-build-'));
  for (const s of contextCopies()) cpSync(join(ROOT, s), join(built, s), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(built, 'node_modules'), 'dir');
  execFileSync('npm', ['run', 'build'], { cwd: built, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
});

after(() => {
  if (built) rmSync(built, { recursive: true, force: true });
});

test('npm run build, from the files the Dockerfile copies, produces dist/main.js and the shipped Flux manifests', () => {
  assert.ok(statSync(join(built, 'dist', 'main.js')).isFile());
  const components = join(built, 'dist', 'manifests', 'flux', 'v2.9.4', 'gotk-components.yaml');
  assert.ok(statSync(components).isFile());
  assert.equal(
    readFileSync(components, 'utf8'),
    readFileSync(join(ROOT, 'src', 'manifests', 'flux', 'v2.9.4', 'gotk-components.yaml'), 'utf8'),
  );
});

test('node dist/main.js loads every module of the operator and reads its flags', () => {
  // A bad flag makes loadConfig throw after every static import has been linked and evaluated.
  const r = spawnSync(process.execPath, ['dist/main.js', '--concurrency=0'], {
    cwd: built,
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--concurrency must be a positive integer, not 0/);
  assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|Cannot find/);
});

test(
  'the built code imports only Node built-ins and production dependencies, so npm prune --omit=dev keeps it ' +
    'working',
  () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const production = new Set(Object.keys(pkg.dependencies));
    const builtins = new Set(builtinModules);
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
      );
    const dist = join(built, 'dist');
    const js = files(dist);
    assert.ok(js.length > 10);
    for (const file of js) {
      const text = readFileSync(file, 'utf8');
      const specifiers = [
        ...text.matchAll(
          /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm,
        ),
      ].map((m) => m[1] ?? m[2] ?? m[3]);
      for (const s of specifiers) {
        if (s.startsWith('.')) {
          assert.ok(
            s.endsWith('.js'),
            `${relative(dist, file)} imports ${s}: relative imports must be rewritten to .js`,
          );
          continue;
        }
        if (s.startsWith('node:') || builtins.has(s)) continue;
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0];
        assert.ok(production.has(name), `${relative(dist, file)} imports ${s}, which is not a production dependency`);
      }
    }
  },
);

// --- deploy/ ------------------------------------------------------------------------------------------

/**
 * kustomize reads a kustomization's resources (directories through their own kustomization.yaml) and applies its
 * images.
 */
function kustomize(dir: string): { objects: Obj[]; files: string[] } {
  const k = yaml.load(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as any;
  const objects: Obj[] = [];
  const files: string[] = [];
  for (const r of k.resources ?? []) {
    const path = join(dir, r);
    if (statSync(path).isDirectory()) {
      const sub = kustomize(path);
      objects.push(...sub.objects);
      files.push(...sub.files);
    } else {
      files.push(path);
      objects.push(...(yaml.loadAll(readFileSync(path, 'utf8')).filter(Boolean) as Obj[]));
    }
  }
  for (const img of k.images ?? []) {
    for (const o of objects) {
      for (const c of o.spec?.template?.spec?.containers ?? []) {
        if (c.image === img.name || c.image.startsWith(`${img.name}:`))
          c.image = `${img.newName ?? img.name}:${img.newTag}`;
      }
    }
  }
  return { objects, files };
}

const { objects, files } = kustomize(DEPLOY);
const find = (kind: string, name?: string) =>
  objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const one = (kind: string, name?: string) => {
  const found = find(kind, name);
  assert.equal(found.length, 1, `one ${kind}${name ? ` ${name}` : ''}`);
  return found[0];
};
const deployment = () => one('Deployment', 'flux-bootstrap-operator');
const container = () => {
  const cs = deployment().spec.template.spec.containers;
  assert.equal(cs.length, 1);
  return cs[0];
};

test('kustomization.yaml installs the CRDs from crds/ and every manifest of deploy/, examples aside', () => {
  const listed = new Set(files.map((f) => relative(ROOT, f)));
  assert.ok(listed.has('crds/fluxbootstrap.dev_clusterbootstraps.yaml'));
  assert.ok(listed.has('crds/fluxbootstrap.dev_clusterbootstrapsets.yaml'));
  const onDisk = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  for (const f of onDisk) assert.ok(listed.has(`deploy/${f}`), `deploy/${f} is not in kustomization.yaml`);
  assert.ok(![...listed].some((f) => f.startsWith('deploy/examples/')), 'examples are not installed');
  assert.deepEqual(
    find('CustomResourceDefinition')
      .map((c) => c.metadata.name)
      .sort(),
    ['clusterbootstraps.fluxbootstrap.dev', 'clusterbootstrapsets.fluxbootstrap.dev'],
  );
  one('Namespace', NAMESPACE);
  one('ServiceAccount', SERVICE_ACCOUNT);
});

test('every namespaced object is in flux-bootstrap-system, as the kustomization sets', () => {
  const k = yaml.load(readFileSync(join(DEPLOY, 'kustomization.yaml'), 'utf8')) as any;
  assert.equal(k.namespace, NAMESPACE);
  const clusterScoped = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);
  for (const o of objects)
    if (!clusterScoped.has(o.kind)) assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind} ${o.metadata.name}`);
});

test(
  'the Deployment runs two replicas of ghcr.io/flux-bootstrap-operator/flux-bootstrap-operator:v0.1.0 as the ' +
    'operator service account',
  () => {
    const d = deployment();
    assert.equal(d.spec.replicas, 2);
    assert.equal(container().image, IMAGE);
    assert.equal(d.spec.template.spec.serviceAccountName, SERVICE_ACCOUNT);
    assert.notEqual(
      d.spec.template.spec.automountServiceAccountToken,
      false,
      'the operator authenticates with its service account token',
    );
    for (const [k, v] of Object.entries(d.spec.selector.matchLabels))
      assert.equal(d.spec.template.metadata.labels[k], v, 'the selector matches the pod labels');
  },
);

test(
  'the Deployment runs non-root with a read-only root filesystem, no privilege escalation, all capabilities ' +
    'dropped and RuntimeDefault seccomp',
  () => {
    const pod = deployment().spec.template.spec.securityContext;
    const c = container().securityContext;
    assert.equal(pod.runAsNonRoot, true);
    assert.equal(pod.runAsUser, 65532);
    assert.equal(pod.seccompProfile.type, 'RuntimeDefault');
    assert.equal(c.runAsNonRoot, true);
    assert.equal(c.runAsUser ?? pod.runAsUser, 65532);
    assert.equal(c.readOnlyRootFilesystem, true);
    assert.equal(c.allowPrivilegeEscalation, false);
    assert.notEqual(c.privileged, true);
    assert.deepEqual(c.capabilities.drop, ['ALL']);
    assert.equal(c.capabilities.add, undefined);
    assert.equal((c.seccompProfile ?? pod.seccompProfile).type, 'RuntimeDefault');
    assert.equal(one('Namespace', NAMESPACE).metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  },
);

test('the Deployment probes /healthz and /readyz on port 8081 and sets resource requests and limits', () => {
  const c = container();
  const port = (p: number | string) =>
    typeof p === 'number' ? p : c.ports.find((x: any) => x.name === p)?.containerPort;
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(port(c.livenessProbe.httpGet.port), 8081);
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(port(c.readinessProbe.httpGet.port), 8081);
  assert.equal(port('http-metrics'), 8080);
  for (const kind of ['requests', 'limits'])
    for (const r of ['cpu', 'memory']) assert.ok(c.resources?.[kind]?.[r], `resources.${kind}.${r}`);
});

test(
  'the container args and env make the operator lead through a Lease in its own namespace, watch every namespace ' +
    'and clone into /work',
  () => {
    const c = container();
    const env: Record<string, string> = {};
    for (const e of c.env) {
      if (e.valueFrom) {
        const field = e.valueFrom.fieldRef?.fieldPath;
        assert.ok(['metadata.name', 'metadata.namespace'].includes(field), `${e.name} comes from the downward API`);
        env[e.name] = field === 'metadata.name' ? 'flux-bootstrap-operator-6d9f-abcde' : NAMESPACE;
      } else env[e.name] = e.value;
    }
    assert.ok(env.POD_NAME && env.POD_NAMESPACE);
    assert.equal(env.HOME, '/tmp');
    const config = loadConfig(c.args, env);
    assert.equal(config.leaderElect, true);
    assert.equal(config.leaderElectionNamespace, NAMESPACE);
    assert.equal(config.identity, env.POD_NAME, 'each replica is its pod in the Lease');
    assert.deepEqual(config.watchNamespaces, [], 'every namespace');
    assert.equal(config.workDir, '/work');
    assert.equal(config.healthAddr, ':8081');
    assert.equal(config.metricsAddr, ':8080');
    for (const a of c.args) assert.ok(a.replace(/^--/, '').split('=')[0] in OPTIONS, `${a} is a flag of src/config.ts`);
  },
);

test('/work and /tmp, where git and ssh write, are emptyDir volumes', () => {
  const c = container();
  const volumes = deployment().spec.template.spec.volumes;
  for (const path of ['/work', '/tmp']) {
    const mount = c.volumeMounts.find((m: any) => m.mountPath === path);
    assert.ok(mount, `${path} is mounted`);
    assert.ok(volumes.find((v: any) => v.name === mount.name)?.emptyDir, `${path} is an emptyDir`);
  }
});

test('the metrics Service exposes port 8080, named http-metrics, of the operator pods', () => {
  const svc = one('Service');
  const labels = deployment().spec.template.metadata.labels;
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(labels[k], v);
  assert.equal(svc.spec.ports.length, 1);
  assert.equal(svc.spec.ports[0].name, 'http-metrics');
  assert.equal(svc.spec.ports[0].port, 8080);
  const target = svc.spec.ports[0].targetPort;
  assert.equal(
    typeof target === 'number' ? target : container().ports.find((p: any) => p.name === target)?.containerPort,
    8080,
  );
});

// --- RBAC ---------------------------------------------------------------------------------------------

const covers = (list: string[] | undefined, value: string) =>
  (list ?? []).includes(value) || (list ?? []).includes('*');
const canReadSecrets = (rules: Rule[]) =>
  rules.some(
    (r) =>
      covers(r.apiGroups, '') &&
      covers(r.resources, 'secrets') &&
      ['get', 'list', 'watch'].some((v) => covers(r.verbs, v)),
  );
const roleOf = (binding: Obj): Obj | undefined =>
  objects.find(
    (o) =>
      o.kind === binding.roleRef.kind &&
      o.metadata.name === binding.roleRef.name &&
      (o.kind === 'ClusterRole' || o.metadata.namespace === binding.metadata.namespace),
  );
const simplify = (rules: Rule[]) =>
  rules.map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: [...r.verbs].sort() }));

test('no ClusterRoleBinding binds a role that can read Secrets', () => {
  const crbs = find('ClusterRoleBinding');
  assert.ok(crbs.length > 0);
  for (const b of crbs) {
    const role = roleOf(b);
    assert.ok(role, `ClusterRoleBinding ${b.metadata.name} binds ClusterRole ${b.roleRef.name}, which deploy/ defines`);
    assert.equal(role.aggregationRule, undefined, 'an aggregated role could gain Secret access later');
    assert.ok(
      !canReadSecrets(role.rules ?? []),
      `ClusterRoleBinding ${b.metadata.name} grants Secret access cluster-wide through ${b.roleRef.name}`,
    );
  }
});

test('the operator ClusterRole grants only what the code calls on ClusterBootstraps and Events', () => {
  assert.deepEqual(simplify(one('ClusterRole', 'flux-bootstrap-operator').rules), [
    {
      apiGroups: ['fluxbootstrap.dev'],
      resources: ['clusterbootstraps'],
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'watch'],
    },
    { apiGroups: ['fluxbootstrap.dev'], resources: ['clusterbootstraps/status'], verbs: ['patch'] },
    { apiGroups: ['fluxbootstrap.dev'], resources: ['clusterbootstrapsets'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['fluxbootstrap.dev'], resources: ['clusterbootstrapsets/status'], verbs: ['patch'] },
    { apiGroups: ['fluxbootstrap.dev'], resources: ['clusterbootstrapsets/finalizers'], verbs: ['update'] },
    { apiGroups: ['cluster.x-k8s.io'], resources: ['clusters'], verbs: ['get', 'list'] },
    { apiGroups: ['fluxbootstrap.dev'], resources: ['clusterbootstraps/finalizers'], verbs: ['update'] },
    { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  ]);
});

test(
  'the Secrets ClusterRole grants get, create and patch only, and deploy/ binds it by RoleBinding in ' +
    'flux-bootstrap-system',
  () => {
    assert.deepEqual(simplify(one('ClusterRole', 'flux-bootstrap-operator-secrets').rules), [
      { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'get', 'patch'] },
    ]);
    const bindings = objects.filter(
      (o) =>
        (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') &&
        o.roleRef.name === 'flux-bootstrap-operator-secrets',
    );
    assert.deepEqual(
      bindings.map((b) => `${b.kind} ${b.metadata.namespace}/${b.metadata.name}`),
      [`RoleBinding ${NAMESPACE}/flux-bootstrap-operator-secrets`],
    );
  },
);

test('leader election gets a Role, in flux-bootstrap-system only, to get, create and update Leases', () => {
  const role = one('Role', 'flux-bootstrap-operator-leader-election');
  assert.equal(role.metadata.namespace, NAMESPACE);
  assert.deepEqual(simplify(role.rules), [
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create', 'get', 'update'] },
  ]);
  const binding = find('RoleBinding').find((b) => b.roleRef.kind === 'Role' && b.roleRef.name === role.metadata.name);
  assert.ok(binding && binding.metadata.namespace === NAMESPACE);
});

test('every binding names the operator service account in flux-bootstrap-system and a role that deploy/ defines', () => {
  for (const b of [...find('RoleBinding'), ...find('ClusterRoleBinding')]) {
    assert.deepEqual(
      b.subjects,
      [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT, namespace: NAMESPACE }],
      `${b.kind} ${b.metadata.name}`,
    );
    assert.ok(roleOf(b), `${b.kind} ${b.metadata.name}: ${b.roleRef.kind} ${b.roleRef.name} is not in deploy/`);
  }
});

test('the tenant example is a RoleBinding of the Secrets ClusterRole to the operator service account in one namespace', () => {
  const docs = yaml
    .loadAll(readFileSync(join(DEPLOY, 'examples', 'tenant-rolebinding.yaml'), 'utf8'))
    .filter(Boolean) as Obj[];
  assert.equal(docs.length, 1);
  const [b] = docs;
  assert.equal(b.kind, 'RoleBinding');
  assert.ok(b.metadata.namespace && b.metadata.namespace !== NAMESPACE);
  assert.deepEqual(b.roleRef, {
    apiGroup: 'rbac.authorization.k8s.io',
    kind: 'ClusterRole',
    name: 'flux-bootstrap-operator-secrets',
  });
  assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT, namespace: NAMESPACE }]);
});

test('the kube-state-metrics config reads ClusterBootstraps by paths their CRD has', () => {
  const ksm = yaml.load(
    readFileSync(join(DEPLOY, 'monitoring', 'kube-state-metrics-clusterbootstraps.yaml'), 'utf8'),
  ) as any;
  const crd = yaml.load(readFileSync(join(ROOT, 'crds', 'fluxbootstrap.dev_clusterbootstraps.yaml'), 'utf8')) as any;
  const schema = crd.spec.versions[0].schema.openAPIV3Schema;
  const resource = ksm.spec.resources[0];
  assert.deepEqual(resource.groupVersionKind, {
    group: 'fluxbootstrap.dev',
    version: 'v1alpha1',
    kind: 'ClusterBootstrap',
  });
  for (const path of Object.values(resource.metrics[0].labelsFromPath) as string[][]) {
    let node = schema;
    for (const step of path) {
      if (step.startsWith('[')) node = node.items;
      else if (step !== 'metadata') node = node.properties?.[step];
      else node = { properties: { name: {}, namespace: {} } };
      assert.ok(node, `${path.join('.')} is in the CRD`);
    }
  }
});
