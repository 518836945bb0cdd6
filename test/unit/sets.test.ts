import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { selectorQuery } from '../../src/controller/sets.ts';
import { setCRD } from '../gen-set-crd.ts';

test("a label selector is written in the API server's query syntax", () => {
  assert.equal(
    selectorQuery({
      matchLabels: { flux: 'yes' },
      matchExpressions: [
        { key: 'env', operator: 'In', values: ['dev', 'acc'] },
        { key: 'legacy', operator: 'DoesNotExist' },
        { key: 'tier', operator: 'Exists' },
      ],
    }),
    'flux=yes,env in (dev,acc),!legacy,tier',
  );
});

test('the committed ClusterBootstrapSet CRD is generated from the ClusterBootstrap CRD (node test/gen-set-crd.ts)', () => {
  assert.equal(
    readFileSync(new URL('../../crds/fluxbootstrap.dev_clusterbootstrapsets.yaml', import.meta.url), 'utf8'),
    setCRD(),
  );
});
