import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PhaseError } from '../../src/api/errors.ts';
import { applyComponents } from '../../src/phases/apply.ts';
import { condition, contextOf, registerKey, world, type World } from './fakes.ts';

/** applied bootstraps a ClusterBootstrap to Applied (its key registered, Flux not running yet). */
async function applied(): Promise<World> {
  const w = await world();
  await w.reconcile();
  registerKey(w);
  await w.reconcile();
  assert.equal(condition(w, 'Applied')?.status, 'True', w.cb().status?.message);
  w.events.length = 0;
  return w;
}

const applies = (w: World, from: number) => w.calls.list.slice(from).filter((c) => c.what.includes(' apply '));
const drift = (w: World) => w.events.filter((e) => e.reason === 'DriftRepaired').map((e) => e.message);

test('a pass after the first finds the same components applied and applies none of them again', async () => {
  const w = await applied();
  const from = w.calls.list.length;
  await w.reconcile();
  const again = applies(w, from).map((c) => c.what.split(' ')[2]);
  assert.deepEqual([...new Set(again)].sort(), ['GitRepository', 'Kustomization', 'Secret']);
  assert.deepEqual(drift(w), []);
});

const rows: { given: string; change: (w: World) => void; said: RegExp; components: boolean }[] = [
  {
    given: "Flux's namespace deleted",
    change: (w) => w.target.objects.delete('Namespace||flux-system'),
    said: /Namespace flux-system \(missing\)/,
    components: true,
  },
  {
    given: "Flux's git Secret changed",
    change: (w) => {
      const s = w.target.read('Secret', 'flux-system', 'flux-system');
      w.target.put({ ...s, data: { ...s.data, identity: Buffer.from('someone else').toString('base64') } });
    },
    said: /Secret flux-system\/flux-system \(changed\)/,
    components: false,
  },
  {
    given: 'the GitRepository pointed elsewhere',
    change: (w) => {
      const r = w.target.read('GitRepository', 'flux-system', 'flux-system');
      w.target.put({ ...r, spec: { ...r.spec, url: 'ssh://git@elsewhere/repo.git' } });
    },
    said: /GitRepository flux-system\/flux-system \(changed\)/,
    components: false,
  },
  {
    given: 'the Kustomization deleted',
    change: (w) => w.target.objects.delete('Kustomization|flux-system|flux-system'),
    said: /Kustomization flux-system\/flux-system \(missing\)/,
    components: false,
  },
  {
    given: "a controller's Deployment deleted",
    change: (w) => w.target.objects.delete('Deployment|flux-system|kustomize-controller'),
    said: /Deployment flux-system\/kustomize-controller \(missing\)/,
    components: true,
  },
  {
    given: 'a CRD deleted',
    change: (w) => w.target.objects.delete('CustomResourceDefinition||helmreleases.helm.toolkit.fluxcd.io'),
    said: /CustomResourceDefinition helmreleases\.helm\.toolkit\.fluxcd\.io \(missing\)/,
    components: true,
  },
];

for (const row of rows) {
  test(`drift: ${row.given} is put back and said${row.components ? ', with the components applied again' : ''}`, async () => {
    const w = await applied();
    row.change(w);
    const from = w.calls.list.length;
    await w.reconcile();
    assert.equal(condition(w, 'Applied')?.status, 'True');
    assert.equal(drift(w).length, 1, `one DriftRepaired Event: ${drift(w)}`);
    assert.match(drift(w)[0], row.said);
    const crdApplies = applies(w, from).filter((c) => c.what.includes('CustomResourceDefinition')).length;
    assert.equal(crdApplies > 0, row.components, `CRDs applied again: ${crdApplies}`);
  });
}

test('once Flux manages itself, the components are handed over: the operator owns no field of them, and applies none', async () => {
  const w = await applied();
  w.flux.running = true;
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True');
  const owned = [...w.target.objects.values()].filter(
    (o) => o.kind !== 'Secret' && o.kind !== 'GitRepository' && o.kind !== 'Kustomization',
  );
  assert.ok(owned.length > 20);
  for (const o of owned)
    assert.ok(
      !(o.metadata.managedFields ?? []).some((f: any) => f.manager === 'flux-bootstrap-operator'),
      `${o.kind} ${o.metadata.name} still names the operator`,
    );
  const from = w.calls.list.length;
  await w.reconcile();
  assert.equal(applies(w, from).filter((c) => c.what.includes('Deployment')).length, 0);
  assert.equal(
    w.calls.list.slice(from).filter((c) => c.what.includes('PATCH /fake/')).length,
    0,
    'handed over once: the next pass looks at one object and patches none',
  );
});

test('a controller deleted behind a self-managing Flux is put back: the components are applied again, and said', async () => {
  const w = await applied();
  w.flux.running = true;
  await w.reconcile();
  w.events.length = 0;
  w.target.objects.delete('Deployment|flux-system|source-controller');
  await w.reconcile();
  assert.ok(w.target.read('Deployment', 'flux-system', 'source-controller'));
  assert.match(drift(w)[0], /Deployment flux-system\/source-controller \(missing: Flux's components applied again\)/);
});

test('the components are applied again once per resync period, and at a new Flux version', async () => {
  const w = await applied();
  w.clock.t += 11 * 60_000;
  const from = w.calls.list.length;
  await w.reconcile();
  assert.ok(
    applies(w, from).some((c) => c.what.includes('CustomResourceDefinition')),
    'the resync period passed',
  );
  const cb = w.cb();
  w.mgmt.put({ ...cb, metadata: { ...cb.metadata, generation: 2 }, spec: { ...cb.spec, flux: { version: 'v2.9.3' } } });
  const next = w.calls.list.length;
  await w.reconcile();
  assert.ok(
    applies(w, next).some((c) => c.what.includes('CustomResourceDefinition')),
    'a new version',
  );
  assert.equal(w.cb().status?.appliedComponents?.version, 'v2.9.3');
});

test('CRDs the target never serves fail the apply after 60 s of waiting, and nothing after them is applied', async () => {
  const w = await world();
  w.target.establishes = false;
  const started = w.clock.t;
  await assert.rejects(applyComponents(contextOf(w), w.target), (err: unknown) => {
    assert.ok(err instanceof PhaseError && err.reason === 'ApplyFailed');
    assert.match(err.message, /^CRD .* is not Established after 60 s$/);
    return true;
  });
  assert.ok(w.clock.t - started >= 60_000, 'it waited on its clock, not the wall clock');
  assert.equal(w.target.of('Deployment').length, 0);
  assert.equal(w.target.of('Namespace').length, 0);
});
