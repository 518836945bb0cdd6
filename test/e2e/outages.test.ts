/**
 * Outages: the management API server, the git server, the target's API server and etcd each stop answering
 * (SIGSTOP, then SIGCONT) while the operator runs. The operator never exits, says what is wrong, and
 * recovers unaided: a ClusterBootstrap created during an outage reaches its next condition once the part
 * is back. Each recovery time is printed as a test diagnostic.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { labPids } from '../lab/lab.ts';
import {
  applyCB,
  authorizeWhenPublished,
  E2E_LAB_DIR,
  operatorSuite,
  repo,
  sleep,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
} from './harness.ts';

const OUTAGE_MS = Number(process.env.E2E_OUTAGE_MS ?? 90_000);
const suite = operatorSuite('e2e-outages', async (ns) => {
  await targetKubeconfigSecret(ns, 'lab');
});
const spec = async () => ({
  git: { url: await repo('outage'), secretRef: { name: 'git-push' } },
  target: { kubeconfigSecretRef: { name: 'lab-kubeconfig' } },
});

/** freeze stops a lab process (SIGSTOP) for a while, runs `during` meanwhile, then lets it go on (SIGCONT). */
async function freeze(name: string, ms: number, during: () => Promise<void> = async () => undefined): Promise<void> {
  const pid = labPids(E2E_LAB_DIR)[name];
  assert.ok(pid, `the lab runs ${name}`);
  process.kill(pid, 'SIGSTOP');
  const thawAt = Date.now() + ms;
  try {
    await during();
    await sleep(Math.max(0, thawAt - Date.now()));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** recovered waits for a condition after an outage and reports how long it took. */
async function recovered(t: TestContext, what: string, wait: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  await wait();
  const s = (Date.now() - started) / 1000;
  t.diagnostic(`${what}: recovered ${s.toFixed(1)} s after the outage ended`);
  return s;
}

const ready = async () => (await fetch(`${suite.operator.healthUrl}/readyz`).catch(() => undefined))?.ok ?? false;

test(
  'with the git server stopped, a new ClusterBootstrap says the host is unreachable, and goes on by itself once ' +
    'it is back',
  async (t) => {
    await freeze('sshd', OUTAGE_MS, async () => {
      await applyCB(suite.ns, 'during-git', await spec());
      await waitCondition(suite.ns, 'during-git', 'HostKeyTrusted', 'False', 'GitHostUnreachable', OUTAGE_MS - 5_000);
    });
    const s = await recovered(t, 'git server', () =>
      waitCondition(suite.ns, 'during-git', 'DeployKeyAuthorized', 'False', 'DeployKeyNotAuthorized', 120_000),
    );
    assert.ok(s < 90, 'within one backoff period (the backoff reached by then is at most about a minute)');
    assert.equal(suite.operator.proc.exitCode, null, 'the operator never exited');
  },
);

test("with the target's API server stopped, a new ClusterBootstrap is TargetUnreachable, and applies once it is back", async (t) => {
  await applyCB(suite.ns, 'during-target', await spec());
  await authorizeWhenPublished(suite.ns, 'during-target');
  await waitCondition(suite.ns, 'during-target', 'Committed', 'True');
  await freeze('target-apiserver', OUTAGE_MS, async () => {
    await waitCondition(suite.ns, 'during-target', 'Applied', 'False', 'TargetUnreachable', OUTAGE_MS - 5_000);
  });
  const s = await recovered(t, 'target API server', () =>
    waitCondition(suite.ns, 'during-target', 'Applied', 'True', undefined, 150_000),
  );
  assert.ok(s < 120);
  assert.equal(suite.operator.proc.exitCode, null);
});

test(
  'with the management API server stopped, the operator keeps running and is not ready; once it is back, a new ' +
    'ClusterBootstrap is reconciled',
  async (t) => {
    assert.ok(await ready(), 'ready before the outage');
    await freeze('mgmt-apiserver', OUTAGE_MS, async () => {
      await waitFor('/readyz to fail while the API server does not answer', async () => !(await ready()), 30_000);
    });
    await recovered(t, 'management API server (/readyz)', () => waitFor('/readyz to pass again', ready, 60_000));
    await applyCB(suite.ns, 'after-mgmt', await spec());
    await recovered(t, 'management API server (a new ClusterBootstrap)', () =>
      waitCondition(suite.ns, 'after-mgmt', 'IdentityReady', 'True', undefined, 60_000),
    );
    assert.equal(suite.operator.proc.exitCode, null);
    const warnings = suite.operator.logs.filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'));
    assert.ok(warnings.length < 60, `the outage is said at a sane rate (${warnings.length} warnings)`);
  },
);

test('with etcd stopped for a moment, the operator keeps running and reconciles what comes next', async (t) => {
  await freeze('etcd', 15_000);
  await waitFor('the API server to answer again', ready, 60_000);
  await applyCB(suite.ns, 'after-etcd', await spec());
  await recovered(t, 'etcd', () => waitCondition(suite.ns, 'after-etcd', 'IdentityReady', 'True', undefined, 60_000));
  assert.equal(suite.operator.proc.exitCode, null);
});
