/**
 * deploy/'s RBAC is enough, and no more than enough: the operator runs with the token of the service
 * account `kubectl apply -k deploy/` creates — not the lab's admin certificate — and bootstraps a cluster
 * from a namespace where the tenant RoleBinding of deploy/examples grants it Secrets, while Secrets of a
 * namespace without that binding stay out of its reach.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import yaml from 'js-yaml';
import { PROJECT_ROOT } from '../lab/lab.ts';
import { KubeClient, KubeError } from '../../src/kube/client.ts';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  applyCB,
  authorizeWhenPublished,
  condition,
  getCB,
  kubectl,
  lab,
  mgmt,
  namespace,
  pushSecret,
  repo,
  serviceAccountKubeconfig,
  secret,
  startOperator,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
  type RunningOperator,
} from './harness.ts';

const SYSTEM = 'flux-bootstrap-system';
const SA = 'flux-bootstrap-operator';
const DEPLOY = join(PROJECT_ROOT, 'deploy');
const name = 'rbac-eu';

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
};

/** kubectlFull runs the lab's kubectl against the management cluster and keeps stdout, stderr and the exit code. */
function kubectlFull(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(join(lab().LAB_BIN, 'kubectl'), ['--kubeconfig', lab().LAB_MGMT_KUBECONFIG, ...args], {
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** tenantBinding is deploy/examples/tenant-rolebinding.yaml for one namespace. */
function tenantBinding(ns: string): Obj {
  const b = yaml.load(readFileSync(join(DEPLOY, 'examples', 'tenant-rolebinding.yaml'), 'utf8')) as Obj;
  b.metadata.namespace = ns;
  return b;
}

/** forbiddenLines are the operator's log lines that report a 403 from the API server. */
const forbiddenLines = (op: RunningOperator) => op.logs.filter((l) => /forbidden|\b403\b/i.test(l));

let objects: Obj[];
let rbacFile: string | undefined;
let kubeconfig: string | undefined;
let asOperator: KubeClient;
let ns: string;
let unbound: string;
let url: string;
let operator: RunningOperator;

before(async () => {
  // What the operator runs with in a real cluster: everything deploy/ installs except the workload itself.
  objects = yaml.loadAll(kubectl(['kustomize', DEPLOY])).filter(Boolean) as Obj[];
  const rbac = objects.filter((o) => o.kind !== 'Deployment' && o.kind !== 'Service');
  rbacFile = join(mkdtempSync(join(tmpdir(), 'e2e-rbac-')), 'rbac.yaml');
  writeFileSync(rbacFile, rbac.map((o) => yaml.dump(o)).join('---\n'));
  kubectl(['apply', '-f', rbacFile]);
  await waitFor('the ClusterBootstrap CRD to be served', async () => {
    const client = mgmt();
    return client.list(API_VERSION, KIND, 'default').then(() => true);
  });

  // The service account's own token, in a kubeconfig that carries nothing else.
  kubeconfig = serviceAccountKubeconfig(SA, SYSTEM);
  asOperator = KubeClient.fromTrustedKubeconfig(readFileSync(kubeconfig, 'utf8'));

  // A tenant namespace with the RoleBinding of deploy/examples, and one without it.
  ns = await namespace('e2e-rbac');
  unbound = await namespace('e2e-rbac-unbound');
  await mgmt().apply(tenantBinding(ns), { fieldManager: 'e2e' });
  url = await repo('rbac');
  for (const n of [ns, unbound]) {
    await pushSecret(n);
    await targetKubeconfigSecret(n, name);
  }
  await secret(unbound, 'not-yours', { token: 'tenant data' });

  operator = await startOperator({ namespaces: [ns, unbound], kubeconfig, leaderElect: true, leaseNamespace: SYSTEM });
  const spec = {
    target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
    git: { url, secretRef: { name: 'git-push' } },
    flux: { version: 'v2.9.4' },
    sync: { interval: '10s' },
  };
  await applyCB(ns, name, spec);
  await applyCB(unbound, name, { ...spec, git: { ...spec.git, path: `clusters/${name}-unbound` } });
});

after(async () => {
  await operator?.stop();
  if (process.env.E2E_VERBOSE === undefined && operator) {
    const bad = forbiddenLines(operator).filter((l) => !l.includes(unbound));
    if (bad.length) process.stderr.write(`operator 403s:\n${bad.join('\n')}\n`);
  }
  for (const f of [rbacFile, kubeconfig]) if (f) rmSync(dirname(f), { recursive: true, force: true });
});

test('kubectl apply -k deploy/ --dry-run=server is accepted by the API server for every object, without warnings', () => {
  const r = kubectlFull(['apply', '-k', DEPLOY, '--dry-run=server']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stderr.trim(),
    '',
    'no warnings (the Deployment meets the restricted Pod Security Standard of its namespace)',
  );
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, objects.length, r.stdout);
  for (const o of objects) {
    const group = o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : '';
    const ref = `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
    assert.ok(
      lines.some((l) => l.startsWith(`${ref} `) && l.endsWith('(server dry run)')),
      `${ref} in:\n${r.stdout}`,
    );
  }
});

test(
  'with only its service account token, the operator wins the Lease in flux-bootstrap-system and bootstraps ' +
    'through Committed and Applied',
  async () => {
    await authorizeWhenPublished(ns, name);
    await waitCondition(ns, name, 'Committed', 'True');
    const cb = await waitCondition(ns, name, 'Applied', 'True');
    assert.equal(condition(cb, 'IdentityReady')!.status, 'True');

    const lease = await mgmt().get('coordination.k8s.io/v1', 'Lease', SYSTEM, 'flux-bootstrap-operator');
    assert.equal(
      lease?.spec?.holderIdentity,
      `${hostname()}-${operator.proc.pid}`,
      'the operator leads through its Role on Leases',
    );

    const identity = await mgmt().get('v1', 'Secret', ns, `${name}-flux-identity`);
    assert.ok(identity?.data?.identity, 'the identity Secret was created (secrets create)');
    assert.ok(identity.data.known_hosts, 'the host keys were pinned into it (secrets patch)');
    assert.deepEqual(
      cb.metadata.finalizers,
      ['fluxbootstrap.dev/finalizer'],
      'the finalizer was added (clusterbootstraps patch)',
    );

    const events = await mgmt().list('v1', 'Event', ns);
    const mine = events.filter(
      (e: any) => e.involvedObject?.name === name && e.source?.component === 'flux-bootstrap-operator',
    );
    assert.ok(
      mine.some((e: any) => e.reason === 'Pushed'),
      `Events were recorded (events create): ${mine.map((e: any) => e.reason).join(', ')}`,
    );

    const bad = forbiddenLines(operator).filter((l) => l.includes(ns) && !l.includes(unbound));
    assert.deepEqual(bad, [], 'no 403 for the bound namespace');
  },
);

test('with the same token, Secrets stay unreadable outside the namespaces bound by a RoleBinding, and never listable', async () => {
  const status = (p: Promise<unknown>) =>
    p.then(
      () => 200,
      (err) => (err instanceof KubeError ? err.code : err),
    );
  assert.equal(await status(asOperator.request('GET', `/api/v1/namespaces/${unbound}/secrets/not-yours`)), 403);
  assert.equal(await status(asOperator.request('GET', `/api/v1/namespaces/${SYSTEM}/secrets`)), 403);
  assert.equal(
    await status(asOperator.request('GET', `/api/v1/namespaces/${ns}/secrets`)),
    403,
    'no list, even where bound',
  );
  assert.equal(await status(asOperator.request('GET', '/api/v1/secrets')), 403, 'no cluster-wide list');
  assert.equal(
    await status(asOperator.request('GET', `/api/v1/namespaces/${ns}/secrets/git-push`)),
    200,
    'get where bound',
  );
  assert.equal(
    await status(asOperator.request('DELETE', `/api/v1/namespaces/${ns}/secrets/git-push`)),
    403,
    'no delete',
  );
  assert.equal(
    await status(asOperator.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`)),
    403,
    'Leases only in flux-bootstrap-system',
  );

  // The ClusterBootstrap in the namespace without the binding stops at its first Secret, and says why.
  const cb = await waitCondition(unbound, name, 'IdentityReady', 'False', 'Forbidden');
  assert.match(
    condition(cb, 'IdentityReady')!.message,
    /bind ClusterRole flux-bootstrap-operator-secrets in namespace .*tenant-rolebinding\.yaml.*forbidden/i,
  );
  assert.equal(cb.status?.identity, undefined);
  assert.equal(await mgmt().get('v1', 'Secret', unbound, `${name}-flux-identity`), undefined);

  // Every 403 the operator logged was about that namespace: none about the bound one.
  const forbidden = forbiddenLines(operator);
  assert.ok(forbidden.length > 0, 'the operator reports the missing binding');
  assert.deepEqual(
    forbidden.filter((l) => !l.includes(unbound)),
    [],
    'a 403 outside the unbound namespace',
  );
});

test('the tenant RoleBinding of deploy/examples is all a new namespace needs', async () => {
  await mgmt().apply(tenantBinding(unbound), { fieldManager: 'e2e' });
  const cb = await waitCondition(unbound, name, 'IdentityReady', 'True', undefined, 120_000);
  assert.match(cb.status!.identity!.publicKey, /^ssh-ed25519 /);
  assert.ok(await mgmt().get('v1', 'Secret', unbound, `${name}-flux-identity`));
});
