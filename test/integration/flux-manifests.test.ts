/**
 * npm run flux:manifests renders Flux's install manifests from source (test/flux-manifests.ts): rendered again,
 * every shipped version comes out as it ships, byte for byte — v2.9.3 and v2.9.4 as Flux released them (their
 * sha256 in test/fixtures/flux/, and the released files themselves in ../shared/fixtures when that is there),
 * v2.9.5 with the stand-ins it was rendered with where its controllers' modules cannot be fetched (and from the
 * real modules where they can: then the stand-ins' guess is checked). Needs Go (the modules, and kustomize built
 * once from test/lab/go/kustomize), so it is not a unit test.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { shippedVersions } from '../../src/manifests/components.ts';
import { renderFlux, SHIPPED_STAND_INS } from '../flux-manifests.ts';
import { ensureKustomize, goModDownload } from '../lab/build.ts';

function haveGo(): boolean {
  return (
    spawnSync(process.env.GO ?? 'go', ['version'], { stdio: 'ignore', env: { ...process.env, GOTOOLCHAIN: 'local' } })
      .status === 0
  );
}
const skip = haveGo() ? false : 'go not installed (the Flux modules and kustomize come from Go)';

const shipped = (v: string, file: string) =>
  readFileSync(new URL(`../../src/manifests/flux/${v}/${file}`, import.meta.url), 'utf8');
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let kustomize: string;

before(
  async () => {
    if (!skip) kustomize = await ensureKustomize({ log: (l) => process.stderr.write(`${l}\n`) });
  },
  { timeout: 30 * 60_000 },
);

test(
  'v2.9.4 rendered from source is the released gotk-components.yaml byte for byte, and source-watcher.yaml as shipped',
  { skip },
  async () => {
    const rendered = await renderFlux('v2.9.4', { kustomize, log: () => {} });
    const released = readFileSync(new URL('../fixtures/flux/v2.9.4.sha256', import.meta.url), 'utf8').trim();
    assert.equal(sha256(rendered.components), released);
    assert.equal(rendered.components, shipped('v2.9.4', 'gotk-components.yaml'));
    const fixture = new URL('../../../shared/fixtures/flux/v2.9.4/gotk-components.yaml', import.meta.url);
    if (existsSync(fixture)) assert.equal(rendered.components, readFileSync(fixture, 'utf8'));
    assert.equal(rendered.sourceWatcher, shipped('v2.9.4', 'source-watcher.yaml'));
    assert.deepEqual(
      rendered.controllers.find((c) => c.name === 'source-watcher'),
      {
        name: 'source-watcher',
        version: 'v2.2.3',
        module: 'github.com/fluxcd/source-watcher/v2',
      },
    );
  },
);

test('every shipped version rendered again from source is what ships, byte for byte', { skip }, async () => {
  for (const v of shippedVersions()) {
    const rendered = await renderFlux(v, { kustomize, standIns: SHIPPED_STAND_INS[v], log: () => {} });
    assert.equal(rendered.components, shipped(v, 'gotk-components.yaml'), `${v} gotk-components.yaml`);
    assert.equal(rendered.sourceWatcher, shipped(v, 'source-watcher.yaml'), `${v} source-watcher.yaml`);
    assert.equal(
      sha256(rendered.components),
      readFileSync(new URL(`../fixtures/flux/${v}.sha256`, import.meta.url), 'utf8').trim(),
      `${v} sha256`,
    );
  }
});

test(
  'a controller module that cannot be fetched stops the rendering, naming each and the way out',
  { skip },
  async (t) => {
    if (await goModDownload('github.com/fluxcd/notification-controller', 'v1.9.4').catch(() => undefined))
      return t.skip("the module proxy serves v2.9.5's controllers here: nothing needs a stand-in");
    await assert.rejects(renderFlux('v2.9.5', { kustomize, log: () => {} }), (err: Error) => {
      assert.match(err.message, /^cannot fetch github\.com\/fluxcd\/image-automation-controller@v1\.2\.5, /);
      assert.match(err.message, /--stand-in notification-controller@v… --stand-in source-watcher@v…$/);
      return true;
    });
  },
);
