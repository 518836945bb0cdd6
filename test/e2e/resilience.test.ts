/**
 * Crash safety and concurrency: an operator killed at any point of a bootstrap resumes without a second
 * key pair or a second commit; many ClusterBootstraps and another writer pushing to one repository at the
 * same time lose no commit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  applyCB,
  authorize,
  authorizeWhenPublished,
  clone,
  getCB,
  git,
  installCRD,
  mgmt,
  namespace,
  pushSecret,
  repo,
  sleep,
  startOperator,
  waitCondition,
  waitFor,
  writeFile,
  type RunningOperator,
} from './harness.ts';

let ns: string;
const running: RunningOperator[] = [];
const start = async () => {
  const op = await startOperator({ namespaces: [ns] });
  running.push(op);
  return op;
};

before(async () => {
  await installCRD();
  ns = await namespace('e2e-resilience');
  await pushSecret(ns);
});

after(async () => {
  for (const op of running) await op.stop();
});

test('an operator killed mid-bootstrap resumes with the same key pair and makes no second commit', async () => {
  const url = await repo('crash');
  // No kubeconfig Secret: the bootstrap stops after the commit, at Applied, which is all this test needs.
  await applyCB(ns, 'crash', {
    git: { url, secretRef: { name: 'git-push' } },
    target: { kubeconfigSecretRef: { name: 'absent' } },
  });

  let op = await start();
  const secret = await waitFor('the identity Secret', () => mgmt().get<any>('v1', 'Secret', ns, 'crash-flux-identity'));
  await op.kill();
  op = await start();
  const { status } = await waitFor('the public key in status', async () =>
    (await getCB(ns, 'crash')).status?.identity ? getCB(ns, 'crash') : false,
  );
  const again = await mgmt().get<any>('v1', 'Secret', ns, 'crash-flux-identity');
  assert.equal(again.metadata.uid, secret.metadata.uid, 'the identity Secret was not replaced');
  assert.equal(again.data.identity, secret.data.identity, 'the key pair was not regenerated');
  assert.equal(status!.identity!.publicKey, Buffer.from(secret.data['identity.pub'], 'base64').toString().trim());

  authorize(status!.identity!.publicKey);
  await waitFor('the first commit', async () => git(['ls-remote', url, 'refs/heads/main']) !== '', 60_000);
  await op.kill(); // most likely between the push and the status write
  op = await start();
  const cb = await waitCondition(ns, 'crash', 'Applied', 'False', 'KubeconfigSecretMissing');
  const dir = clone(url);
  assert.equal(git(['rev-list', '--count', 'HEAD'], dir), '1', 'exactly one commit');
  assert.equal(cb.status!.lastPushedCommit, git(['rev-parse', 'HEAD'], dir));
});

test('many ClusterBootstraps and another writer pushing to one repository at once lose no commit', async () => {
  const url = await repo('fleet');
  const names = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
  for (const name of names)
    await applyCB(ns, name, {
      git: { url, secretRef: { name: 'git-push' } },
      target: { kubeconfigSecretRef: { name: 'absent' } },
    });
  await start();
  await Promise.all(names.map((n) => authorizeWhenPublished(ns, n)));

  // Meanwhile a person pushes their own commits to the same branch.
  const mine: string[] = [];
  const writer = (async () => {
    await waitFor('the first commit', async () => git(['ls-remote', url, 'refs/heads/main']) !== '', 60_000);
    const dir = clone(url);
    for (let i = 0; i < 5; i++) {
      writeFile(join(dir, `apps-${i}.yaml`), `# app ${i}\n`);
      git(['add', '.'], dir);
      git(['-c', 'user.name=person', '-c', 'user.email=p@example.com', 'commit', '-q', '-m', `app ${i}`], dir);
      for (;;) {
        try {
          git(['push', '-q', 'origin', 'HEAD:main'], dir);
          break;
        } catch {
          git(['pull', '-q', '--rebase', 'origin', 'main'], dir);
        }
      }
      mine.push(`app ${i}`);
      await sleep(200);
    }
  })();

  const cbs = await Promise.all(names.map((n) => waitCondition(ns, n, 'Committed', 'True', undefined, 120_000)));
  await writer;
  const dir = clone(url);
  const subjects = git(['log', '--format=%s', 'HEAD'], dir).split('\n');
  for (const n of names) {
    assert.equal(
      git(['log', '--format=%H', '--', `clusters/${n}/flux-system`], dir).split('\n').length,
      1,
      `${n} is written by exactly one commit`,
    );
    assert.ok(git(['ls-files', `clusters/${n}/flux-system`], dir).split('\n').length === 3, `files of ${n}`);
  }
  for (const m of mine) assert.ok(subjects.includes(m), `the person's commit "${m}" survived`);
  for (const cb of cbs) assert.ok(git(['cat-file', '-t', cb.status!.lastPushedCommit!], dir) === 'commit');
});
