/**
 * Leader election and shutdown: two replicas share a Lease, only the leader reconciles; when the leader is
 * killed mid-bootstrap the other takes over and finishes without a duplicate commit; a leader stopped with
 * SIGTERM finishes its work, releases the Lease and exits 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyCB,
  authorizeWhenPublished,
  clone,
  git,
  installCRD,
  mgmt,
  namespace,
  pushSecret,
  repo,
  startOperator,
  waitCondition,
  waitFor,
  type RunningOperator,
} from './harness.ts';

let ns: string;
let a: RunningOperator;
let b: RunningOperator;

const leads = (op: RunningOperator) => op.logs.some((l) => l.includes('"became the leader"'));
const reconciled = (op: RunningOperator) => op.logs.some((l) => /"name":"(ha|graceful)"/.test(l));
const lease = () => mgmt().get<any>('coordination.k8s.io/v1', 'Lease', ns, 'flux-bootstrap-operator');

before(async () => {
  await installCRD();
  ns = await namespace('e2e-leader');
  await pushSecret(ns);
  a = await startOperator({ namespaces: [ns], leaderElect: true, leaseNamespace: ns });
  b = await startOperator({ namespaces: [ns], leaderElect: true, leaseNamespace: ns });
});

after(async () => {
  await a?.stop();
  await b?.stop();
});

test('of two replicas exactly one leads, and only the leader reconciles', async () => {
  await waitFor('a leader', async () => leads(a) || leads(b));
  await applyCB(ns, 'ha', {
    git: { url: await repo('ha'), secretRef: { name: 'git-push' } },
    target: { kubeconfigSecretRef: { name: 'absent' } },
  });
  await waitCondition(ns, 'ha', 'DeployKeyAuthorized', 'False');
  const [leader, standby] = leads(a) ? [a, b] : [b, a];
  assert.equal(leads(standby), false);
  assert.equal(reconciled(standby), false, 'the standby reconciled');
  assert.ok(reconciled(leader));
  assert.match((await lease()).spec.holderIdentity, new RegExp(`-${leader.proc.pid}$`));
});

test('when the leader is killed mid-bootstrap the other takes over and completes it with one commit', async () => {
  const [leader, standby] = leads(a) ? [a, b] : [b, a];
  const url = (await mgmt().get<any>('fluxbootstrap.dev/v1alpha1', 'ClusterBootstrap', ns, 'ha')).spec.git.url;
  await authorizeWhenPublished(ns, 'ha');
  await waitFor('the first commit', async () => git(['ls-remote', url, 'refs/heads/main']) !== '', 60_000);
  await leader.kill();
  const killedAt = Date.now();
  await waitFor('the standby to lead', async () => leads(standby), 40_000);
  const cb = await waitCondition(ns, 'ha', 'Applied', 'False', 'KubeconfigSecretMissing');
  const dir = clone(url);
  assert.equal(git(['rev-list', '--count', 'HEAD'], dir), '1', 'no duplicate commit');
  assert.equal(cb.status!.lastPushedCommit, git(['rev-parse', 'HEAD'], dir));
  process.stderr.write(
    `standby took over ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the leader was killed\n`,
  );
});

test('a leader stopped with SIGTERM exits 0 and releases the Lease at once', async () => {
  const alive = (op: RunningOperator) => op.proc.exitCode === null && op.proc.signalCode === null;
  const leader = [a, b].find((op) => alive(op) && leads(op))!;
  const code = await leader.stop();
  assert.equal(code, 0);
  assert.ok(leader.logs.some((l) => l.includes('"stopped"')));
  const l = await lease();
  assert.equal(l.spec.holderIdentity, '', 'the Lease was released');
});

test('a leader cut off from the API server stops leading before any other replica may take the Lease', async () => {
  const { createServer, connect } = await import('node:net');
  const { readFileSync } = await import('node:fs');
  const { LeaderElector } = await import('../../src/controller/leader.ts');
  const { KubeClient } = await import('../../src/kube/client.ts');
  const { createLogger } = await import('../../src/logger.ts');
  const { lab } = await import('./harness.ts');
  // A's calls go through a proxy that can be cut, as a network partition would.
  const upstream = new URL(lab().LAB_MGMT_SERVER);
  const sockets = new Set<import('node:net').Socket>();
  let cut = false;
  const proxy = createServer((client) => {
    if (cut) return client.destroy();
    const server = connect(Number(upstream.port), upstream.hostname);
    for (const s of [client, server]) sockets.add(s);
    client.pipe(server).pipe(client);
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const kubeconfig = readFileSync(lab().LAB_MGMT_KUBECONFIG, 'utf8').replace(
    lab().LAB_MGMT_SERVER,
    `https://127.0.0.1:${(proxy.address() as any).port}`,
  );
  const log = createLogger('silent');
  const opts = { namespace: ns, name: 'overlap', log };
  const timeline: string[] = [];
  const at = (what: string): void => void timeline.push(what);
  const A = new LeaderElector({
    ...opts,
    client: KubeClient.fromTrustedKubeconfig(kubeconfig, { timeoutMs: 2_000, maxAttempts: 1 }),
    identity: 'a',
  });
  const B = new LeaderElector({ ...opts, client: mgmt(), identity: 'b' });
  void A.run(
    async () => at('a leads'),
    async () => at('a stops leading'),
  );
  await waitFor('a to lead', async () => A.leading);
  void B.run(
    async () => at('b leads'),
    async () => at('b stops leading'),
  );
  await new Promise((r) => setTimeout(r, 3_000));
  cut = true;
  for (const s of sockets) s.destroy();
  await waitFor('b to take the Lease', async () => B.leading, 40_000);
  assert.deepEqual(timeline, ['a leads', 'a stops leading', 'b leads'], 'a stopped before b began: never two leaders');
  await B.release();
  await A.release().catch(() => undefined);
  proxy.close();
});
