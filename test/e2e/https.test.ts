/**
 * The https bootstrap end to end, against the lab's Gitea behind TLS with a certificate from the lab's CA: the
 * operator pushes with a token and the CA from the push Secret's ca.crt; Flux reads with read-only credentials
 * of its own (spec.git.readSecretRef) — the push token never reaches the target.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createGiteaRepo, fluxStart, fluxStop, giteaRequest } from '../lab/lab.ts';
import {
  applyCB,
  E2E_LAB_DIR,
  lab,
  operatorSuite,
  secret,
  target,
  targetKubeconfigSecret,
  waitCondition,
} from './harness.ts';

const name = 'over-https';
const fluxNs = 'flux-https';
let httpsUrl: string;
const reader = {
  user: `reader${Math.random().toString(36).slice(2, 7)}`,
  password: `Pw-${Math.random().toString(36).slice(2)}`,
  token: '',
};

/** giteaAs calls Gitea's API with a user's basic auth. */
async function giteaAs(user: string, password: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${lab().LAB_GITEA_API}${path}`, {
    method,
    headers: {
      Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
      'Content-Type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `Gitea ${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return res.json();
}

const suite = operatorSuite('e2e-https', async (ns) => {
  const repoName = `https-${Math.random().toString(36).slice(2, 7)}`;
  await createGiteaRepo(repoName, { dir: E2E_LAB_DIR });
  httpsUrl = lab().LAB_GITEA_HTTPS_URL!.replace(/fleet\.git$/, `${repoName}.git`);
  // A second Gitea user who may only read the repository, with a read-only token: what Flux reads with.
  const created = await giteaRequest(
    'POST',
    '/admin/users',
    {
      username: reader.user,
      password: reader.password,
      email: `${reader.user}@example.com`,
      must_change_password: false,
    },
    { dir: E2E_LAB_DIR },
  );
  assert.equal(created.status, 201, created.text);
  const collab = await giteaRequest(
    'PUT',
    `/repos/${lab().LAB_GITEA_OWNER}/${repoName}/collaborators/${reader.user}`,
    { permission: 'read' },
    { dir: E2E_LAB_DIR },
  );
  assert.equal(collab.status, 204, collab.text);
  reader.token = (
    await giteaAs(reader.user, reader.password, 'POST', `/users/${reader.user}/tokens`, {
      name: 'flux',
      scopes: ['read:repository'],
    })
  ).sha1;
  const ca = readFileSync(lab().LAB_CA_FILE, 'utf8');
  await secret(ns, 'git-push-https', {
    username: lab().LAB_GITEA_OWNER!,
    password: lab().LAB_GITEA_TOKEN!,
    'ca.crt': ca,
  });
  await secret(ns, 'git-read-https', { username: reader.user, password: reader.token, 'ca.crt': ca });
  await targetKubeconfigSecret(ns, name);
});
after(() => fluxStop({ dir: E2E_LAB_DIR }));

test(
  'an https repository is pushed with a token and the CA of the push Secret, and Flux reads it with read-only ' +
    'credentials of its own',
  async () => {
    await applyCB(suite.ns, name, {
      target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
      git: { url: httpsUrl, secretRef: { name: 'git-push-https' }, readSecretRef: { name: 'git-read-https' } },
      flux: { namespace: fluxNs },
    });
    await waitCondition(suite.ns, name, 'Applied', 'True', undefined, 120_000);
    const fluxSecret = await target().get<any>('v1', 'Secret', fluxNs, 'flux-system');
    const data = Object.fromEntries(
      Object.entries(fluxSecret.data as Record<string, string>).map(([k, v]) => [
        k,
        Buffer.from(v, 'base64').toString('utf8'),
      ]),
    );
    assert.equal(data.username, reader.user);
    assert.equal(data.password, reader.token, "Flux holds the reader's token");
    assert.notEqual(data.password, lab().LAB_GITEA_TOKEN, 'the push token never reaches the target');
    assert.match(data['ca.crt'], /BEGIN CERTIFICATE/);
    await fluxStart({ dir: E2E_LAB_DIR });
    const cb = await waitCondition(suite.ns, name, 'Ready', 'True', undefined, 240_000);
    assert.match(cb.status!.lastAppliedRevision!, /^main@sha1:/);
  },
);
