/**
 * Bad input and faults: each ends in a condition with a reason and a message that says what to fix, while
 * one operator keeps serving every other ClusterBootstrap in the namespace. The spec errors the CRD schema
 * can catch are refused by the API server before the operator sees them.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { generateKeyPair } from '../../src/ssh/keys.ts';
import { formatKnownHosts, scanHostKeys } from '../../src/ssh/hostkeys.ts';
import { freePorts } from '../lab/lab.ts';
import {
  applyCB,
  authorizeWhenPublished,
  condition,
  getCB,
  git,
  lab,
  listener,
  mgmt,
  operatorSuite,
  repo,
  secret,
  targetKubeconfigSecret,
  waitCondition,
  waitFor,
} from './harness.ts';

const suite = operatorSuite('e2e-faults');
let closedPort: number;

before(async () => {
  [closedPort] = await freePorts(1);
});

const gitSpec = (url: string, extra = {}) => ({ url, secretRef: { name: 'git-push' }, ...extra });

/** expectRejected applies a spec and expects the API server to refuse it with a message matching `re`. */
async function expectRejected(name: string, spec: any, re: RegExp) {
  await assert.rejects(applyCB(suite.ns, name, spec), (err: Error) => re.test(err.message));
}

/** ready registers the deploy key of a ClusterBootstrap so that it gets past the git phases. */
async function past(name: string) {
  await authorizeWhenPublished(suite.ns, name);
}

test('the schema refuses a path escaping the repository, an unknown component and a malformed URL', async () => {
  await expectRejected(
    'escape',
    { git: gitSpec('ssh://git@h/r.git', { path: 'clusters/../../etc' }) },
    /must not contain '\.\.'/,
  );
  await expectRejected(
    'component',
    { git: gitSpec('ssh://git@h/r.git'), flux: { components: ['source-controller', 'nope-controller'] } },
    /Unsupported value: "nope-controller"/,
  );
  await expectRejected('url', { git: gitSpec('not a url') }, /spec\.git\.url/);
  await expectRejected('policy', { git: gitSpec('ssh://git@h/r.git'), deletionPolicy: 'Shred' }, /deletionPolicy/);
});

test('a git URL the schema lets through but that names no repository stalls with InvalidGitURL', async () => {
  await applyCB(suite.ns, 'no-repo-path', { git: gitSpec('ssh://git@127.0.0.1:22') });
  const cb = await waitCondition(suite.ns, 'no-repo-path', 'Stalled', 'True', 'InvalidGitURL');
  assert.match(condition(cb, 'Ready')!.message, /names no repository/);
});

test('an unknown Flux version stalls with UnknownFluxVersion and lists the shipped versions', async () => {
  await applyCB(suite.ns, 'old-flux', { git: gitSpec(await repo('faults')), flux: { version: 'v2.0.0' } });
  const cb = await waitCondition(suite.ns, 'old-flux', 'Stalled', 'True', 'UnknownFluxVersion');
  assert.match(condition(cb, 'Ready')!.message, /v2\.9\.3, v2\.9\.4/);
});

test('an unreachable git host is HostKeyTrusted=False with GitHostUnreachable, and retried', async () => {
  await applyCB(suite.ns, 'no-git-host', { git: gitSpec(`ssh://git@127.0.0.1:${closedPort}/x.git`) });
  const cb = await waitCondition(suite.ns, 'no-git-host', 'HostKeyTrusted', 'False', 'GitHostUnreachable');
  assert.equal(condition(cb, 'Stalled'), undefined, 'a transient failure is not Stalled');
  assert.equal(condition(cb, 'Reconciling')!.status, 'True');
  assert.equal(condition(cb, 'Reconciling')!.reason, 'ProgressingWithRetry');
});

