import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { TargetClients } from '../../src/kube/targets.ts';
import { KubeconfigError } from '../../src/kube/kubeconfig.ts';

/** kubeconfig is an inline kubeconfig for a server, with extra user fields. */
const kubeconfig = (server: string, user: Record<string, unknown> = { token: 't' }) =>
  yaml.dump({
    clusters: [{ name: 'c', cluster: { server } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });

const dir = mkdtempSync(join(tmpdir(), 'kubetargets-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the same kubeconfig gets the same client, and a changed one a new client', () => {
  const targets = new TargetClients();
  const a = targets.get(kubeconfig('https://a.example:6443'));
  assert.equal(targets.get(kubeconfig('https://a.example:6443')), a);
  const rotated = targets.get(kubeconfig('https://a.example:6443', { token: 'rotated' }));
  assert.notEqual(rotated, a);
  assert.equal(a.server, 'https://a.example:6443');
});

test('a kubeconfig the operator refuses throws KubeconfigError and is not kept', () => {
  const targets = new TargetClients();
  assert.throws(() => targets.get(kubeconfig('https://a.example', { 'token-file': '/etc/shadow' })), KubeconfigError);
  assert.equal(targets.size, 0);
});

test('exec kubeconfigs are refused unless the operator allows them', () => {
  const exec = kubeconfig('https://a.example', {
    exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws' },
  });
  assert.throws(
    () => new TargetClients().get(exec),
    (err: unknown) => err instanceof KubeconfigError && err.field === 'users[0].user.exec',
  );
  assert.equal(new TargetClients({ allowExec: true }).get(exec).server, 'https://a.example');
});

test('no more clients are kept than the bound, and the least recently used goes first', () => {
  const targets = new TargetClients({ max: 2 });
  const [a, b, c] = ['https://a.example', 'https://b.example', 'https://c.example'].map((s) => kubeconfig(s));
  const first = targets.get(a);
  const second = targets.get(b);
  targets.get(a);
  targets.get(c);
  assert.equal(targets.size, 2);
  assert.equal(targets.get(a), first);
  assert.notEqual(targets.get(b), second);
});

test("no kubeconfig means the operator's own cluster, from the default loader, with the client options", () => {
  const file = join(dir, 'config');
  writeFileSync(file, kubeconfig('https://own.example:6443'));
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = file;
  try {
    const targets = new TargetClients({ client: { fieldManager: 'fm' } });
    const own = targets.get(undefined);
    assert.equal(own.server, 'https://own.example:6443');
    assert.equal(own.fieldManager, 'fm');
    assert.equal(targets.get(undefined), own);
  } finally {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  }
});

test('get works when passed on as a bare function', () => {
  const targets = new TargetClients();
  const get = targets.get;
  assert.equal(get(kubeconfig('https://a.example')).server, 'https://a.example');
});
