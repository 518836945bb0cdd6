import { test } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, KIND, SET_KIND, type ClusterBootstrap } from '../../src/api/types.ts';
import { SetReconciler, SET_LABEL } from '../../src/controller/sets.ts';
import { FakeKube, silentLog } from './fakes.ts';

const NS = 'fleet';

/** fleet is a management cluster with one ClusterBootstrapSet and the Cluster API objects a test adds. */
function fleet(selector: 'clusters' | 'secrets' = 'clusters') {
  const mgmt = new FakeKube(undefined, 'https://mgmt.example');
  const set = mgmt.put({
    apiVersion: API_VERSION,
    kind: SET_KIND,
    metadata: { name: 'prod', namespace: NS, generation: 1 },
    spec: {
      ...(selector === 'clusters' ? { clusterSelector: { matchLabels: { flux: 'yes' } } } : {}),
      ...(selector === 'secrets' ? { kubeconfigSecretSelector: { matchLabels: { flux: 'yes' } } } : {}),
      template: {
        spec: {
          git: {
            url: 'ssh://git@git.example/org/fleet.git',
            secretRef: { name: 'push' },
            path: 'clusters/${CLUSTER_NAME}',
          },
        },
      },
    },
  });
  const reconciler = new SetReconciler({
    mgmt,
    log: silentLog,
    clusterBootstraps: () => mgmt.of(KIND) as ClusterBootstrap[],
  });
  return {
    mgmt,
    set,
    reconcile: () => reconciler.reconcile(NS, 'prod'),
    status: () => mgmt.read(SET_KIND, NS, 'prod').status,
    cbs: () => (mgmt.of(KIND) as ClusterBootstrap[]).map((cb) => cb.metadata.name).sort(),
    /** byHand makes a ClusterBootstrap for a cluster as a person (or another set) would. */
    byHand(name: string, url: string) {
      mgmt.put({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: NS }, spec: { git: { url } } });
    },
    cluster(name: string, { initialized = true, kubeconfig = true, labels = { flux: 'yes' } } = {}) {
      mgmt.put({
        apiVersion: 'cluster.x-k8s.io/v1beta2',
        kind: 'Cluster',
        metadata: { name, namespace: NS, labels },
        status: { initialization: { controlPlaneInitialized: initialized } },
      });
      if (kubeconfig)
        mgmt.put({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: `${name}-kubeconfig`, namespace: NS, labels },
          stringData: { value: 'x' },
        });
    },
  };
}

test("a set keeps one ClusterBootstrap per selected cluster, made from its template with the cluster's name", async () => {
  const f = fleet();
  f.cluster('a');
  f.cluster('b');
  f.cluster('other', { labels: { flux: 'no' } });
  assert.deepEqual(await f.reconcile(), { kind: 'resync', afterMs: 15_000 });
  assert.deepEqual(f.cbs(), ['a', 'b']);
  const a = f.mgmt.read(KIND, NS, 'a');
  assert.equal(a.spec.git.path, 'clusters/a');
  assert.equal(a.spec.target.kubeconfigSecretRef.name, 'a-kubeconfig');
  assert.equal(a.metadata.labels[SET_LABEL], 'prod');
  assert.equal(a.metadata.ownerReferences[0].uid, f.set.metadata.uid);
  assert.equal(f.status().selected, 2);
});

const waiting: [string, { initialized?: boolean; kubeconfig?: boolean }][] = [
  ['whose control plane is not initialized yet', { initialized: false }],
  ['whose kubeconfig Secret does not exist yet', { kubeconfig: false }],
];
for (const [given, state] of waiting) {
  test(`a cluster ${given} is waited for, not bootstrapped, and named in status`, async () => {
    const f = fleet();
    f.cluster('early', state);
    await f.reconcile();
    assert.deepEqual(f.cbs(), []);
    assert.deepEqual(f.status().waiting, ['early']);
    assert.match(f.status().message, /waiting for 1 \(control plane or kubeconfig Secret\)/);
    f.cluster('early');
    await f.reconcile();
    assert.deepEqual(f.cbs(), ['early']);
  });
}

