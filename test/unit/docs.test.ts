import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { Catalogue, ConditionTypes, Reasons, reasonInfo } from '../../src/api/conditions.ts';
import { OPTIONS } from '../../src/config.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

test('the README documents every condition reason', () => {
  for (const reason of Object.values(Reasons))
    assert.ok(readme.includes(`| \`${reason}\` |`), `README lacks reason ${reason}`);
});

test("the README's retry column says what the reason catalogue does: a spec change, the reason's delay, or backoff", () => {
  const words = (ms: number) =>
    ms % 60_000 === 0 ? (ms === 60_000 ? 'every minute' : `every ${ms / 60_000} min`) : `every ${ms / 1000} s`;
  for (const reason of Object.keys(Catalogue)) {
    const info = reasonInfo(reason);
    if (info.progress || info.computed) continue;
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${reason}\` |`))!;
    const next = row.split(' | ').at(-1)!;
    if (info.stalls) assert.match(next, /waits for a spec change/, reason);
    else if (info.retryMs)
      assert.ok(next.includes(words(info.retryMs)), `${reason}: "${next}" lacks "${words(info.retryMs)}"`);
    else assert.match(next, /backoff/, reason);
  }
});

test('the README documents every condition type', () => {
  for (const type of Object.values(ConditionTypes))
    assert.ok(readme.includes(`\`${type}\``), `README lacks condition ${type}`);
});

test('the README documents every flag with its environment variable', () => {
  for (const [flag, o] of Object.entries(OPTIONS))
    assert.ok(readme.includes(`| \`--${flag}\` | \`${o.env}\` |`), `README lacks --${flag}`);
});

test('the README documents every spec field of the CRD', () => {
  const crd = yaml.load(
    readFileSync(new URL('../../crds/fluxbootstrap.dev_clusterbootstraps.yaml', import.meta.url), 'utf8'),
  ) as any;
  const walk = (schema: any, prefix: string): string[] =>
    Object.entries(schema.properties ?? {}).flatMap(([k, v]: [string, any]) =>
      v.properties ? walk(v, `${prefix}.${k}`) : [`${prefix}.${k}`],
    );
  for (const field of walk(crd.spec.versions[0].schema.openAPIV3Schema.properties.spec, 'spec')) {
    const leaf = field.split('.').at(-1)!;
    assert.ok(readme.includes(field) || readme.includes(`.${leaf}\``), `README lacks ${field}`);
  }
});
