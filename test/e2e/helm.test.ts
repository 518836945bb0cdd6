/**
 * The Helm chart in the lab, as a platform team installs the operator: helm (v3.22.0, built from
 * test/lab/go/helm on first use, then cached) lints the chart, the management API server accepts what it
 * renders, `helm install` makes the release, and the operator — run as a local process with the token of the
 * ServiceAccount the release created, as rbac.test.ts does with deploy/'s — bootstraps a target from a namespace
 * the chart's tenantNamespaces bound. `helm uninstall` then leaves none of the release's objects behind; the CRD
 * stays, as Helm keeps crds/. test/integration/chart.test.ts checks the rendering against deploy/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { ensureHelm, PROJECT_ROOT } from '../lab/lab.ts';
import { KubeClient, KubeError } from '../../src/kube/client.ts';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  applyCB,
  authorizeWhenPublished,
  condition,
  E2E_LAB_DIR,
  installCRD,
  lab,
  mgmt,
  namespace,
  pushSecret,
  repo,
  serviceAccountKubeconfig,
  startOperator,
  targetKubeconfigSecret,
  waitCondition,
  type RunningOperator,
} from './harness.ts';

const CHART = join(PROJECT_ROOT, 'charts', 'flux-bootstrap-operator');
const SYSTEM = 'flux-bootstrap-system';
const RELEASE = 'flux-bootstrap-operator';
const SA = 'flux-bootstrap-operator';
const CRD = 'clusterbootstraps.fluxbootstrap.dev';
const name = 'helm-eu';

type Run = { status: number | null; stdout: string; stderr: string };

let helmBin: string;
let tmp: string;
let ns: string;
let manifest = '';
let operator: RunningOperator | undefined;

/** run runs a command with the given stdin, keeping stdout, stderr and the exit code. */
function run(cmd: string, args: string[], input?: string): Run {
  const r = spawnSync(cmd, args, {
    input,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: tmp },
    maxBuffer: 64 << 20,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** helm runs the lab's helm as the lab's admin against the management cluster. */
const helm = (args: string[]) => run(helmBin, ['--kubeconfig', lab().LAB_MGMT_KUBECONFIG, ...args]);
/** kubectlRun runs the lab's kubectl against the management cluster, failures included. */
const kubectlRun = (args: string[], input?: string) =>
  run(join(lab().LAB_BIN, 'kubectl'), ['--kubeconfig', lab().LAB_MGMT_KUBECONFIG, ...args], input);
const ok = (r: Run, what: string) => assert.equal(r.status, 0, `${what}:\n${r.stderr}${r.stdout}`);

before(
  async () => {
    tmp = mkdtempSync(join(tmpdir(), 'e2e-helm-'));
    helmBin = await ensureHelm({ dir: E2E_LAB_DIR, log: (l) => process.stderr.write(`${l}\n`) });
    assert.equal(helmBin, join(lab().LAB_BIN, 'helm'), 'helm is linked into LAB_BIN');
    // The CRD as other e2e files install it, the operator namespace as deploy/ makes it (restricted Pod Security).
    await installCRD();
    ok(kubectlRun(['apply', '-f', join(PROJECT_ROOT, 'deploy', 'namespace.yaml')]), 'the namespace');
    // The tenant namespace exists before the release binds it.
    ns = await namespace('e2e-helm');
  },
  { timeout: 40 * 60_000 },
);

after(async () => {
  await operator?.stop();
  if (helm(['status', RELEASE, '-n', SYSTEM]).status === 0) helm(['uninstall', RELEASE, '-n', SYSTEM, '--wait']);
  rmSync(tmp, { recursive: true, force: true });
});

test('helm lint --strict finds nothing wrong with the chart', () => {
  const r = run(helmBin, ['lint', '--strict', CHART]);
  ok(r, 'helm lint');
  assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/);
});

test(
  'the management API server accepts every object helm template renders (server-side dry run), without Pod ' +
    'Security warnings',
  () => {
    // Applied with -n: the Deployment is checked against the restricted Pod Security Standard of flux-bootstrap-system.
    const rendered = run(helmBin, ['template', RELEASE, CHART, '--namespace', SYSTEM]);
    ok(rendered, 'helm template');
    const objects = yaml.loadAll(rendered.stdout).filter(Boolean) as any[];
    assert.ok(objects.length >= 10, `${objects.length} objects`);
    const r = kubectlRun(['apply', '--dry-run=server', '-n', SYSTEM, '-f', '-'], rendered.stdout);
    ok(r, 'kubectl apply --dry-run=server');
    assert.equal(
      r.stderr.trim(),
      '',
      'no warnings: the pods meet the restricted Pod Security Standard of flux-bootstrap-system',
    );
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, objects.length, r.stdout);
    assert.ok(
      lines.every((l) => l.endsWith('(server dry run)')),
      r.stdout,
    );
    for (const kind of [
      'deployment.apps',
      'poddisruptionbudget.policy',
      'networkpolicy.networking.k8s.io',
      'serviceaccount',
    ])
      assert.ok(
        lines.some((l) => l.startsWith(`${kind}/flux-bootstrap-operator `)),
        `${kind} in:\n${r.stdout}`,
      );
  },
);

