/**
 * `npm run bench`: figures, not assertions. Measures the pure rendering, then N ClusterBootstraps on one
 * repository with a real operator on the lab (BENCH_N, default 20): time until every one has committed, the
 * commits made, reconciles counted by the operator's metrics, and the operator's peak memory.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { renderComponents, shippedManifests, DEFAULT_COMPONENTS } from '../src/manifests/components.ts';
import { validate } from '../src/api/validate.ts';
import { labDown, labUp } from './lab/lab.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The benchmark runs its own lab, beside any test or demo lab.
process.env.E2E_LAB_DIR ??= join(tmpdir(), 'fbo-bench-lab');
const { applyCB, authorize, clone, getCB, git, installCRD, namespace, pushSecret, repo, startOperator, waitFor, E2E_LAB_DIR } = await import('./e2e/harness.ts');

const N = Number(process.env.BENCH_N ?? 20);
const fmt = (n: number, unit: string) => `${n.toFixed(n < 10 ? 2 : 0)} ${unit}`;
const row = (what: string, value: string) => console.log(`${what.padEnd(52)} ${value}`);

function timeIt(runs: number, fn: () => void): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) fn();
  return (performance.now() - t0) / runs;
}

console.log('# pure functions');
const source = shippedManifests('v2.9.4');
const opts = { version: 'v2.9.4', components: DEFAULT_COMPONENTS, namespace: 'flux-system', registry: 'ghcr.io/fluxcd', imagePullSecret: '', networkPolicy: true, watchAllNamespaces: true, clusterDomain: 'cluster.local', tolerationKeys: [], logLevel: 'info' };
row('render gotk-components.yaml (defaults)', fmt(timeIt(50, () => renderComponents(source, opts)), 'ms'));
row('render gotk-components.yaml (every option set)', fmt(timeIt(50, () => renderComponents(source, { ...opts, namespace: 'gitops', registry: 'r.example/flux', tolerationKeys: ['a'], logLevel: 'debug' })), 'ms'));
const cb = { apiVersion: 'fluxbootstrap.dev/v1alpha1', kind: 'ClusterBootstrap', metadata: { name: 'a', namespace: 'b', uid: 'u' }, spec: { git: { url: 'git@github.com:org/fleet.git', secretRef: { name: 's' } } } };
row('validate a spec', fmt(timeIt(10_000, () => validate(cb as any)) * 1000, 'µs'));

console.log(`\n# ${N} ClusterBootstraps on one repository, one operator (concurrency 4), on the lab`);
const labStarted = performance.now();
await labUp({ dir: E2E_LAB_DIR });
row('lab up', fmt((performance.now() - labStarted) / 1000, 's'));
try {
  await installCRD();
  const ns = await namespace('bench');
  await pushSecret(ns);
  const url = await repo('bench');
  const operator = await startOperator({ namespaces: [ns], args: ['--log-level=info'] });
  const rssPeak = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${operator.proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const names = Array.from({ length: N }, (_, i) => `cluster-${String(i).padStart(3, '0')}`);
  const t0 = performance.now();
  await Promise.all(names.map((name) => applyCB(ns, name, { git: { url, secretRef: { name: 'git-push' } }, target: { kubeconfigSecretRef: { name: 'absent' } } })));
  const keysPublished = await Promise.all(
    names.map(async (name) => {
      const c = await waitFor(`${name} public key`, async () => ((await getCB(ns, name)).status?.identity ? getCB(ns, name) : false), 300_000);
      authorize(c.status!.identity!.publicKey);
      return performance.now();
    }),
  );
  row('all key pairs generated and published', fmt((Math.max(...keysPublished) - t0) / 1000, 's'));
  await Promise.all(
    names.map((name) =>
      waitFor(`${name} committed`, async () => (await getCB(ns, name)).status?.conditions?.some((c) => c.type === 'Committed' && c.status === 'True'), 600_000),
    ),
  );
  const elapsed = (performance.now() - t0) / 1000;
  row('all committed (keys registered as they appear)', fmt(elapsed, 's'));
  row('commits on the branch', git(['rev-list', '--count', 'HEAD'], clone(url)));
  const metrics = await (await fetch(operator.metricsUrl)).text();
  for (const m of metrics.matchAll(/^fluxbootstrap_reconcile_total\{result="(\w+)"\} (\d+)/gm)) row(`reconciles: ${m[1]}`, m[2]);
  const phases = [...metrics.matchAll(/^fluxbootstrap_phase_duration_seconds_sum\{phase="(\w+)"\} ([\d.e-]+)\nfluxbootstrap_phase_duration_seconds_count\{phase="\w+"\} (\d+)/gm)];
  for (const [, phase, sum, count] of phases) row(`mean ${phase} phase`, fmt((Number(sum) / Number(count)) * 1000, 'ms'));
  row('operator peak RSS', fmt(rssPeak(), 'MiB'));
  await operator.stop();
} finally {
  if (!process.env.E2E_KEEP_LAB) await labDown({ dir: E2E_LAB_DIR });
}