test('a cluster bootstrapped by hand (or by another set) is left to it and reported as a conflict', async () => {
  const f = fleet();
  f.cluster('taken');
  f.byHand('taken', 'ssh://h/x.git');
  await f.reconcile();
  assert.equal(f.mgmt.read(KIND, NS, 'taken').spec.git.url, 'ssh://h/x.git', 'not overwritten');
  assert.deepEqual(f.status().conflicts, ['taken']);
  assert.equal(f.status().conditions.find((c: any) => c.type === 'Ready').reason, 'PathConflict');
});

test("a cluster that stops matching has its ClusterBootstrap deleted, which carries out that one's deletion policy", async () => {
  const f = fleet();
  f.cluster('a');
  f.cluster('b');
  await f.reconcile();
  f.cluster('b', { labels: { flux: 'no' } });
  await f.reconcile();
  assert.deepEqual(f.cbs(), ['a']);
  assert.ok(f.mgmt.calls.list.some((c) => c.what.includes('delete ClusterBootstrap fleet/b')));
});

test("Ready counts the set's ClusterBootstraps that are Ready, and names those that are not with their reason", async () => {
  const f = fleet();
  f.cluster('a');
  f.cluster('b');
  await f.reconcile();
  const a = f.mgmt.read(KIND, NS, 'a');
  f.mgmt.put({ ...a, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'Succeeded', message: 'ok' }] } });
  const b = f.mgmt.read(KIND, NS, 'b');
  f.mgmt.put({
    ...b,
    status: { conditions: [{ type: 'Ready', status: 'False', reason: 'FluxNotReady', message: 'waiting' }] },
  });
  await f.reconcile();
  assert.equal(f.status().ready, 1);
  assert.deepEqual(f.status().notReady, [{ name: 'b', reason: 'FluxNotReady', message: 'waiting' }]);
  const b2 = f.mgmt.read(KIND, NS, 'b');
  f.mgmt.put({
    ...b2,
    status: { conditions: [{ type: 'Ready', status: 'True', reason: 'Succeeded', message: 'ok' }] },
  });
  await f.reconcile();
  assert.match(f.status().message, /all 2 selected clusters are bootstrapped and Ready/);
});

test('kubeconfig Secrets can be selected instead of Cluster API Clusters', async () => {
  const f = fleet('secrets');
  f.cluster('edge-1');
  await f.reconcile();
  assert.deepEqual(f.cbs(), ['edge-1']);
});

test('a template that does not validate stalls the set and makes no ClusterBootstrap', async () => {
  const f = fleet();
  const set = f.mgmt.read(SET_KIND, NS, 'prod');
  f.mgmt.put({
    ...set,
    spec: { ...set.spec, template: { spec: { git: { url: 'ftp://nope', secretRef: { name: 'push' } } } } },
  });
  f.cluster('a');
  const outcome = await f.reconcile();
  assert.equal(outcome.kind, 'stalled');
  assert.deepEqual(f.cbs(), []);
  assert.equal(f.status().conditions.find((c: any) => c.type === 'Stalled')?.status, 'True');
});

test("a ClusterBootstrap the informer's cache does not show yet is looked up before applying: someone else's is kept", async () => {
  const f = fleet();
  f.cluster('fresh');
  f.byHand('fresh', 'ssh://h/y.git');
  const reconciler = new SetReconciler({ mgmt: f.mgmt, log: silentLog, clusterBootstraps: () => [] });
  await reconciler.reconcile(NS, 'prod');
  assert.equal(f.mgmt.read(KIND, NS, 'fresh').spec.git.url, 'ssh://h/y.git');
  assert.deepEqual(f.status().conflicts, ['fresh']);
});

