import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { shippedManifests, shippedVersions } from '../../src/manifests/components.ts';

// The released install manifests of shipped Flux versions are in ../shared/fixtures (outside the checkout): v2.9.3
// and v2.9.4; v2.9.5 has no released copy here (it is rendered from source: flux-manifests.test.ts).
const fixtures = new URL('../../../shared/fixtures/flux/', import.meta.url);

test(
  'the operator ships the Flux versions from the fixtures, byte for byte',
  { skip: existsSync(fixtures) ? false : 'no ../shared/fixtures beside the checkout' },
  () => {
    const released = readdirSync(fixtures).filter((v) => /^v\d+\.\d+\.\d+$/.test(v));
    assert.ok(released.length > 0, 'no released versions in the fixtures');
    for (const v of released) {
      assert.ok(shippedVersions().includes(v), v);
      assert.equal(shippedManifests(v), readFileSync(new URL(`${v}/gotk-components.yaml`, fixtures), 'utf8'), v);
    }
  },
);