test('helm install makes the release in flux-bootstrap-system, with the tenant RoleBinding in the tenant namespace', async () => {
  // --take-ownership: a lab that already ran rbac.test.ts holds deploy/'s objects of the same names.
  const r = helm(['install', RELEASE, CHART, '-n', SYSTEM, '--set', `tenantNamespaces={${ns}}`, '--take-ownership']);
  ok(r, 'helm install');
  assert.doesNotMatch(r.stderr, /PodSecurity|violate/i);
  assert.match(r.stdout, /STATUS: deployed/);
  const got = helm(['get', 'manifest', RELEASE, '-n', SYSTEM]);
  ok(got, 'helm get manifest');
  manifest = got.stdout;

  const client = mgmt();
  const d = await client.get<any>('apps/v1', 'Deployment', SYSTEM, 'flux-bootstrap-operator');
  assert.equal(d?.spec?.replicas, 2);
  assert.equal(d.metadata.labels['app.kubernetes.io/managed-by'], 'Helm');
  assert.ok(await client.get('v1', 'ServiceAccount', SYSTEM, SA));
  assert.ok(await client.get('policy/v1', 'PodDisruptionBudget', SYSTEM, 'flux-bootstrap-operator'));
  assert.ok(await client.get('networking.k8s.io/v1', 'NetworkPolicy', SYSTEM, 'flux-bootstrap-operator'));
  const binding = await client.get<any>(
    'rbac.authorization.k8s.io/v1',
    'RoleBinding',
    ns,
    'flux-bootstrap-operator-secrets',
  );
  assert.equal(binding?.roleRef?.name, 'flux-bootstrap-operator-secrets');
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: SA, namespace: SYSTEM }]);
});

test(
  "with only the token of the release's ServiceAccount, the operator wins the Lease and bootstraps a target " +
    'through Committed and Applied',
  async () => {
    const kubeconfig = serviceAccountKubeconfig(SA, SYSTEM, tmp);
    const asOperator = KubeClient.fromTrustedKubeconfig(readFileSync(kubeconfig, 'utf8'));
    const status = (p: Promise<unknown>) =>
      p.then(
        () => 200,
        (err) => (err instanceof KubeError ? err.code : err),
      );
    assert.equal(
      await status(asOperator.request('GET', '/api/v1/secrets')),
      403,
      'the token is not an admin: no Secrets cluster-wide',
    );

    await pushSecret(ns);
    await targetKubeconfigSecret(ns, name);
    const url = await repo('helm');
    operator = await startOperator({ namespaces: [ns], kubeconfig, leaderElect: true, leaseNamespace: SYSTEM });
    await applyCB(ns, name, {
      target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
      git: { url, secretRef: { name: 'git-push' } },
      flux: { version: 'v2.9.4' },
      sync: { interval: '10s' },
    });

    await authorizeWhenPublished(ns, name);
    await waitCondition(ns, name, 'Committed', 'True');
    const cb = await waitCondition(ns, name, 'Applied', 'True');
    assert.equal(condition(cb, 'IdentityReady')!.status, 'True');
    assert.ok(
      (await mgmt().get<any>('v1', 'Secret', ns, `${name}-flux-identity`))?.data?.known_hosts,
      'identity Secret created and patched through the RoleBinding of tenantNamespaces',
    );
    const lease = await mgmt().get<any>('coordination.k8s.io/v1', 'Lease', SYSTEM, 'flux-bootstrap-operator');
    assert.equal(
      lease?.spec?.holderIdentity,
      `${hostname()}-${operator.proc.pid}`,
      "the operator leads through the release's Role on Leases",
    );
    assert.deepEqual(
      operator.logs.filter((l) => /forbidden|\b403\b/i.test(l)),
      [],
      'no call was refused',
    );
  },
);

test('helm uninstall leaves none of the release objects behind, and keeps the CRD and the ClusterBootstraps', async () => {
  await operator?.stop();
  operator = undefined;
  assert.ok(manifest, 'the release was installed');
  const r = helm(['uninstall', RELEASE, '-n', SYSTEM, '--wait', '--timeout', '2m']);
  ok(r, 'helm uninstall');

  const released = yaml.loadAll(manifest).filter(Boolean) as any[];
  assert.ok(released.length >= 11, `${released.length} objects in the release`);
  const client = mgmt();
  const left: string[] = [];
  for (const o of released) {
    if (await client.get(o.apiVersion, o.kind, o.metadata.namespace ?? SYSTEM, o.metadata.name))
      left.push(`${o.kind} ${o.metadata.name}`);
  }
  assert.deepEqual(left, [], 'objects of the release still there');

  const kinds =
    'clusterroles,clusterrolebindings,roles,rolebindings,serviceaccounts,deployments,services,poddisruptionbudgets,networkpolicies,configmaps,secrets';
  const labelled = kubectlRun(['get', kinds, '-A', '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'name']);
  ok(labelled, 'kubectl get -l');
  assert.equal(labelled.stdout.trim(), '', 'objects labelled with the release');
  const history = kubectlRun(['get', 'secrets', '-n', SYSTEM, '-l', `owner=helm,name=${RELEASE}`, '-o', 'name']);
  assert.equal(history.stdout.trim(), '', 'the release history is gone');
  assert.notEqual(helm(['status', RELEASE, '-n', SYSTEM]).status, 0);

  assert.ok(
    await mgmt().get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', undefined, CRD),
    'the CRD stays (Helm never deletes crds/)',
  );
  assert.ok(await mgmt().get(API_VERSION, KIND, ns, name), 'and so do the ClusterBootstraps');
});
