/**
 * Tenant safety: whoever may create a ClusterBootstrap in a namespace controls its spec, the Secrets it names
 * and the repository it points at — and nothing more. Each test performs an attack such an author could
 * try and shows it failing with a condition that tells an honest author what to fix, while the honest path
 * beside it still works. The operator here allows no namespace to omit spec.target.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, KIND } from '../../src/api/types.ts';
import {
  applyCB,
  authorizeWhenPublished,
  clone,
  condition,
  getCB,
  git,
  listener,
  mgmt,
  operatorSuite,
  repo,
  secret,
  waitCondition,
  waitFor,
} from './harness.ts';

const suite = operatorSuite('e2e-security', undefined, { targetless: [] });
const gitSpec = (url: string, extra = {}) => ({ url, secretRef: { name: 'git-push' }, ...extra });
const scratch = mkdtempSync(join(tmpdir(), 'e2e-security-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const kubeconfig = (cluster: string, user: string) => `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: ${cluster}}]
users: [{name: u, user: ${user}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`;

let trap: Awaited<ReturnType<typeof listener>>;
before(async () => {
  trap = await listener();
});
after(() => trap.server.close());

test(
  'a kubeconfig whose user runs a command is refused with KubeconfigInvalid naming exec, and the command never ' +
    'runs',
  async () => {
    const marker = join(scratch, 'exec-ran');
    const evil = kubeconfig(
      `{server: "http://127.0.0.1:${trap.port}"}`,
      `{exec: {apiVersion: client.authentication.k8s.io/v1, command: sh, args: [-c, "touch ${marker}; id >&2; exit ` +
        `1"]}}`,
    );
    await secret(suite.ns, 'exec-kubeconfig', { value: evil });
    await applyCB(suite.ns, 'exec', {
      git: gitSpec(await repo('security')),
      target: { kubeconfigSecretRef: { name: 'exec-kubeconfig' } },
      deletionPolicy: 'Uninstall',
    });
    await authorizeWhenPublished(suite.ns, 'exec');
    const cb = await waitCondition(suite.ns, 'exec', 'Applied', 'False', 'KubeconfigInvalid');
    assert.match(condition(cb, 'Applied')!.message, /exec is not allowed/);
    assert.ok(!/uid=/.test(JSON.stringify(cb.status)), 'no command output reaches the status');

    // The deletion policy's path connects to the target too: it is refused the same way, and says how to let go.
    await mgmt().delete(API_VERSION, KIND, suite.ns, 'exec');
    await waitCondition(suite.ns, 'exec', 'Ready', 'False', 'Deleting');
    assert.equal(existsSync(marker), false, 'the kubeconfig command never ran');
    assert.equal(trap.connections(), 0, 'nothing was sent to the server the kubeconfig names');
    await mgmt().mergePatch(API_VERSION, KIND, suite.ns, 'exec', { spec: { deletionPolicy: 'Orphan' } });
    await waitFor(
      'the ClusterBootstrap to be let go with deletionPolicy Orphan',
      async () => !(await mgmt().get(API_VERSION, KIND, suite.ns, 'exec')),
    );
    assert.ok(!suite.operator.logs.some((l) => l.includes('uid=')), 'no command output reaches the log');
  },
);

test(
  "a kubeconfig that points a token file at the operator's own files and its server at the author's listener is " +
    'refused; the listener hears nothing',
  async () => {
    const secretFile = join(scratch, 'operator-token');
    writeFileSync(secretFile, 'the-operators-own-token');
    const evil = kubeconfig(`{server: "http://127.0.0.1:${trap.port}"}`, `{tokenFile: ${secretFile}}`);
    await secret(suite.ns, 'file-kubeconfig', { value: evil });
    await applyCB(suite.ns, 'files', {
      git: gitSpec(await repo('security')),
      target: { kubeconfigSecretRef: { name: 'file-kubeconfig' } },
    });
    await authorizeWhenPublished(suite.ns, 'files');
    const cb = await waitCondition(suite.ns, 'files', 'Applied', 'False', 'KubeconfigInvalid');
    assert.match(condition(cb, 'Applied')!.message, /tokenFile/);
    assert.equal(trap.connections(), 0);
    assert.ok(!suite.operator.logs.some((l) => l.includes('the-operators-own-token')));
  },
);

test(
  'a ClusterBootstrap without a target is Stalled outside the allowed namespaces, and nothing reaches the ' +
    'management cluster',
  async () => {
    await applyCB(suite.ns, 'targetless', { git: gitSpec(await repo('security')) });
    const cb = await waitCondition(suite.ns, 'targetless', 'Stalled', 'True', 'TargetlessNotAllowed');
    assert.match(condition(cb, 'Ready')!.message, /--allow-targetless-namespaces/);
    assert.equal(cb.status?.identity, undefined, 'no key was made');
    assert.equal(
      await mgmt()
        .get('kustomize.toolkit.fluxcd.io/v1', 'Kustomization', 'flux-system', 'flux-system')
        .catch(() => undefined),
      undefined,
    );
  },
);

test(
  'the schema refuses an Uninstall of a system namespace, and strings that would smuggle content into a manifest ' +
    'or a commit',
  async () => {
    const refused = async (spec: any, re: RegExp) =>
      assert.rejects(applyCB(suite.ns, 'refused', spec), (err: Error) => re.test(err.message));
    const url = 'ssh://git@h/r.git';
    await refused(
      { git: gitSpec(url), flux: { namespace: 'kube-system' }, deletionPolicy: 'Uninstall' },
      /system namespace/,
    );
    await refused({ git: gitSpec(url), flux: { registry: 'evil\nkind: x' } }, /spec\.flux\.registry/);
    await refused(
      { git: gitSpec(url, { author: { email: 'eve@x\nSigned-off-by: admin' } }) },
      /spec\.git\.author\.email/,
    );
    await refused({ git: gitSpec(url, { path: 'clusters/x/.git/hooks' }) }, /\.git/);
    await refused(
      { git: gitSpec('https://ghp_token@github.com/org/fleet.git', { readSecretRef: { name: 'r' } }) },
      /must not carry credentials/,
    );
    await refused({ git: gitSpec('https://github.com/org/fleet.git') }, /readSecretRef/);
    await refused({ git: gitSpec(url), flux: { tolerationKeys: ['a b'] } }, /tolerationKeys/);
  },
);

test(
  'a symbolic link in the repository is refused, the file it points to is untouched, and another cluster on the ' +
    'repository still commits',
  async () => {
    const url = await repo('symlink');
    const victim = join(scratch, 'victim.conf');
    writeFileSync(victim, '[core]\n\tuntouched = true\n');
    const work = clone(url);
    git(['-C', work, 'checkout', '-q', '-b', 'main']);
    git(['-C', work, 'config', 'core.symlinks', 'true']);
    const dir = join(work, 'clusters', 'evil', 'flux-system');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    symlinkSync(victim, join(dir, 'gotk-sync.yaml'));
    git(['-C', work, 'add', '-A']);
    git([
      '-C',
      work,
      '-c',
      'user.name=eve',
      '-c',
      'user.email=eve@example.com',
      'commit',
      '-qm',
      'a link out of the clone',
    ]);
    git(['-C', work, 'push', '-q', 'origin', 'main']);

    await applyCB(suite.ns, 'evil', {
      git: gitSpec(url, { path: 'clusters/evil' }),
      target: { kubeconfigSecretRef: { name: 'nowhere' } },
    });
    await applyCB(suite.ns, 'honest', {
      git: gitSpec(url, { path: 'clusters/honest' }),
      target: { kubeconfigSecretRef: { name: 'nowhere' } },
    });
    await authorizeWhenPublished(suite.ns, 'evil');
    await authorizeWhenPublished(suite.ns, 'honest');
    const cb = await waitCondition(suite.ns, 'evil', 'Committed', 'False', 'UnsafeRepositoryContent');
    assert.match(condition(cb, 'Committed')!.message, /clusters\/evil\/flux-system\/gotk-sync\.yaml/);
    await waitCondition(suite.ns, 'honest', 'Committed', 'True');
    assert.equal(readFileSync(victim, 'utf8'), '[core]\n\tuntouched = true\n', 'the link target is untouched');
  },
);

test(
  'a git host that accepts connections and never answers is GitHostUnreachable, and the operator keeps serving ' +
    'the others',
  async () => {
    const { server, port } = await listener();
    try {
      await applyCB(suite.ns, 'silent', {
        git: gitSpec(`ssh://git@127.0.0.1:${port}/fleet.git`),
        target: { kubeconfigSecretRef: { name: 'nowhere' } },
      });
      await waitCondition(suite.ns, 'silent', 'HostKeyTrusted', 'False', 'GitHostUnreachable', 60_000);
      await applyCB(suite.ns, 'beside', {
        git: gitSpec(await repo('security')),
        target: { kubeconfigSecretRef: { name: 'nowhere' } },
      });
      await waitCondition(suite.ns, 'beside', 'IdentityReady', 'True');
      assert.equal(suite.operator.proc.exitCode, null, 'the operator is still running');
    } finally {
      server.close();
    }
  },
);

test('no status, Event or log line of this suite holds key material', async () => {
  const events = await mgmt().list('v1', 'Event', suite.ns);
  const statuses = await mgmt().list(API_VERSION, KIND, suite.ns);
  for (const text of [JSON.stringify(events), JSON.stringify(statuses), suite.operator.logs.join('\n')])
    assert.doesNotMatch(text, /PRIVATE KEY|the-operators-own-token/);
  assert.ok((await getCB(suite.ns, 'honest')).status?.identity?.publicKey);
});

test(
  'a ClusterBootstrap whose kubeconfig Secret is gone is let go at deletion, even with Uninstall, and says so in ' +
    'an Event',
  async () => {
    await applyCB(suite.ns, 'cluster-gone', {
      git: gitSpec(await repo('security')),
      target: { kubeconfigSecretRef: { name: 'deleted-with-its-cluster' } },
      deletionPolicy: 'Uninstall',
    });
    await waitCondition(suite.ns, 'cluster-gone', 'IdentityReady', 'True');
    await mgmt().delete(API_VERSION, KIND, suite.ns, 'cluster-gone');
    await waitFor(
      'the ClusterBootstrap to be gone',
      async () => !(await mgmt().get(API_VERSION, KIND, suite.ns, 'cluster-gone')),
      30_000,
    );
    const events = await mgmt().list<any>('v1', 'Event', suite.ns);
    assert.ok(
      events.some(
        (e) => e.involvedObject.name === 'cluster-gone' && e.reason === 'UninstallSkipped' && e.type === 'Warning',
      ),
    );
  },
);
