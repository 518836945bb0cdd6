import { test } from 'node:test';
import assert from 'node:assert/strict';
import yaml from 'js-yaml';
import { ROTATE_SOPS_AT } from '../../src/api/types.ts';
import { ensureSopsKey } from '../../src/phases/sops.ts';
import { renderSopsConfig } from '../../src/manifests/sops.ts';
import { ageKeyOf, generateAgeKey } from '../../src/sops/keys.ts';
import { annotate, condition, contextOf, registerKey, secretOf, world, type World } from './fakes.ts';

const SOPS_YAML = 'clusters/prod/.sops.yaml';
const identity = (w: World) => secretOf(w.mgmt, 'team', 'prod-flux-identity');
const targetKeys = (w: World) => secretOf(w.target, 'flux-system', 'sops-age');
const rule = (w: World) => (yaml.load(w.git.files.get(SOPS_YAML)!) as any).creation_rules[0];

/** ready bootstraps a ClusterBootstrap with spec.sops, its key registered by a person, Flux running. */
async function ready(sops: Record<string, unknown> = { enabled: true }): Promise<World> {
  const w = await world({ sops } as any);
  w.flux.running = true;
  await w.reconcile();
  registerKey(w);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.status, 'True', condition(w, 'Ready')?.message);
  return w;
}

/** everything is every string the world shows people: status, Events and the repository's files. */
function everything(w: World): string {
  return JSON.stringify([w.cb().status, w.events, [...w.git.files.values()]]);
}

test('spec.sops makes one age key: kept in the identity Secret, given to Flux, its recipient committed and shown', async () => {
  const extra = (await generateAgeKey()).recipient;
  const w = await ready({ enabled: true, extraRecipients: [extra] });
  const key = await ageKeyOf(identity(w)['sops.agekey']);
  assert.ok(key, 'the identity Secret holds an age key');
  assert.equal(w.cb().status?.sops?.recipient, key.recipient);
  assert.equal(w.cb().status?.sops?.secretName, 'sops-age');
  assert.equal(targetKeys(w)['age.agekey'].trim(), key.identity, "the target's sops-age holds the private key");
  assert.deepEqual(rule(w), {
    path_regex: '\\.(ya?ml|json)$',
    encrypted_regex: '^(data|stringData)$',
    age: `${key.recipient},${extra}`,
  });
  const sync = yaml.loadAll(w.git.files.get('clusters/prod/flux-system/gotk-sync.yaml')!) as any[];
  assert.deepEqual(sync.find((o) => o.kind === 'Kustomization').spec.decryption, {
    provider: 'sops',
    secretRef: { name: 'sops-age' },
  });
  const live = w.target.read('Kustomization', 'flux-system', 'flux-system');
  assert.equal(live.spec.decryption.secretRef.name, 'sops-age', 'the applied Kustomization decrypts too');
  assert.doesNotMatch(everything(w), /AGE-SECRET-KEY/, 'the private key is in no status, Event or file');
  const commits = w.git.commits;
  w.restart();
  await w.reconcile();
  assert.equal(identity(w)['sops.agekey'], key.identity, 'a restarted operator makes no second key');
  assert.equal(w.git.commits, commits, 'and commits nothing');
});

test('two reconciles racing for the first age key end with one: the guarded write lets one win', async () => {
  const w = await world();
  await w.reconcile(); // the SSH identity, no age key yet
  const cb = w.cb();
  w.mgmt.put({ ...cb, spec: { ...cb.spec, sops: { enabled: true } } });
  const id = (await contextOf(w).identity.read())!;
  assert.equal(id.sops, undefined);
  const [a, b] = await Promise.all([ensureSopsKey(contextOf(w), id), ensureSopsKey(contextOf(w), id)]);
  assert.equal(a.result?.current.identity, b.result?.current.identity);
  assert.equal(identity(w)['sops.agekey'], a.result?.current.identity);
});

test('without spec.sops nothing of SOPS is made, committed or applied', async () => {
  const w = await ready({});
  assert.equal(identity(w)['sops.agekey'], undefined);
  assert.equal(w.git.files.get(SOPS_YAML), undefined);
  assert.equal(w.target.read('Secret', 'flux-system', 'sops-age'), undefined);
  assert.equal(w.cb().status?.sops, undefined);
});

