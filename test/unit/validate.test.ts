import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validate, normalizeGitURL } from '../../src/api/validate.ts';
import { PhaseError } from '../../src/api/errors.ts';
import type { ClusterBootstrap, ClusterBootstrapSpec } from '../../src/api/types.ts';

type SpecPatch = Omit<Partial<ClusterBootstrapSpec>, 'git'> & { git?: Partial<ClusterBootstrapSpec['git']> };

/** fleet may bootstrap the management cluster itself: the specs below leave spec.target out for brevity. */
const policy = { targetlessNamespaces: ['fleet'] };

function cb(spec: SpecPatch): ClusterBootstrap {
  return {
    apiVersion: 'fluxbootstrap.dev/v1alpha1',
    kind: 'ClusterBootstrap',
    metadata: { name: 'prod-eu', namespace: 'fleet', uid: 'u1' },
    spec: {
      ...spec,
      git: { url: 'ssh://git@git.example.com/org/fleet.git', secretRef: { name: 'push' }, ...spec.git },
    } as ClusterBootstrapSpec,
  };
}

test('a minimal spec gets the defaults flux bootstrap uses', () => {
  const o = validate(cb({}), policy);
  assert.equal(o.git.branch, 'main');
  assert.equal(o.git.path, 'clusters/prod-eu');
  assert.equal(o.flux.version, 'v2.9.5');
  assert.deepEqual(o.flux.components, [
    'source-controller',
    'kustomize-controller',
    'helm-controller',
    'notification-controller',
  ]);
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
  assert.deepEqual(normalizeGitURL('ssh://git@127.0.0.1:2222/gitops.git'), {
    url: 'ssh://git@127.0.0.1:2222/gitops.git',
    transport: 'ssh',
    host: '127.0.0.1',
    port: 2222,
  });
});

test(
  "Flux v2.9's source-watcher is accepted in componentsExtra, after the default components, for every shipped " +
    'version',
  () => {
    for (const version of ['v2.9.3', 'v2.9.4', 'v2.9.5']) {
      const o = validate(cb({ flux: { version, componentsExtra: ['source-watcher'] } }), policy);
      assert.deepEqual(o.flux.components, [
        'source-controller',
        'kustomize-controller',
        'helm-controller',
        'notification-controller',
        'source-watcher',
      ]);
    }
  },
);

test('an unknown component is refused with the known ones named, source-watcher among them', () => {
  assert.throws(
    () => validate(cb({ flux: { componentsExtra: ['source-watchers'] } }), policy),
    (err: unknown) =>
      err instanceof PhaseError &&
      err.reason === 'UnknownComponent' &&
      /"source-watchers" is unknown; .*image-automation-controller, source-watcher$/.test(err.message),
  );
});

const bad: [string, SpecPatch, string, RegExp][] = [
  ['a malformed git URL', { git: { url: 'not a url' } }, 'InvalidGitURL', /spec\.git\.url/],
  ['a git URL with another scheme', { git: { url: 'ftp://host/repo' } }, 'InvalidGitURL', /scheme ftp:/],
  ['a git URL without a repository', { git: { url: 'ssh://git@host' } }, 'InvalidGitURL', /names no repository/],
  ['a git URL with a bare fragment', { git: { url: 'ssh://git@host/org/repo.git#' } }, 'InvalidGitURL', /fragment/],
  ['a git URL with a bare query', { git: { url: 'https://host/org/repo.git?' } }, 'InvalidGitURL', /query/],
  ['a git host that is an ssh option', { git: { url: 'ssh://-oProxyCommand=x/repo.git' } }, 'InvalidGitURL', /host/],
  [
    'a Secret name of ..',
    { git: { secretRef: { name: '..' } } },
    'InvalidSpec',
    /spec\.git\.secretRef\.name "\.\." is not/,
  ],
  [
    'a kubeconfig Secret name with a slash',
    { target: { kubeconfigSecretRef: { name: 'a/b' } } } as SpecPatch,
    'InvalidSpec',
    /kubeconfigSecretRef\.name/,
  ],
  ['known_hosts over 64 KiB', { git: { knownHosts: 'x'.repeat(70_000) } }, 'InvalidSpec', /longer than 65536/],
  ['a path escaping the repository', { git: { path: 'clusters/../../etc' } }, 'InvalidPath', /escapes the repository/],
  ['an absolute path', { git: { path: '/clusters/a' } }, 'InvalidPath', /relative/],
  ['an unknown Flux version', { flux: { version: 'v1.0.0' } }, 'UnknownFluxVersion', /v2\.9\.3, v2\.9\.4/],
  [
    'an unknown component',
    { flux: { components: ['source-controller', 'kustomize-controller', 'made-up-controller'] } },
    'UnknownComponent',
    /made-up-controller/,
  ],
  [
    'components without kustomize-controller',
    { flux: { components: ['source-controller'] } },
    'UnknownComponent',
    /kustomize-controller/,
  ],
  ['a bad interval', { sync: { interval: 'soon' } }, 'InvalidSpec', /spec\.sync\.interval/],
  ['a bad RSA size', { identity: { algorithm: 'rsa', rsaBits: 1024 } }, 'InvalidSpec', /rsaBits/],
  // What a careless or hostile author writes into strings that end up in a manifest or a commit:
  ['a registry that smuggles YAML', { flux: { registry: 'evil\nkind: x' } }, 'InvalidSpec', /spec\.flux\.registry/],
  [
    'an author email with a newline',
    { git: { author: { email: 'a@b.c\nx' } } },
    'InvalidSpec',
    /spec\.git\.author\.email/,
  ],
  [
    'an author name with angle brackets',
    { git: { author: { name: 'Eve <eve@x>' } } },
    'InvalidSpec',
    /spec\.git\.author\.name/,
  ],
  ['a toleration key that is no label key', { flux: { tolerationKeys: ['a b'] } }, 'InvalidSpec', /tolerationKeys/],
  [
    'a commit message appendix with control characters',
    { git: { commitMessageAppendix: 'x\u0007' } },
    'InvalidSpec',
    /commitMessageAppendix/,
  ],
  ['a path with .git in a later segment', { git: { path: 'clusters/.GIT/x' } }, 'InvalidPath', /\.git/],
  [
    'a token in an https URL',
    { git: { url: 'https://ghp_secret@github.com/org/fleet.git', readSecretRef: { name: 'read' } } },
    'InvalidGitURL',
    /must not carry credentials/,
  ],
  [
    'an https URL without read credentials for Flux',
    { git: { url: 'https://github.com/org/fleet.git' } },
    'InvalidSpec',
    /readSecretRef/,
  ],
  [
    'Uninstall of Flux in kube-system',
    { flux: { namespace: 'kube-system' }, deletionPolicy: 'Uninstall' },
    'InvalidSpec',
    /system namespace/,
  ],
];

