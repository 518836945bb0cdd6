import { test } from 'node:test';
import assert from 'node:assert/strict';
import { USABLE_BY } from '../../src/api/types.ts';
import { readPushCredentials } from '../../src/phases/credentials.ts';
import { connectTarget } from '../../src/phases/target.ts';
import { PhaseError } from '../../src/api/errors.ts';
import { contextOf, NS, world, type World } from './fakes.ts';

/** refusal runs a phase and returns its PhaseError's reason and message, or 'ok'. */
async function refusal(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (err) {
    if (!(err instanceof PhaseError)) throw err;
    return `${err.reason}: ${err.message}`;
  }
}

const relabel = (w: World, name: string, change: Record<string, any>) => {
  const s = w.mgmt.read('Secret', NS, name);
  w.mgmt.put({ ...s, ...change, metadata: { ...s.metadata, ...change.metadata } });
};

test('a ServiceAccount token Secret named as push credentials or kubeconfig is never read out, whatever keys it has', async () => {
  const w = await world();
  relabel(w, 'push', { type: 'kubernetes.io/service-account-token' });
  assert.match(
    await refusal(() => readPushCredentials(contextOf(w))),
    /^GitCredentialsInvalid: .*is a ServiceAccount token/,
  );
  relabel(w, 'prod-kubeconfig', { type: 'kubernetes.io/service-account-token' });
  assert.match(await refusal(() => connectTarget(contextOf(w))), /^KubeconfigInvalid: .*is a ServiceAccount token/);
});

test('with --require-usable-label, only Secrets the platform team labelled for ClusterBootstraps are used', async () => {
  const w = await world();
  const ctx = () => ({ ...contextOf(w), opts: { ...contextOf(w).opts, requireUsableLabel: true } });
  assert.match(
    await refusal(() => readPushCredentials(ctx())),
    /^GitCredentialsInvalid: .*is not labelled fluxbootstrap.dev\/usable-by/,
  );
  relabel(w, 'push', { metadata: { labels: { [USABLE_BY]: 'another' } } });
  assert.match(await refusal(() => readPushCredentials(ctx())), /not labelled/);
  relabel(w, 'push', { metadata: { labels: { [USABLE_BY]: 'prod' } } });
  assert.equal(await refusal(() => readPushCredentials(ctx())), 'ok', "labelled with this ClusterBootstrap's name");
  relabel(w, 'push', { metadata: { labels: { [USABLE_BY]: 'all' } } });
  assert.equal(await refusal(() => readPushCredentials(ctx())), 'ok', 'labelled for all');
  assert.equal(
    await refusal(() => readPushCredentials(contextOf(w))),
    'ok',
    'without the flag, any Secret of the namespace',
  );
});

test('a missing Secret says what to create, in the field that names it', async () => {
  const w = await world();
  w.mgmt.objects.delete(`Secret|${NS}|push`);
  assert.match(
    await refusal(() => readPushCredentials(contextOf(w))),
    /^GitCredentialsMissing: Secret team\/push \(spec.git.secretRef\) does not exist: create it with the git credentials$/,
  );
});

test('a kubeconfig that can never be used is refused before anything is committed: no folder for an unreachable cluster', async () => {
  const w = await world({}, { provider: true });
  relabel(w, 'prod-kubeconfig', { stringData: { value: 'exec' } });
  await w.reconcile();
  const applied = w.cb().status?.conditions?.find((c: any) => c.type === 'Applied');
  assert.equal(applied?.reason, 'KubeconfigInvalid');
  assert.match(applied!.message, /users\[0\]\.user\.exec is not allowed/);
  assert.equal(w.git.commits, 0);
  relabel(w, 'prod-kubeconfig', { stringData: { value: 'good' } });
  await w.reconcile();
  assert.equal(w.git.commits, 1, 'fixed, it commits');
});

test('a kubeconfig Secret not written yet (Cluster API) does not hold up the commit', async () => {
  const w = await world({}, { provider: true });
  w.mgmt.objects.delete(`Secret|${NS}|prod-kubeconfig`);
  await w.reconcile();
  assert.equal(w.git.commits, 1);
  assert.equal(w.cb().status?.conditions?.find((c: any) => c.type === 'Applied')?.reason, 'KubeconfigSecretMissing');
});