test("the operator's rule goes first in a person's .sops.yaml; their rules and comments stay", async () => {
  const key = await generateAgeKey();
  const mine = (await generateAgeKey()).recipient;
  const existing = `# team rules\ncreation_rules:\n  # apps\n  - path_regex: apps/.*\n    age: ${mine}\n`;
  const out = renderSopsConfig(existing, { recipients: [key.recipient], owned: [key.recipient], cluster: 'team/prod' });
  assert.match(out, /# team rules/);
  assert.match(out, /# apps/);
  const rules = (yaml.load(out) as any).creation_rules;
  assert.equal(rules.length, 2);
  assert.equal(rules[0].age, key.recipient);
  assert.equal(rules[1].age, mine);
  const again = renderSopsConfig(out, { recipients: [key.recipient], owned: [key.recipient], cluster: 'team/prod' });
  assert.equal(again, out, 'an unchanged rule leaves the file byte for byte');
});

test('a .sops.yaml the operator cannot keep is reported, not overwritten', async () => {
  for (const [given, text] of [
    ['not YAML', 'creation_rules: [\n'],
    ['an alias bomb', `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [${'*a,'.repeat(9)}*a]\nc: [${'*b,'.repeat(9)}*b]\n`],
    ['rules that are not a list', 'creation_rules: {}\n'],
  ]) {
    const w = await world({ sops: { enabled: true } } as any);
    w.git.files.set(SOPS_YAML, text);
    await w.reconcile();
    registerKey(w);
    await w.reconcile();
    assert.equal(condition(w, 'Committed')?.reason, 'SopsConfigInvalid', given);
    assert.equal(w.git.files.get(SOPS_YAML), text, `${given}: the file is left as it was`);
  }
});

test('spec.sops.extraRecipients must be age public keys', async () => {
  const w = await world({ sops: { enabled: true, extraRecipients: ['AGE-SECRET-KEY-QQQ'] } } as any);
  await w.reconcile();
  assert.equal(condition(w, 'Ready')?.reason, 'InvalidSpec');
  assert.match(condition(w, 'Ready')?.message ?? '', /holds an age private key/);
  assert.doesNotMatch(condition(w, 'Ready')?.message ?? '', /AGE-SECRET-KEY-QQQ/);
});

test(
  'a rotation keeps the old key in the target until no file is encrypted for it, then retires it; a restart ' +
    'at any step makes no second key',
  async () => {
    const w = await ready();
    const old = (await ageKeyOf(identity(w)['sops.agekey']))!;
    // A Secret encrypted for the cluster's key, as sops writes its metadata.
    w.git.files.set(
      'clusters/prod/apps/db.yaml',
      `data: {password: ENC[x]}\nsops:\n  age:\n    - recipient: ${old.recipient}\n`,
    );
    annotate(w, ROTATE_SOPS_AT, '2026-12-07T10:00:00Z');
    w.restart();
    await w.reconcile();
    const next = (await ageKeyOf(identity(w)['sops.agekey']))!;
    assert.notEqual(next.recipient, old.recipient, 'a new key is current');
    assert.equal(identity(w)['sops.previous.agekey'], old.identity, 'the old one is kept');
    assert.equal(targetKeys(w)['age.agekey'].trim(), next.identity);
    assert.equal(targetKeys(w)['previous.agekey'].trim(), old.identity, 'the target decrypts with both');
    assert.equal(rule(w).age, next.recipient, '.sops.yaml encrypts for the new key alone');
    assert.deepEqual(w.cb().status?.sops?.pendingFiles, ['clusters/prod/apps/db.yaml']);
    assert.equal(w.cb().status?.sops?.previousRecipient, old.recipient);
    assert.equal(condition(w, 'Ready')?.status, 'True', 'a rotation under way is no failure');
    assert.ok(w.events.some((e) => e.reason === 'SopsRotationStarted'));

    w.restart();
    await w.reconcile();
    assert.equal(identity(w)['sops.agekey'], next.identity, 'a restarted operator resumes the same rotation');
    assert.equal(targetKeys(w)['previous.agekey'].trim(), old.identity, 'the file still needs the old key');

    // `sops updatekeys` re-encrypts the file for the new key.
    w.git.files.set(
      'clusters/prod/apps/db.yaml',
      w.git.files.get('clusters/prod/apps/db.yaml')!.replace(old.recipient, next.recipient),
    );
    w.restart();
    await w.reconcile();
    assert.equal(identity(w)['sops.previous.agekey'], undefined, 'the old key leaves the identity Secret');
    assert.deepEqual(Object.keys(targetKeys(w)), ['age.agekey'], 'the target holds one key');
    assert.equal(w.cb().status?.lastHandledSopsRotateAt, '2026-12-07T10:00:00Z');
    assert.equal(w.cb().status?.sops?.previousRecipient, undefined);
    assert.ok(w.events.some((e) => e.reason === 'SopsKeyRotated'));

    w.restart();
    await w.reconcile();
    assert.equal(identity(w)['sops.agekey'], next.identity, 'the handled annotation starts no second rotation');
    assert.doesNotMatch(everything(w), /AGE-SECRET-KEY/);
  },
);
