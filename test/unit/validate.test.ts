import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validate, normalizeGitURL } from '../../src/api/validate.ts';
import { PhaseError } from '../../src/api/errors.ts';
import type { ClusterBootstrap, ClusterBootstrapSpec } from '../../src/api/types.ts';

type SpecPatch = Omit<Partial<ClusterBootstrapSpec>, 'git'> & { git?: Partial<ClusterBootstrapSpec['git']> };

function cb(spec: SpecPatch): ClusterBootstrap {
  return {
    apiVersion: 'fluxbootstrap.dev/v1alpha1',
    kind: 'ClusterBootstrap',
    metadata: { name: 'prod-eu', namespace: 'fleet', uid: 'u1' },
    spec: { ...spec, git: { url: 'ssh://git@git.example.com/org/fleet.git', secretRef: { name: 'push' }, ...spec.git } } as ClusterBootstrapSpec,
  };
}

test('a minimal spec gets the defaults flux bootstrap uses', () => {
  const o = validate(cb({}));
  assert.equal(o.git.branch, 'main');
  assert.equal(o.git.path, 'clusters/prod-eu');
  assert.equal(o.flux.version, 'v2.9.4');
  assert.deepEqual(o.flux.components, ['source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller']);
  assert.equal(o.flux.namespace, 'flux-system');
  assert.equal(o.sync.interval, '1m');
  assert.equal(o.sync.kustomizationInterval, '10m');
  assert.equal(o.identity.algorithm, 'ed25519');
  assert.equal(o.deletionPolicy, 'Orphan');
  assert.equal(o.target, undefined);
});

test('a kubeconfig Secret reference defaults to Cluster API\'s key "value"', () => {
  const o = validate(cb({ target: { kubeconfigSecretRef: { name: 'prod-eu-kubeconfig' } } }));
  assert.deepEqual(o.target, { secretName: 'prod-eu-kubeconfig', key: 'value' });
});

test('the scp form of a git URL is normalised to ssh://, which Flux accepts', () => {
  assert.equal(normalizeGitURL('git@github.com:org/repo.git').url, 'ssh://git@github.com/org/repo.git');
  assert.deepEqual(normalizeGitURL('ssh://git@127.0.0.1:2222/gitops.git'), { url: 'ssh://git@127.0.0.1:2222/gitops.git', transport: 'ssh', host: '127.0.0.1', port: 2222 });
});

const bad: [string, SpecPatch, string, RegExp][] = [
  ['a malformed git URL', { git: { url: 'not a url' } }, 'InvalidGitURL', /spec\.git\.url/],
  ['a git URL with another scheme', { git: { url: 'ftp://host/repo' } }, 'InvalidGitURL', /scheme ftp:/],
  ['a git URL without a repository', { git: { url: 'ssh://git@host' } }, 'InvalidGitURL', /names no repository/],
  ['a path escaping the repository', { git: { path: 'clusters/../../etc' } }, 'InvalidPath', /escapes the repository/],
  ['an absolute path', { git: { path: '/clusters/a' } }, 'InvalidPath', /relative/],
  ['an unknown Flux version', { flux: { version: 'v1.0.0' } }, 'UnknownFluxVersion', /v2\.9\.3, v2\.9\.4/],
  ['an unknown component', { flux: { components: ['source-controller', 'kustomize-controller', 'made-up-controller'] } }, 'UnknownComponent', /made-up-controller/],
  ['components without kustomize-controller', { flux: { components: ['source-controller'] } }, 'UnknownComponent', /kustomize-controller/],
  ['a bad interval', { sync: { interval: 'soon' } }, 'InvalidSpec', /spec\.sync\.interval/],
  ['a bad RSA size', { identity: { algorithm: 'rsa', rsaBits: 1024 } }, 'InvalidSpec', /rsaBits/],
];

for (const [what, spec, reason, message] of bad) {
  test(`${what} is a configuration error (${reason}) that says what to fix`, () => {
    assert.throws(
      () => validate(cb(spec)),
      (err: unknown) => err instanceof PhaseError && err.reason === reason && err.terminal && message.test(err.message),
    );
  });
}