test(
  'with rollout.maxUnavailable a new Flux version reaches the clusters a few at a time, and stops at one that ' +
    'stalls on it',
  async () => {
    const f = fleet();
    for (const c of ['a', 'b', 'c', 'd']) f.cluster(c);
    const set = f.mgmt.read(SET_KIND, NS, 'prod');
    const put = (version: string) =>
      f.mgmt.put({
        ...set,
        metadata: { ...set.metadata, generation: (f.mgmt.read(SET_KIND, NS, 'prod').metadata.generation ?? 1) + 1 },
        spec: {
          ...set.spec,
          rollout: { maxUnavailable: 2 },
          template: { spec: { ...set.spec.template.spec, flux: { version } } },
        },
      });
    const version = (name: string) => f.mgmt.read(KIND, NS, name).spec.flux.version;
    /** settle plays each ClusterBootstrap: Ready with the version it was given, or Stalled when told. */
    const settle = (stalled: string[] = []) => {
      for (const cb of f.mgmt.of(KIND) as ClusterBootstrap[]) {
        const bad = stalled.includes(cb.metadata.name);
        f.mgmt.put({
          ...cb,
          status: {
            observedGeneration: cb.metadata.generation,
            fluxVersion: bad ? undefined : cb.spec.flux?.version,
            conditions: [
              { type: 'Ready', status: bad ? 'False' : 'True', reason: bad ? 'ApplyFailed' : 'Succeeded', message: '' },
              ...(bad ? [{ type: 'Stalled', status: 'True', reason: 'ApplyFailed', message: '' }] : []),
            ],
          },
        } as any);
      }
    };
    put('v2.9.3');
    await f.reconcile();
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map(version),
      ['v2.9.3', 'v2.9.3', 'v2.9.3', 'v2.9.3'],
      'new clusters at once',
    );
    settle();
    put('2.9.x'); // a range: resolved once by the set, handed out in batches
    await f.reconcile();
    assert.deepEqual(['a', 'b', 'c', 'd'].map(version), ['v2.9.5', 'v2.9.5', 'v2.9.3', 'v2.9.3']);
    assert.deepEqual(f.status().rollout, { version: 'v2.9.5', updated: 2, pending: 4, blockedBy: ['a', 'b'] });
    assert.equal(f.status().conditions.find((c: any) => c.type === 'Ready').status, 'False');
    await f.reconcile();
    assert.deepEqual(['c', 'd'].map(version), ['v2.9.3', 'v2.9.3'], 'no more while two are not Ready with it');
    settle(['b']); // a Ready; b stalls on the new version
    await f.reconcile();
    assert.deepEqual(['c', 'd'].map(version), ['v2.9.3', 'v2.9.3'], 'a stalled cluster stops the rollout');
    assert.deepEqual(f.status().rollout.blockedBy, ['b']);
    assert.match(f.status().message, /rolling out Flux v2\.9\.5: 2 updated, 3 to go, held up by b/);
    settle(); // b fixed
    await f.reconcile();
    assert.deepEqual(['c', 'd'].map(version), ['v2.9.5', 'v2.9.5']);
    settle();
    await f.reconcile();
    assert.deepEqual(f.status().rollout, { version: 'v2.9.5', updated: 4, pending: 0 });
    assert.equal(f.status().conditions.find((c: any) => c.type === 'Ready').status, 'True');
  },
);

test("a set's clusters in pull-request mode share one head branch, so the changes ready together share one PR", async () => {
  const f = fleet();
  f.cluster('a');
  f.cluster('b');
  const set = f.mgmt.read(SET_KIND, NS, 'prod');
  const provider = { type: 'gitea', url: 'https://git.example/api/v1', secretRef: { name: 'api' } };
  const git = { ...set.spec.template.spec.git, provider, pullRequest: { enabled: true } };
  f.mgmt.put({ ...set, spec: { ...set.spec, template: { spec: { ...set.spec.template.spec, git } } } });
  await f.reconcile();
  for (const name of ['a', 'b']) {
    const pr = f.mgmt.read(KIND, NS, name).spec.git.pullRequest;
    assert.equal(pr.branch, 'flux-bootstrap/fleet-prod');
    assert.match(pr.title, /clusters of ClusterBootstrapSet prod/);
  }
});
