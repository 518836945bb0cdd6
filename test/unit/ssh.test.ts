import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, fingerprint, isPrivateKey } from '../../src/ssh/keys.ts';
import { formatKnownHosts, hostKeysChanged, knownHostsName, parseKnownHosts } from '../../src/ssh/hostkeys.ts';

const cases = [
  { algorithm: 'ed25519', type: 'ssh-ed25519' },
  { algorithm: 'ecdsa', ecdsaCurve: 'p256', type: 'ecdsa-sha2-nistp256' },
  { algorithm: 'ecdsa', ecdsaCurve: 'p521', type: 'ecdsa-sha2-nistp521' },
  { algorithm: 'rsa', rsaBits: 2048, type: 'ssh-rsa' },
] as const;

for (const c of cases) {
  test(`a generated ${c.type} key pair is accepted by OpenSSH, with the fingerprint ssh-keygen computes`, async () => {
    const keys = await generateKeyPair(c);
    assert.ok(keys.publicKey.startsWith(`${c.type} AAAA`));
    assert.ok(isPrivateKey(keys.privateKey));
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    writeFileSync(join(dir, 'id'), keys.privateKey, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', join(dir, 'id')], { encoding: 'utf8' })
      .trim()
      .split(' ')
      .slice(0, 2)
      .join(' ');
    assert.equal(derived, keys.publicKey);
    const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'id')], { encoding: 'utf8' }).split(
      ' ',
    )[1];
    assert.equal(fingerprint(keys.publicKey), fp);
  });
}

test('every generated ed25519 key is readable, including those whose public key starts with a zero byte', async () => {
  // ssh2 alone gets about one in 256 wrong; 1000 keys meet such a case with a chance of about 98%.
  for (let i = 0; i < 1000; i++) {
    const keys = await generateKeyPair({ algorithm: 'ed25519' });
    assert.ok(isPrivateKey(keys.privateKey), keys.publicKey);
    assert.equal(Buffer.from(keys.publicKey.split(' ')[1], 'base64').length, 51, `a 32-byte key: ${keys.publicKey}`);
  }
});

test('a public key is not taken for a private key', async () => {
  const keys = await generateKeyPair({ algorithm: 'ed25519' });
  assert.equal(isPrivateKey(keys.publicKey), false);
  assert.equal(isPrivateKey('garbage'), false);
});

test('known_hosts names a host off port 22 as [host]:port', () => {
  assert.equal(knownHostsName('github.com', 22), 'github.com');
  assert.equal(knownHostsName('127.0.0.1', 2222), '[127.0.0.1]:2222');
});

test('known_hosts round-trips through parse and format', () => {
  const text = '[h]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n[h]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNh\n';
  assert.equal(
    formatKnownHosts(parseKnownHosts(`# comment\n${text}`)),
    text.split('\n').filter(Boolean).sort().join('\n') + '\n',
  );
  assert.throws(() => parseKnownHosts('lonely-host'), /malformed/);
});

test('a host key that changed is told apart from a host that only added a key type', () => {
  const pinned = [{ host: 'h', type: 'ssh-ed25519', key: 'AAAA' }];
  assert.equal(
    hostKeysChanged(pinned, [
      { host: 'h', type: 'ssh-ed25519', key: 'AAAA' },
      { host: 'h', type: 'ssh-rsa', key: 'BBBB' },
    ]),
    undefined,
  );
  assert.match(
    hostKeysChanged(pinned, [{ host: 'h', type: 'ssh-ed25519', key: 'CCCC' }]) ?? '',
    /now offers ssh-ed25519/,
  );
  assert.match(hostKeysChanged(pinned, [{ host: 'h', type: 'ssh-rsa', key: 'BBBB' }]) ?? '', /none of the pinned/);
});
