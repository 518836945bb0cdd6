/**
 * The Helm chart (charts/flux-bootstrap-operator) and deploy/ install the same operator: byte-for-byte the same
 * CRD, the same RBAC, the same Deployment (args aside, the same spec; its args give the same configuration) and
 * the same metrics Service. Then each chart value does what values.yaml says. Renders with the lab's helm
 * (built from test/lab/go/helm once, then cached); test/e2e/helm.test.ts installs the chart in the lab.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { loadConfig, OPTIONS, type Config } from '../../src/config.ts';
import { ensureHelm, HELM_BUILD, HELM_VERSION, LAB_BUILDS } from '../lab/build.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(ROOT, 'charts', 'flux-bootstrap-operator');
const DEPLOY = join(ROOT, 'deploy');
const NAMESPACE = 'flux-bootstrap-system';
const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
};

function haveGo(): boolean {
  return (
    spawnSync(process.env.GO ?? 'go', ['version'], { stdio: 'ignore', env: { ...process.env, GOTOOLCHAIN: 'local' } })
      .status === 0
  );
}
const skip = haveGo() ? false : 'go not installed (helm is built from test/lab/go/helm)';

let helm: string;
let values: string;

before(
  async () => {
    if (skip) return;
    helm = await ensureHelm({ log: (l) => process.stderr.write(`${l}\n`) });
    values = mkdtempSync(join(tmpdir(), 'chart-values-'));
    process.on('exit', () => rmSync(values, { recursive: true, force: true }));
  },
  { timeout: 40 * 60_000 },
);

/** template runs `helm template` in flux-bootstrap-system with the given values; keeps the exit code and stderr. */
function template(vals: object = {}): { status: number | null; stdout: string; stderr: string } {
  const file = join(values, `${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, JSON.stringify(vals));
  const r = spawnSync(helm, ['template', 'fbo', CHART, '--namespace', NAMESPACE, '--values', file], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: values },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** render is the objects `helm template` makes, in the namespace `helm install` puts them in. */
function render(vals: object = {}): Obj[] {
  const r = template(vals);
  assert.equal(r.status, 0, r.stderr);
  const objects = yaml.loadAll(r.stdout).filter(Boolean) as Obj[];
  for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind) && !o.metadata.namespace) o.metadata.namespace = NAMESPACE;
  return objects;
}

/** kustomize is what `kubectl apply -k deploy/` applies (resources, namespace, images), CRD and Namespace aside. */
function kustomize(dir: string): Obj[] {
  const k = yaml.load(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as any;
  const objects: Obj[] = [];
  for (const r of k.resources ?? []) {
    const path = join(dir, r);
    if (statSync(path).isDirectory()) objects.push(...kustomize(path));
    else objects.push(...(yaml.loadAll(readFileSync(path, 'utf8')).filter(Boolean) as Obj[]));
  }
  for (const o of objects) {
    if (k.namespace && !CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
    for (const c of o.spec?.template?.spec?.containers ?? []) {
      const img = (k.images ?? []).find((i: any) => c.image === i.name || c.image.startsWith(`${i.name}:`));
      if (img) c.image = `${img.newName ?? img.name}:${img.newTag}`;
    }
  }
  return objects;
}

const deployed = () => kustomize(DEPLOY).filter((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'Namespace');
const ref = (o: Obj) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
const one = (objects: Obj[], kind: string, name?: string): Obj => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `one ${kind} ${name ?? ''} in ${objects.map(ref).join(', ')}`);
  return found[0];
};
const container = (objects: Obj[]) => one(objects, 'Deployment').spec.template.spec.containers[0];

/**
 * config is what the operator reads from a Deployment's container (downward API env filled in as the kubelet would).
 */
function config(objects: Obj[]): Config {
  const c = container(objects);
  const env: Record<string, string> = {};
  for (const e of c.env)
    env[e.name] = e.valueFrom ? (e.valueFrom.fieldRef.fieldPath === 'metadata.name' ? 'pod-abc' : NAMESPACE) : e.value;
  return loadConfig(c.args, env);
}

/** rbac is every role's rules (verbs sorted) and every binding's roleRef and subjects, by kind, namespace and name. */
function rbac(objects: Obj[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of objects) {
    if (o.kind === 'ClusterRole' || o.kind === 'Role')
      out[ref(o)] = o.rules.map((r: any) => ({ ...r, verbs: [...r.verbs].sort() }));
    if (o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')
      out[ref(o)] = { roleRef: o.roleRef, subjects: o.subjects };
  }
  return out;
}

test('the chart ships the CRD of crds/ byte for byte (copy it over after changing crds/)', () => {
  const yamls = (dir: string) =>
    readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
      .sort();
  const chartCrds = join(CHART, 'crds');
  assert.deepEqual(yamls(chartCrds), yamls(join(ROOT, 'crds')));
  for (const f of yamls(join(ROOT, 'crds'))) {
    const same = readFileSync(join(chartCrds, f)).equals(readFileSync(join(ROOT, 'crds', f)));
    assert.ok(
      same,
      `charts/flux-bootstrap-operator/crds/${f} differs from crds/${f}: cp crds/${f} ` +
        `charts/flux-bootstrap-operator/crds/`,
    );
  }
});

test(
  'by default the chart renders every object deploy/ installs, plus a PodDisruptionBudget, and no ServiceMonitor',
  { skip },
  () => {
    const chart = render().map(ref).sort();
    const deploy = deployed().map(ref);
    const expected = [...deploy, `PodDisruptionBudget ${NAMESPACE}/flux-bootstrap-operator`].sort();
    assert.deepEqual(chart, expected);
  },
);

test('by default the chart grants exactly the RBAC rules and bindings of deploy/', { skip }, () => {
  const chart = rbac(render());
  assert.equal(Object.keys(chart).length, 8, Object.keys(chart).join(', '));
  assert.deepEqual(chart, rbac(deployed()));
});

test(
  'by default the chart runs the Deployment of deploy/: the same spec (replicas, image, env, probes, ' +
    'securityContext, resources, volumes, affinity)',
  { skip },
  () => {
    const withoutArgs = (d: Obj) => {
      const spec = structuredClone(d.spec);
      for (const c of spec.template.spec.containers) delete c.args;
      return spec;
    };
    const chart = one(render(), 'Deployment', 'flux-bootstrap-operator');
    const deploy = one(deployed(), 'Deployment', 'flux-bootstrap-operator');
    assert.equal(chart.metadata.namespace, deploy.metadata.namespace);
    assert.deepEqual(withoutArgs(chart), withoutArgs(deploy));
    // Read on its own too, so that a failure names the setting.
    const [c, d] = [chart, deploy].map((x) => x.spec.template.spec.containers[0]);
    for (const k of ['env', 'livenessProbe', 'readinessProbe', 'securityContext', 'resources', 'volumeMounts', 'image'])
      assert.deepEqual(c[k], d[k], k);
    assert.deepEqual(chart.spec.template.spec.securityContext, deploy.spec.template.spec.securityContext);
    assert.deepEqual(chart.spec.template.spec.volumes, deploy.spec.template.spec.volumes);
  },
);

test("by default the chart's args contain every arg of deploy/ and configure the operator the same", { skip }, () => {
  const chart = render();
  const deploy = deployed();
  for (const a of container(deploy).args) assert.ok(container(chart).args.includes(a), `the chart lacks ${a}`);
  for (const a of container(chart).args)
    assert.ok(a.replace(/^--/, '').split('=')[0] in OPTIONS, `${a} is not a flag of src/config.ts`);
  assert.deepEqual(config(chart), config(deploy));
});

test('by default the chart exposes the metrics Service of deploy/', { skip }, () => {
  const chart = one(render(), 'Service');
  const deploy = one(deployed(), 'Service');
  assert.equal(chart.metadata.name, deploy.metadata.name);
  assert.equal(chart.metadata.labels['app.kubernetes.io/component'], 'metrics');
  assert.deepEqual(chart.spec, deploy.spec);
});

test('the values for the operator become its flags', { skip }, () => {
  const objects = render({
    watchNamespaces: ['team-a', 'team-b'],
    concurrency: 8,
    resyncPeriod: '2m',
    reconcileTimeout: '90s',
    logLevel: 'debug',
    allowTargetlessNamespaces: ['platform'],
    extraArgs: ['--leader-election-id=fbo-lease'],
  });
  const c = config(objects);
  assert.deepEqual(c.watchNamespaces, ['team-a', 'team-b']);
  assert.equal(c.concurrency, 8);
  assert.equal(c.resyncMs, 120_000);
  assert.equal(c.reconcileTimeoutMs, 90_000);
  assert.equal(c.logLevel, 'debug');
  assert.deepEqual(c.allowTargetlessNamespaces, ['platform']);
  assert.equal(c.leaderElectionId, 'fbo-lease');
  assert.equal(c.leaderElect, true);
  assert.equal(c.leaderElectionNamespace, NAMESPACE, 'the Lease is in the release namespace');
});

test('image, replicas and resources are values', { skip }, () => {
  // null removes a default (Helm merges maps): here the CPU limit.
  const resources = { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: null, memory: '1Gi' } };
  const d = one(
    render({
      image: { repository: 'registry.example/fbo', tag: 'v9.9.9', pullPolicy: 'Always' },
      replicas: 3,
      resources,
    }),
    'Deployment',
  );
  assert.equal(d.spec.replicas, 3);
  assert.equal(d.spec.template.spec.containers[0].image, 'registry.example/fbo:v9.9.9');
  assert.equal(d.spec.template.spec.containers[0].imagePullPolicy, 'Always');
  assert.deepEqual(d.spec.template.spec.containers[0].resources, {
    requests: { cpu: '50m', memory: '64Mi' },
    limits: { memory: '1Gi' },
  });
  const digest = `sha256:${'a'.repeat(64)}`;
  assert.equal(
    container(render({ image: { digest } })).image,
    `ghcr.io/flux-bootstrap-operator/flux-bootstrap-operator@${digest}`,
  );
});

test(
  'tenantNamespaces get the RoleBinding of ClusterRole flux-bootstrap-operator-secrets, once each, and nothing broader',
  { skip },
  () => {
    const objects = render({ tenantNamespaces: ['team-a', NAMESPACE, 'team-b'] });
    const bindings = objects.filter(
      (o) => o.kind === 'RoleBinding' && o.roleRef.name === 'flux-bootstrap-operator-secrets',
    );
    assert.deepEqual(bindings.map((b) => b.metadata.namespace).sort(), [NAMESPACE, 'team-a', 'team-b']);
    for (const b of bindings) {
      assert.deepEqual(b.roleRef, {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'flux-bootstrap-operator-secrets',
      });
      assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'flux-bootstrap-operator', namespace: NAMESPACE }]);
    }
    // The same as deploy/examples/tenant-rolebinding.yaml for team-a.
    const example = yaml.load(readFileSync(join(DEPLOY, 'examples', 'tenant-rolebinding.yaml'), 'utf8')) as Obj;
    const teamA = bindings.find((b) => b.metadata.namespace === 'team-a')!;
    assert.deepEqual(
      { name: teamA.metadata.name, roleRef: teamA.roleRef, subjects: teamA.subjects },
      { name: example.metadata.name, roleRef: example.roleRef, subjects: example.subjects },
    );
    assert.ok(
      !objects.some((o) => o.kind === 'ClusterRoleBinding' && o.roleRef.name === 'flux-bootstrap-operator-secrets'),
      'Secrets are never bound cluster-wide',
    );
  },
);

test('without leader election the chart renders no Lease Role, and refuses more than one replica', { skip }, () => {
  const objects = render({ leaderElection: { enabled: false }, replicas: 1 });
  assert.equal(config(objects).leaderElect, false);
  assert.deepEqual(objects.filter((o) => /leader-election/.test(o.metadata.name)).map(ref), []);
  assert.equal(
    objects.filter((o) => o.kind === 'PodDisruptionBudget').length,
    0,
    'no PodDisruptionBudget for one replica: it would block every drain',
  );
  const r = template({ leaderElection: { enabled: false } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /replicas > 1 needs leaderElection.enabled/);
});

test(
  'the PodDisruptionBudget keeps one replica of the operator pods through a drain, and can be turned off',
  { skip },
  () => {
    const objects = render();
    const pdb = one(objects, 'PodDisruptionBudget');
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, one(objects, 'Deployment').spec.selector.matchLabels);
    assert.equal(
      render({ podDisruptionBudget: { enabled: false } }).filter((o) => o.kind === 'PodDisruptionBudget').length,
      0,
    );
  },
);

test(
  'the NetworkPolicy lets in only metrics (8080) and health (8081), and out only DNS and 22, 443 and 6443, never to ' +
    'the link-local range (cloud metadata), as deploy/ does',
  { skip },
  () => {
    const objects = render();
    const np = one(objects, 'NetworkPolicy');
    assert.deepEqual(np.spec.podSelector.matchLabels, one(objects, 'Deployment').spec.template.metadata.labels);
    assert.deepEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(np.spec.ingress, [
      { ports: [{ port: 8080, protocol: 'TCP' }] },
      { ports: [{ port: 8081, protocol: 'TCP' }] },
    ]);
    assert.deepEqual(np.spec.egress, [
      {
        ports: [
          { port: 53, protocol: 'UDP' },
          { port: 53, protocol: 'TCP' },
        ],
      },
      {
        ports: [22, 443, 6443].map((port) => ({ port, protocol: 'TCP' })),
        to: [
          { ipBlock: { cidr: '0.0.0.0/0', except: ['169.254.0.0/16'] } },
          { ipBlock: { cidr: '::/0', except: ['fe80::/10'] } },
        ],
      },
    ]);
    const { podSelector: _p, ...rules } = one(deployed(), 'NetworkPolicy').spec;
    const { podSelector: _c, ...chartRules } = np.spec;
    assert.deepEqual(chartRules, rules);
  },
);

test('the NetworkPolicy takes other ports, peers and rules from values, and can be turned off', { skip }, () => {
  const to = [{ ipBlock: { cidr: '10.0.0.0/8' } }];
  const metricsFrom = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }];
  const extra = [{ to: [{ ipBlock: { cidr: '192.0.2.10/32' } }], ports: [{ port: 2222, protocol: 'TCP' }] }];
  const np = one(
    render({ networkPolicy: { egress: { ports: [443], to, extra }, ingress: { metricsFrom } } }),
    'NetworkPolicy',
  );
  assert.deepEqual(np.spec.egress.slice(1), [{ ports: [{ port: 443, protocol: 'TCP' }], to }, ...extra]);
  assert.deepEqual(np.spec.ingress[0], { ports: [{ port: 8080, protocol: 'TCP' }], from: metricsFrom });
  assert.equal(np.spec.ingress[1].from, undefined, 'the kubelet still reaches the probes');
  assert.equal(render({ networkPolicy: { enabled: false } }).filter((o) => o.kind === 'NetworkPolicy').length, 0);
});

test(
  'serviceMonitor.enabled adds a ServiceMonitor of the metrics Service, with the labels Prometheus selects by',
  { skip },
  () => {
    const objects = render({
      serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus-stack' } },
    });
    const sm = one(objects, 'ServiceMonitor');
    const svc = one(objects, 'Service');
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(sm.metadata.labels.release, 'kube-prometheus-stack');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels))
      assert.equal(svc.metadata.labels[k], v, `the ServiceMonitor selects the Service by ${k}`);
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [NAMESPACE] });
    assert.deepEqual(sm.spec.endpoints, [
      { port: 'http-metrics', path: '/metrics', interval: '15s', scrapeTimeout: '10s' },
    ]);
  },
);

test('values.schema.json refuses values the operator would refuse, and misspelt keys', { skip }, () => {
  for (const [vals, why] of [
    [{ logLevel: 'verbose' }, /logLevel/],
    [{ concurrency: 0 }, /concurrency/],
    [{ resyncPeriod: '10 minutes' }, /resyncPeriod/],
    [{ watchNamespaces: 'team-a' }, /watchNamespaces/],
    [{ replicaCount: 3 }, /replicaCount/],
    [{ networkPolicy: { egress: { ports: [0] } } }, /ports/],
  ] as const) {
    const r = template(vals);
    assert.notEqual(r.status, 0, `${JSON.stringify(vals)} was accepted`);
    assert.match(r.stderr, why);
  }
});

test(
  'helm is v3.22.0 from test/lab/go/helm, with the Kubernetes version of its client-go, and lab:up never builds it',
  { skip },
  () => {
    const gomod = readFileSync(join(HELM_BUILD.moduleDir, 'go.mod'), 'utf8');
    assert.equal(HELM_VERSION, 'v3.22.0');
    assert.match(gomod, /^tool helm\.sh\/helm\/v3\/cmd\/helm$/m);
    assert.match(gomod, new RegExp(`^\\s+helm\\.sh/helm/v3 ${HELM_VERSION.replace(/\./g, '\\.')}\\b`, 'm'));
    const [, minor] = /^\s+k8s\.io\/client-go v0\.(\d+)\./m.exec(gomod) ?? [];
    const minors = [...HELM_BUILD.flags.join(' ').matchAll(/k8sVersionMinor=(\d+)/g)].map((m) => m[1]);
    assert.deepEqual(minors, [minor, minor], `helm lint and template assume Kubernetes 1.${minor}, as its client-go`);
    assert.match(
      execFileSync(helm, ['version', '--short'], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: values } }),
      new RegExp(`^${HELM_VERSION}\\b`),
    );
    assert.ok(
      !Object.values(LAB_BUILDS).some((b) => b.name === 'helm'),
      'helm is not among the binaries lab:up builds',
    );
  },
);
