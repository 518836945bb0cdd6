/**
 * Metrics in the ecosystem's names, read with curl as Prometheus would: the controller-runtime reconcile
 * series count what happened (a success, a terminal configuration error, a retry, a requeue after a wait),
 * and a reconcile of N ClusterBootstraps costs O(N) calls to the management API server — the informer's
 * cache answers the path-conflict check, so no reconcile lists them all.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePorts } from '../lab/lab.ts';
import { API_VERSION, KIND, RECONCILE_REQUESTED_AT } from '../../src/api/types.ts';
import { OPTIONS } from '../../src/config.ts';
import { applyCB, getCB, mgmt, operatorSuite, repo, waitCondition, waitFor } from './harness.ts';

const suite = operatorSuite('e2e-metrics');
let closedPort: number;
before(async () => {
  [closedPort] = await freePorts(1);
});
const gitSpec = (url: string) => ({ url, secretRef: { name: 'git-push' } });

async function scrape(): Promise<string> {
  return (await fetch(suite.operator.metricsUrl)).text();
}

/** value reads one sample of a series, 0 when it is absent. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** sum adds every sample of a metric whose labels include all of `labels`. */
function sum(text: string, metric: string, labels: string[] = []): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${metric}{`) && labels.every((x) => l.includes(x)))
    .reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
}

test('a success, a terminal error, a retry and a wait each count under their controller-runtime result', async () => {
  await applyCB(suite.ns, 'suspended', { git: gitSpec(await repo('metrics')), suspend: true });
  await applyCB(suite.ns, 'invalid', { git: gitSpec('ssh://git@example.invalid') });
  await applyCB(suite.ns, 'unreachable', { git: gitSpec(`ssh://git@127.0.0.1:${closedPort}/x.git`) });
  await applyCB(suite.ns, 'waiting', { git: gitSpec(await repo('metrics')) });
  await waitCondition(suite.ns, 'suspended', 'Reconciling', 'False', 'Suspended');
  await waitCondition(suite.ns, 'invalid', 'Stalled', 'True', 'InvalidGitURL');
  await waitCondition(suite.ns, 'unreachable', 'HostKeyTrusted', 'False', 'GitHostUnreachable');
  await waitCondition(suite.ns, 'waiting', 'DeployKeyAuthorized', 'False', 'DeployKeyNotAuthorized');
  const m = await waitFor('a retry to be counted', async () => {
    const text = await scrape();
    return value(text, 'workqueue_retries_total{name="clusterbootstrap"}') >= 1 ? text : false;
  });
  const c = 'controller="clusterbootstrap"';
  assert.ok(
    value(m, `controller_runtime_reconcile_total{${c},result="success"}`) >= 1,
    'the suspended one is a success',
  );
  assert.ok(
    value(m, `controller_runtime_reconcile_total{${c},result="requeue_after"}`) >= 1,
    'the one waiting for its deploy key is requeued after a delay',
  );
  assert.ok(
    value(m, `controller_runtime_reconcile_total{${c},result="error"}`) >= 2,
    'the invalid and the unreachable ones are errors',
  );
  assert.ok(
    value(m, `controller_runtime_terminal_reconcile_errors_total{${c}}`) >= 1,
    'the invalid one is a terminal error',
  );
  assert.ok(value(m, `controller_runtime_reconcile_errors_total{${c}}`) >= 2);
  assert.equal(value(m, `controller_runtime_max_concurrent_reconciles{${c}}`), Number(OPTIONS.concurrency.default));
  assert.equal(value(m, 'leader_election_master_status{name="clusterbootstrap"}'), 1);
  for (const series of [
    `controller_runtime_reconcile_time_seconds_count{${c}}`,
    `controller_runtime_active_workers{${c}}`,
    'workqueue_depth{name="clusterbootstrap"}',
    'workqueue_adds_total{name="clusterbootstrap"}',
    'workqueue_queue_duration_seconds_count{name="clusterbootstrap"}',
    'workqueue_work_duration_seconds_count{name="clusterbootstrap"}',
    'workqueue_unfinished_work_seconds{name="clusterbootstrap"}',
    'workqueue_longest_running_processor_seconds{name="clusterbootstrap"}',
    'fluxbootstrap_phase_duration_seconds_count{phase="IdentityReady"}',
  ])
    assert.match(m, new RegExp(`^${series.replace(/[{}"()]/g, '\\$&')} \\d`, 'm'), `${series} is exported`);
  assert.ok(
    sum(m, 'rest_client_requests_total', ['code="200"', 'method="GET"']) > 0,
    'REST calls are counted by code, method and host',
  );
});

test('reconciling N ClusterBootstraps again costs O(N) calls to the management API server, not O(N²)', async () => {
  const N = 12;
  for (let i = 0; i < N; i++) await applyCB(suite.ns, `fleet-${i}`, { git: gitSpec('ssh://git@example.invalid') });
  for (let i = 0; i < N; i++) await waitCondition(suite.ns, `fleet-${i}`, 'Stalled', 'True', 'InvalidGitURL');
  const gets = async () => sum(await scrape(), 'rest_client_requests_total', ['method="GET"']);
  const before = await gets();
  const at = String(Date.now());
  for (let i = 0; i < N; i++)
    await mgmt().mergePatch(API_VERSION, KIND, suite.ns, `fleet-${i}`, {
      metadata: { annotations: { [RECONCILE_REQUESTED_AT]: at } },
    });
  for (let i = 0; i < N; i++)
    await waitFor(
      `fleet-${i} to handle the request`,
      async () => (await getCB(suite.ns, `fleet-${i}`)).status?.lastHandledReconcileAt === at,
    );
  const calls = (await gets()) - before;
  assert.ok(calls <= N + 3, `${N} reconciles made ${calls} GET calls: one read each, no list`);
});
