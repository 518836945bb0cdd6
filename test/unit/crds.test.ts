import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';

const crd = (file: string) => yaml.load(readFileSync(new URL(`../../crds/${file}`, import.meta.url), 'utf8')) as any;
const CRDS = ['fluxbootstrap.dev_clusterbootstraps.yaml', 'fluxbootstrap.dev_clusterbootstrapsets.yaml'];

/** undescribed lists the fields of a schema, at any depth, that kubectl explain would show without a description. */
function undescribed(node: any, path: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries<any>(node.properties ?? {})) {
    const p = path ? `${path}.${k}` : k;
    // The API server allows nothing on an object's metadata: kubectl explain shows ObjectMeta's own words.
    if (!v.description && p !== 'metadata') out.push(p);
    out.push(...undescribed(v, p));
  }
  if (node.items) out.push(...undescribed(node.items, `${path}[]`));
  return out;
}

for (const file of CRDS)
  test(`every field of ${file} explains itself (kubectl explain)`, () => {
    assert.deepEqual(undescribed(crd(file).spec.versions[0].schema.openAPIV3Schema, ''), []);
  });

test('short names: cb for a ClusterBootstrap and cbset for a set, and no cbs to confuse them', () => {
  const [cb, set] = CRDS.map((f) => crd(f).spec.names.shortNames);
  assert.deepEqual(cb, ['cb']);
  assert.deepEqual(set, ['cbset']);
});

test("the printer columns read as Flux's: Ready, then Status with the Ready message; Flux is the version installed", () => {
  const columns = crd(CRDS[0]).spec.versions[0].additionalPrinterColumns;
  const path = (name: string) => columns.find((c: any) => c.name === name)?.jsonPath;
  assert.equal(path('Status'), '.status.conditions[?(@.type=="Ready")].message');
  assert.equal(path('Flux'), '.status.fluxVersion');
  assert.ok(columns.findIndex((c: any) => c.name === 'Ready') < columns.findIndex((c: any) => c.name === 'Status'));
});

test("an object's metadata schema says nothing but its type (the API server refuses a CRD that does)", () => {
  for (const file of CRDS)
    assert.deepEqual(crd(file).spec.versions[0].schema.openAPIV3Schema.properties.metadata, { type: 'object' });
});
