import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RECONCILE_REQUESTED_AT } from '../../src/api/types.ts';
import { annotate, condition, world, type World } from './fakes.ts';

const HEAD = 'flux-bootstrap/team-prod';
const SYNC = 'clusters/prod/flux-system/gotk-sync.yaml';

/** proposing is a ClusterBootstrap in pull-request mode whose deploy key the provider registers, Flux running. */
async function proposing(when: 'Always' | 'Protected' = 'Always'): Promise<World> {
  const w = await world({ git: { pullRequest: { enabled: true, when } } } as any, { provider: true });
  w.flux.running = true;
  return w;
}

function bump(w: World, version: string): void {
  const cb = w.cb();
  w.mgmt.put({
    ...cb,
    metadata: { ...cb.metadata, generation: (cb.metadata.generation ?? 1) + 1 },
    spec: { ...cb.spec, flux: { ...cb.spec.flux, version } },
  });
}

test('pull-request mode opens one pull request, waits in it, and goes on once the files are on the branch', async () => {
  const w = await proposing();
  await w.reconcile();
  const committed = condition(w, 'Committed');
  assert.equal(committed?.status, 'False');
  assert.equal(committed?.reason, 'PullRequestOpen');
  assert.match(committed?.message ?? '', /pull request #1 https:\/\/git\.example\/org\/fleet\/pulls\/1/);
  assert.equal(condition(w, 'Ready')?.reason, 'PullRequestOpen');
  assert.equal(w.git.files.get(SYNC), undefined, 'nothing is pushed to the protected branch');
  assert.ok(w.git.heads.get(HEAD)?.files.get(SYNC), 'the head branch has the change');
  const pr = w.cb().status?.pullRequest;
  assert.deepEqual(
    { ...pr, headCommit: undefined },
    {
      url: 'https://git.example/org/fleet/pulls/1',
      number: 1,
      headBranch: HEAD,
      headCommit: undefined,
      state: 'open',
      generation: 1,
    },
  );
  assert.equal(pr?.headCommit, w.git.heads.get(HEAD)?.commit);
  assert.ok(w.events.some((e) => e.reason === 'PullRequestOpened' && /pulls\/1/.test(e.message)));

  const commits = w.git.commits;
  w.restart();
  await w.reconcile();
  assert.equal(w.pulls.prs.length, 1, 'a restarted operator finds the open pull request, opens no other');
  assert.equal(w.git.commits, commits, 'and pushes nothing again');

  // A reviewer squashes it: judged by the files on the branch, not by the pull request's state.
  w.git.merge(HEAD);
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.status, 'True');
  assert.equal(condition(w, 'Ready')?.status, 'True', condition(w, 'Ready')?.message);
  assert.equal(w.cb().status?.pullRequest, undefined);
  assert.ok(w.events.some((e) => e.reason === 'PullRequestMerged'));
});

test('a version bump opens a second pull request once the first is merged', async () => {
  const w = await proposing();
  await w.reconcile();
  w.git.merge(HEAD);
  w.pulls.set(1, 'merged');
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True');
  bump(w, 'v2.9.3');
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.reason, 'PullRequestOpen');
  assert.equal(w.pulls.prs.length, 2);
  assert.equal(w.cb().status?.pullRequest?.number, 2);
  assert.match(w.pulls.prs[1].title, /v2\.9\.3 on team\/prod/);
});

test('a pull request closed unmerged is reported and not reopened until the spec or a requestedAt changes', async () => {
  const w = await proposing();
  await w.reconcile();
  w.pulls.set(1, 'closed');
  for (let i = 0; i < 2; i++) {
    await w.reconcile();
    assert.equal(condition(w, 'Committed')?.reason, 'PullRequestClosed');
    assert.equal(condition(w, 'Stalled')?.status, 'True');
    assert.equal(w.pulls.prs.length, 1, 'not reopened');
  }
  annotate(w, RECONCILE_REQUESTED_AT, 'now');
  await w.reconcile();
  assert.equal(w.pulls.prs.length, 2, 'a requestedAt opens a new one');
  assert.equal(condition(w, 'Committed')?.reason, 'PullRequestOpen');
  w.pulls.set(2, 'closed');
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.reason, 'PullRequestClosed');
  bump(w, 'v2.9.3');
  await w.reconcile();
  assert.equal(w.pulls.prs.length, 3, 'so does a spec change');
});

test('when: Protected pushes directly to an unprotected branch, and opens a pull request when protection refuses', async () => {
  const open = await proposing('Protected');
  await open.reconcile();
  assert.equal(condition(open, 'Committed')?.status, 'True');
  assert.ok(open.git.files.get(SYNC), 'pushed directly');
  assert.equal(open.pulls.prs.length, 0);

  const w = await proposing('Protected');
  w.git.protected = true;
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.reason, 'PullRequestOpen');
  assert.equal(w.pulls.prs.length, 1);
  await w.reconcile();
  assert.equal(w.pulls.prs.length, 1, 'while it is open, the change stays in it');
  w.git.merge(HEAD);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True', condition(w, 'Ready')?.message);
});

test('pull-request mode needs a provider to open pull requests with', async () => {
  const w = await world({ git: { pullRequest: { enabled: true } } } as any);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.reason, 'InvalidSpec');
  assert.match(condition(w, 'Ready')?.message ?? '', /spec\.git\.pullRequest needs spec\.git\.provider/);
});

test('a pull request merged before the branch shows it opens no second one', async () => {
  const w = await proposing();
  await w.reconcile();
  w.pulls.set(1, 'merged'); // the host said merged; the base is not updated yet
  await w.reconcile();
  assert.equal(w.pulls.prs.length, 1);
  assert.match(condition(w, 'Committed')?.message ?? '', /is merged; waiting for main/);
  w.git.merge(HEAD);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True');
});

test('spec.git.signing hands the key of its Secret to every commit; a Secret without one is reported', async () => {
  const { generateKeyPair } = await import('../../src/ssh/keys.ts');
  const key = await generateKeyPair({ algorithm: 'ed25519', comment: 'signing' });
  const w = await world({ git: { signing: { secretRef: { name: 'signer' } } } } as any, { provider: true });
  const seen: (string | undefined)[] = [];
  const update = w.git.update.bind(w.git);
  w.git.update = (req) => (seen.push(req.signingKey), update(req));
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.reason, 'GitCredentialsMissing');
  assert.match(condition(w, 'Committed')?.message ?? '', /signer.*spec\.git\.signing\.secretRef/);
  w.mgmt.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'signer', namespace: 'team' },
    stringData: { 'signing.key': 'nope' },
  });
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.reason, 'GitCredentialsInvalid');
  w.mgmt.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'signer', namespace: 'team' },
    stringData: { 'signing.key': key.privateKey },
  });
  await w.reconcile();
  assert.equal(condition(w, 'Committed')?.status, 'True');
  assert.equal(seen.at(-1), key.privateKey);
  assert.doesNotMatch(JSON.stringify([w.cb().status, w.events]), /PRIVATE KEY/);
});