for (const [what, spec, reason, message] of bad) {
  test(`${what} is a configuration error (${reason}) that says what to fix`, () => {
    assert.throws(
      () => validate(cb(spec), policy),
      (err: unknown) => err instanceof PhaseError && err.reason === reason && err.terminal && message.test(err.message),
    );
  });
}

test('a ClusterBootstrap without a target is refused outside the namespaces the operator allows', () => {
  assert.throws(
    () => validate(cb({})),
    (err: unknown) =>
      err instanceof PhaseError &&
      err.reason === 'TargetlessNotAllowed' &&
      err.terminal &&
      /--allow-targetless-namespaces/.test(err.message),
  );
  assert.equal(validate(cb({}), policy).target, undefined);
});

test('git hosts that differ only in case are one host, so they share a path-conflict check', () => {
  assert.equal(
    normalizeGitURL('ssh://git@GitHub.COM/org/fleet.git').url,
    normalizeGitURL('ssh://git@github.com/org/fleet.git').url,
  );
});

test('the sync options are built once, from the git and flux fields', () => {
  const o = validate(cb({ git: { branch: 'prod', path: 'clusters/eu' }, flux: { namespace: 'gitops' } }), policy);
  assert.deepEqual(o.sync, {
    name: 'gitops',
    namespace: 'gitops',
    url: 'ssh://git@git.example.com/org/fleet.git',
    branch: 'prod',
    path: 'clusters/eu',
    secretName: 'flux-system',
    interval: '1m',
    kustomizationInterval: '10m',
    prune: true,
  });
});

test('spec.flux.version takes a semver range, resolved to the newest shipped version it matches; an exact version stays', () => {
  const rows: [string, string | RegExp][] = [
    ['2.9.x', 'v2.9.5'],
    ['~2.9', 'v2.9.5'],
    ['>=2.9.0 <2.11.0', 'v2.9.5'],
    ['2.x', 'v2.9.5'],
    ['<2.9.5', 'v2.9.4'],
    ['<2.9.4', 'v2.9.3'],
    ['v2.9.3', 'v2.9.3'],
    ['2.9.3', 'v2.9.3'],
    ['2.10.x', /matches no Flux version shipped.*v2\.9\.3, v2\.9\.4, v2\.9\.5, or a range/],
    ['v9.9.9', /matches no Flux version/],
    ['not a version', /matches no Flux version/],
  ];
  for (const [wanted, then] of rows) {
    if (typeof then === 'string')
      assert.equal(validate(cb({ flux: { version: wanted } }), policy).flux.version, then, wanted);
    else
      assert.throws(
        () => validate(cb({ flux: { version: wanted } }), policy),
        (err: unknown) => err instanceof PhaseError && err.reason === 'UnknownFluxVersion' && then.test(err.message),
        wanted,
      );
  }
  assert.equal(validate(cb({}), policy).latestFluxVersion, 'v2.9.5');
});

test('spec.flux.distribution is bundled, or unset; any other is refused until the operator supports it', () => {
  assert.equal(validate(cb({ flux: { distribution: 'bundled' } }), policy).flux.version, 'v2.9.5');
  assert.equal(validate(cb({}), policy).flux.version, 'v2.9.5');
  assert.throws(
    () => validate(cb({ flux: { distribution: 'oci' } }), policy),
    (err: unknown) =>
      err instanceof PhaseError &&
      err.reason === 'InvalidSpec' &&
      err.terminal &&
      /^spec\.flux\.distribution "oci" is not supported: .*bundled with it only \(distribution: bundled\)$/.test(
        err.message,
      ),
  );
});