test('the host key scan matches ssh-keyscan, key for key', async () => {
  const port = Number(lab().LAB_GIT_PORT);
  const ours = formatKnownHosts(await scanHostKeys('127.0.0.1', port));
  const theirs = execFileSync('ssh-keyscan', ['-p', String(port), '127.0.0.1'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  assert.equal(
    ours,
    theirs
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .sort()
      .join('\n') + '\n',
  );
});

test('a host key that differs from the pinned one is refused with HostKeyChanged', async () => {
  const other = (await generateKeyPair({ algorithm: 'ed25519' })).publicKey;
  const knownHosts = `[127.0.0.1]:${lab().LAB_GIT_PORT} ${other}\n`;
  await applyCB(suite.ns, 'host-key', { git: gitSpec(await repo('faults'), { knownHosts }) });
  const cb = await waitCondition(suite.ns, 'host-key', 'HostKeyTrusted', 'False', 'HostKeyChanged');
  assert.match(condition(cb, 'HostKeyTrusted')!.message, /changed since it was pinned — refusing/);
  assert.equal(condition(cb, 'Committed'), undefined, 'nothing was committed');
});

test('a repository that does not exist is RepositoryNotFound', async () => {
  await applyCB(suite.ns, 'missing-repo', {
    git: gitSpec(`${lab().LAB_GIT_BASE_URL}/never-created-${Date.now()}.git`),
  });
  await past('missing-repo');
  const cb = await waitCondition(suite.ns, 'missing-repo', 'DeployKeyAuthorized', 'False', 'RepositoryNotFound');
  assert.match(condition(cb, 'Ready')!.message, /does not exist/);
});

test('a missing push Secret is GitCredentialsMissing, and wrong push credentials are GitAuthenticationFailed', async () => {
  const url = await repo('faults');
  await applyCB(suite.ns, 'no-push-secret', { git: { url, secretRef: { name: 'absent' } } });
  const missing = await waitCondition(suite.ns, 'no-push-secret', 'HostKeyTrusted', 'False', 'GitCredentialsMissing');
  assert.match(condition(missing, 'Ready')!.message, /absent.*does not exist/);

  await secret(suite.ns, 'stranger', { identity: (await generateKeyPair({ algorithm: 'ed25519' })).privateKey });
  await applyCB(suite.ns, 'wrong-push-key', { git: { url, secretRef: { name: 'stranger' } } });
  await past('wrong-push-key');
  const cb = await waitCondition(suite.ns, 'wrong-push-key', 'Committed', 'False', 'GitAuthenticationFailed');
  assert.match(condition(cb, 'Committed')!.message, /write access/);
  assert.equal(git(['ls-remote', url]), '');
});

test('a push refused by a protected branch is PushRejected and the branch is untouched', async () => {
  const url = await repo('protected');
  const bare = join(lab().LAB_GIT_ROOT, url.split('/').at(-1)!);
  writeFileSync(
    join(bare, 'hooks', 'pre-receive'),
    '#!/bin/sh\necho "GL-HOOK-ERR: main is a protected branch" >&2\nexit 1\n',
  );
  chmodSync(join(bare, 'hooks', 'pre-receive'), 0o755);
  await applyCB(suite.ns, 'protected', { git: gitSpec(url) });
  await past('protected');
  const cb = await waitCondition(suite.ns, 'protected', 'Committed', 'False', 'PushRejected');
  assert.match(condition(cb, 'Committed')!.message, /protected branch/);
});

test('a missing kubeconfig Secret is KubeconfigSecretMissing, after the commit', async () => {
  await applyCB(suite.ns, 'no-kubeconfig', {
    git: gitSpec(await repo('faults')),
    target: { kubeconfigSecretRef: { name: 'no-kubeconfig-kubeconfig' } },
  });
  await past('no-kubeconfig');
  const cb = await waitCondition(suite.ns, 'no-kubeconfig', 'Applied', 'False', 'KubeconfigSecretMissing');
  assert.equal(condition(cb, 'Committed')!.status, 'True');
  assert.match(condition(cb, 'Applied')!.message, /no-kubeconfig-kubeconfig.*does not exist/);
});

test('a malformed kubeconfig is KubeconfigInvalid', async () => {
  await targetKubeconfigSecret(suite.ns, 'garbled', 'this: [is not a kubeconfig');
  await applyCB(suite.ns, 'garbled', {
    git: gitSpec(await repo('faults')),
    target: { kubeconfigSecretRef: { name: 'garbled-kubeconfig' } },
  });
  await past('garbled');
  await waitCondition(suite.ns, 'garbled', 'Applied', 'False', 'KubeconfigInvalid');
});

/** localKubeconfig points at a port of this machine, with a token. */
const localKubeconfig = (port: number) => `apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "http://127.0.0.1:${port}"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: local, user: u}}]
current-context: c
`;

test('an unreachable target API server is TargetUnreachable, and retried', async () => {
  await targetKubeconfigSecret(suite.ns, 'gone', localKubeconfig(closedPort));
  await applyCB(suite.ns, 'gone', {
    git: gitSpec(await repo('faults')),
    target: { kubeconfigSecretRef: { name: 'gone-kubeconfig' } },
  });
  await past('gone');
  const cb = await waitCondition(suite.ns, 'gone', 'Applied', 'False', 'TargetUnreachable');
  assert.match(condition(cb, 'Applied')!.message, /does not answer/);
  assert.equal(condition(cb, 'Stalled'), undefined);
});

test(
  'a target API server that accepts connections and never answers holds up only its own ClusterBootstrap: ' +
    'another is Applied meanwhile',
  async () => {
    const mute = await listener();
    try {
      const url = await repo('faults-mute');
      await targetKubeconfigSecret(suite.ns, 'mute', localKubeconfig(mute.port));
      await applyCB(suite.ns, 'mute', {
        git: gitSpec(url, { path: 'clusters/mute' }),
        target: { kubeconfigSecretRef: { name: 'mute-kubeconfig' } },
      });
      await authorizeWhenPublished(suite.ns, 'mute');
      await waitFor('the mute target to be called', async () => mute.connections() > 0, 60_000);
      await targetKubeconfigSecret(suite.ns, 'beside-mute');
      await applyCB(suite.ns, 'beside-mute', {
        git: gitSpec(url, { path: 'clusters/beside-mute' }),
        target: { kubeconfigSecretRef: { name: 'beside-mute-kubeconfig' } },
        flux: { namespace: 'flux-beside-mute' },
      });
      await authorizeWhenPublished(suite.ns, 'beside-mute');
      await waitCondition(suite.ns, 'beside-mute', 'Applied', 'True', undefined, 60_000);
      // The mute target's call waits for its 30-second deadline: that pass has not ended (one operator working
      // through its ClusterBootstraps one at a time would have reported it before getting to the other).
      assert.notEqual(
        condition(await getCB(suite.ns, 'mute'), 'Applied')?.reason,
        'TargetUnreachable',
        'the mute target is still being waited for',
      );
      await waitCondition(suite.ns, 'mute', 'Applied', 'False', 'TargetUnreachable', 90_000);
    } finally {
      mute.server.close();
    }
  },
);

test('a second ClusterBootstrap on the same repository path is Stalled with PathConflict; the first is not', async () => {
  const url = await repo('conflict');
  await applyCB(suite.ns, 'first', { git: gitSpec(url, { path: 'clusters/shared' }) });
  await waitCondition(suite.ns, 'first', 'IdentityReady', 'True');
  await applyCB(suite.ns, 'second', { git: gitSpec(url, { path: './clusters/shared/' }) });
  const cb = await waitCondition(suite.ns, 'second', 'Stalled', 'True', 'PathConflict');
  assert.match(condition(cb, 'Ready')!.message, /first already bootstraps clusters\/shared/);
  assert.notEqual(condition(await getCB(suite.ns, 'first'), 'Stalled')?.status, 'True');
});

test('a suspended ClusterBootstrap is left alone until it is resumed', async () => {
  const spec = { git: gitSpec(await repo('suspend')), suspend: true };
  await applyCB(suite.ns, 'suspended', spec);
  const cb = await waitCondition(suite.ns, 'suspended', 'Reconciling', 'False', 'Suspended');
  assert.equal(cb.status?.identity, undefined);
  assert.equal(
    await mgmt().get('v1', 'Secret', suite.ns, 'suspended-flux-identity'),
    undefined,
    'no key was made while suspended',
  );
  await applyCB(suite.ns, 'suspended', { ...spec, suspend: false });
  await waitCondition(suite.ns, 'suspended', 'IdentityReady', 'True');
});

test("the key algorithm follows spec.identity, and a later change is reported, never applied behind the user's back", async () => {
  const spec = {
    git: gitSpec(await repo('identity')),
    identity: { algorithm: 'ecdsa' as const, ecdsaCurve: 'p256' as const },
  };
  await applyCB(suite.ns, 'ecdsa', spec);
  const cb = await waitCondition(suite.ns, 'ecdsa', 'IdentityReady', 'True');
  assert.match(cb.status!.identity!.publicKey, /^ecdsa-sha2-nistp256 AAAA/);
  await applyCB(suite.ns, 'ecdsa', { ...spec, identity: { algorithm: 'rsa' as const } });
  const after = await waitFor('the algorithm change to be reported', async () => {
    const c = await getCB(suite.ns, 'ecdsa');
    return condition(c, 'IdentityReady')?.message.includes('not rsa') ? c : false;
  });
  assert.equal(after.status!.identity!.publicKey, cb.status!.identity!.publicKey, 'the key was kept');
});

test('after all of this the operator is still running and answering', async () => {
  assert.equal(suite.operator.proc.exitCode, null);
  assert.ok((await fetch(`${suite.operator.healthUrl}/readyz`)).ok);
  const metrics = await (await fetch(suite.operator.metricsUrl)).text();
  assert.match(
    metrics,
    /controller_runtime_reconcile_total\{controller="clusterbootstrap",result="requeue_after"\} [1-9]/,
  );
  assert.match(metrics, /fluxbootstrap_phase_duration_seconds_count\{phase="IdentityReady"\} \d+/);
});
