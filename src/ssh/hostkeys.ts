import ssh2 from 'ssh2';
import { fingerprint } from './keys.ts';

/** HostKey is one key a git host offers, as a known_hosts entry. */
export interface HostKey {
  host: string;
  type: string;
  key: string;
}

/** SCAN_ALGORITHMS are asked one per connection, as ssh-keyscan does. */
const SCAN_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
];

/** knownHostsName is the host field of a known_hosts line: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** formatKnownHosts writes known_hosts lines, sorted, one per key. */
export function formatKnownHosts(keys: HostKey[]): string {
  return (
    keys
      .map((k) => `${k.host} ${k.type} ${k.key}`)
      .sort()
      .join('\n') + '\n'
  );
}

/** parseKnownHosts reads known_hosts lines, skipping comments, markers and hashed hosts it cannot match. */
export function parseKnownHosts(text: string): HostKey[] {
  const keys: HostKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('@')) continue;
    const [hosts, type, key] = line.split(/\s+/);
    if (!hosts || !type || !key) throw new Error(`known_hosts line is malformed: ${JSON.stringify(line.slice(0, 80))}`);
    for (const host of hosts.split(',')) keys.push({ host, type, key });
  }
  return keys;
}

/** hostKeyFingerprints returns `type SHA256:…` for each key, for status. */
export function hostKeyFingerprints(keys: HostKey[]): string[] {
  return keys.map((k) => `${k.type} ${fingerprint(Buffer.from(k.key, 'base64'))}`).sort();
}

/**
 * scanHostKeys asks a host for each key type it offers, like `ssh-keyscan`: one connection per algorithm,
 * the key captured in the host verifier and the connection refused there. It throws when the host does not
 * answer at all.
 */
export async function scanHostKeys(host: string, port: number, timeoutMs = 10_000): Promise<HostKey[]> {
  const name = knownHostsName(host, port);
  const results = await Promise.allSettled(SCAN_ALGORITHMS.map((alg) => scanOne(host, port, alg, timeoutMs)));
  const keys = new Map<string, HostKey>();
  const errors: Error[] = [];
  for (const r of results) {
    if (r.status === 'rejected') errors.push(r.reason as Error);
    else if (r.value) keys.set(`${r.value.type} ${r.value.key}`, { host: name, ...r.value });
  }
  if (keys.size === 0) throw new Error(`no host key from ${name}`, { cause: errors[0] });
  return [...keys.values()].sort((a, b) => a.type.localeCompare(b.type));
}

const recentScans = new Map<string, { at: number; keys: Promise<HostKey[]> }>();

/**
 * scanHostKeysShared is scanHostKeys with the answer shared for a short while: a fleet of ClusterBootstraps
 * on one git host reconciling together makes one scan, not one per resource. Failures are not kept.
 */
export function scanHostKeysShared(host: string, port: number, ttlMs = 30_000): Promise<HostKey[]> {
  const key = `${host}:${port}`;
  const hit = recentScans.get(key);
  if (hit && Date.now() - hit.at < ttlMs) return hit.keys;
  const keys = scanHostKeys(host, port);
  recentScans.set(key, { at: Date.now(), keys });
  keys.catch(() => recentScans.delete(key));
  return keys;
}

/**
 * forgetHostKeys drops a shared scan, so that the next look at the host scans it again (after git saw its key change).
 */
export function forgetHostKeys(host: string, port: number): void {
  recentScans.delete(`${host}:${port}`);
}

function scanOne(
  host: string,
  port: number,
  algorithm: string,
  timeoutMs: number,
): Promise<{ type: string; key: string } | undefined> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let captured: { type: string; key: string } | undefined;
    const finish = (err?: Error) => {
      client.end();
      if (captured) resolve(captured);
      else if (err && /no matching|handshake failed/i.test(err.message)) resolve(undefined);
      else reject(err ?? new Error(`${host}:${port} closed the connection`));
    };
    client.on('error', finish);
    client.on('close', () => finish());
    client.connect({
      host,
      port,
      username: 'keyscan',
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: [algorithm] as any },
      hostVerifier: (key: Buffer) => {
        captured = { type: key.subarray(4, 4 + key.readUInt32BE(0)).toString(), key: key.toString('base64') };
        return false;
      },
    });
  });
}

/**
 * compareHostKeys tells whether a scan agrees with the pinned keys: every pinned key type the host still
 * offers must be the same key, and at least one pinned key must be offered. New key types are fine.
 */
export function hostKeysChanged(pinned: HostKey[], scanned: HostKey[]): string | undefined {
  const offered = new Map(scanned.map((k) => [k.type, k.key]));
  let matched = 0;
  for (const p of pinned) {
    const now = offered.get(p.type);
    if (now === undefined) continue;
    if (now !== p.key)
      return (
        `host ${p.host} now offers ${p.type} ${fingerprint(Buffer.from(now, 'base64'))}, pinned ` +
        `${fingerprint(Buffer.from(p.key, 'base64'))}`
      );
    matched++;
  }
  return matched === 0
    ? `host offers none of the pinned host keys (${pinned.map((p) => p.type).join(', ')})`
    : undefined;
}
