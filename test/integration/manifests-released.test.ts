import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { shippedManifests, shippedVersions } from '../../src/manifests/components.ts';

// The released install manifests of each shipped Flux version are in ../shared/fixtures (outside the checkout).
test('the operator ships the Flux versions from the fixtures, byte for byte', () => {
  for (const v of shippedVersions())
    assert.equal(
      shippedManifests(v),
      readFileSync(new URL(`../../../shared/fixtures/flux/${v}/gotk-components.yaml`, import.meta.url), 'utf8'),
    );
});
