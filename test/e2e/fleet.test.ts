/**
 * Fleet: one ClusterBootstrapSet selecting Cluster API Clusters (the real CRD, from Cluster API's Go module)
 * bootstraps each selected cluster — real kube-apiservers of the lab — from one repository, with no person
 * acting: deploy keys are registered through Gitea's API, and Flux runs for each target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { API_VERSION, KIND, SET_KIND } from '../../src/api/types.ts';
import { createGiteaRepo, fluxStart, giteaRequest, labUp } from '../lab/lab.ts';
import { E2E_LAB_DIR, getCB, lab, mgmt, operatorSuite, secret, waitCondition, waitFor } from './harness.ts';

const CLUSTERS = ['c0', 'c1', 'c2', 'c3'];
const CAPI = 'cluster.x-k8s.io/v1beta2';
let repoName: string;
let url: string;

const suite = operatorSuite('e2e-fleet', async (ns) => {
  const env = await labUp({ dir: E2E_LAB_DIR, targets: CLUSTERS.length, capi: true, gitea: true });
  const kubeconfigs = env.LAB_TARGET_KUBECONFIGS!.split(' ');
  repoName = `fleet-${Math.random().toString(36).slice(2, 7)}`;
  url = await createGiteaRepo(repoName, { dir: E2E_LAB_DIR });
  await secret(ns, 'gitea-token', { token: lab().LAB_GITEA_TOKEN! });
  for (const [i, c] of CLUSTERS.entries()) {
    await secret(ns, `${c}-kubeconfig`, { value: readFileSync(kubeconfigs[i], 'utf8') });
    const spec = {
      controlPlaneRef: { apiGroup: 'controlplane.cluster.x-k8s.io', kind: 'KubeadmControlPlane', name: c },
    };
    await mgmt().create({
      apiVersion: CAPI,
      kind: 'Cluster',
      metadata: { name: c, namespace: ns, labels: i < 3 ? { flux: 'enabled' } : {} },
      spec,
    });
    await mgmt().mergePatch(
      CAPI,
      'Cluster',
      ns,
      c,
      { status: { initialization: { controlPlaneInitialized: true } } },
      'status',
    );
  }
});

const set = (version: string) => ({
  apiVersion: API_VERSION,
  kind: SET_KIND,
  metadata: { name: 'fleet', namespace: suite.ns },
  spec: {
    clusterSelector: { matchLabels: { flux: 'enabled' } },
    template: {
      spec: {
        git: {
          url,
          secretRef: { name: 'git-push' },
          provider: { type: 'gitea', url: lab().LAB_GITEA_API, secretRef: { name: 'gitea-token' } },
        },
        flux: { version },
      },
    },
  },
});

const commits = async (): Promise<number> => {
  const r = await giteaRequest(
    'GET',
    `/repos/${lab().LAB_GITEA_OWNER}/${repoName}/commits?sha=main&limit=50&stat=false`,
    undefined,
    { dir: E2E_LAB_DIR },
  );
  return r.status === 200 ? r.json.length : 0;
};

const readyAt = (name: string, version: string) =>
  waitFor(
    `${name} Ready with Flux ${version}`,
    async () => {
      const cb = await getCB(suite.ns, name).catch(() => undefined);
      const ready = cb?.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.status === 'True' && cb?.status?.fluxVersion === version ? cb : false;
    },
    240_000,
  );

test(
  'a set selecting 3 Cluster API clusters bootstraps all 3 real targets to Ready from one repository, with no ' +
    'person acting',
  async () => {
    await mgmt().apply(set('v2.9.3') as any, { fieldManager: 'e2e' });
    for (const c of CLUSTERS.slice(0, 3)) await waitCondition(suite.ns, c, 'Applied', 'True', undefined, 180_000);
    await fluxStart({ dir: E2E_LAB_DIR, targets: [1, 2, 3] });
    for (const c of CLUSTERS.slice(0, 3)) {
      const cb = await readyAt(c, 'v2.9.3');
      assert.equal(cb.metadata.labels?.['cluster.x-k8s.io/cluster-name'], c);
      assert.equal(cb.spec.git.path, undefined, 'the path defaults to clusters/<cluster>');
    }
    const s = await waitFor('the set to count 3 Ready', async () => {
      const x = await mgmt().get<any>(API_VERSION, SET_KIND, suite.ns, 'fleet');
      return x?.status?.ready === 3 ? x : false;
    });
    assert.equal(s.status.selected, 3);
    assert.equal(s.status.conditions.find((c: any) => c.type === 'Ready').status, 'True');
    assert.equal(
      await mgmt().get(API_VERSION, KIND, suite.ns, 'c3'),
      undefined,
      'the unlabelled cluster is left alone',
    );
  },
);

test('a 4th cluster labelled later is bootstrapped with no action', async () => {
  await mgmt().mergePatch(CAPI, 'Cluster', suite.ns, 'c3', { metadata: { labels: { flux: 'enabled' } } });
  await waitCondition(suite.ns, 'c3', 'Applied', 'True', undefined, 120_000);
  await fluxStart({ dir: E2E_LAB_DIR, targets: [1, 2, 3, 4] });
  await readyAt('c3', 'v2.9.3');
});

test('a template change rolls out to every cluster, the changes made together sharing commits', async () => {
  const before = await commits();
  const s = set('v2.9.4');
  await mgmt().apply(s as any, { fieldManager: 'e2e' });
  for (const c of CLUSTERS) await readyAt(c, 'v2.9.4');
  const made = (await commits()) - before;
  process.stderr.write(`[fleet] a version change of ${CLUSTERS.length} clusters made ${made} commit(s)\n`);
  assert.ok(
    made >= 1 && made < CLUSTERS.length,
    `${made} commits for ${CLUSTERS.length} clusters: changes ready together share one`,
  );
});

test(
  'a cluster that stops matching has its ClusterBootstrap removed by its deletion policy (Orphan: Flux keeps ' +
    'running there)',
  async () => {
    await mgmt().mergePatch(CAPI, 'Cluster', suite.ns, 'c1', { metadata: { labels: { flux: null } } });
    await waitFor(
      'c1 to lose its ClusterBootstrap',
      async () => !(await mgmt().get(API_VERSION, KIND, suite.ns, 'c1')),
      60_000,
    );
    const kc = lab().LAB_TARGET_KUBECONFIGS!.split(' ')[1];
    const { KubeClient } = await import('../../src/kube/client.ts');
    const c1 = KubeClient.fromTrustedKubeconfig(readFileSync(kc, 'utf8'));
    assert.ok(await c1.get('apps/v1', 'Deployment', 'flux-system', 'source-controller'), 'Flux still runs on c1');
    const s = await waitFor('the set to count 3', async () => {
      const x = await mgmt().get<any>(API_VERSION, SET_KIND, suite.ns, 'fleet');
      return x?.status?.selected === 3 ? x : false;
    });
    assert.equal(s.status.ready, 3);
  },
);
