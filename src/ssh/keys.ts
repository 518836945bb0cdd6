import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';

/** KeyPair is an OpenSSH private key and its `type base64` public line. */
export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

/** KeyOptions choose the algorithm of Flux's read key, as `flux bootstrap --ssh-key-algorithm` does. */
export interface KeyOptions {
  algorithm: 'ed25519' | 'ecdsa' | 'rsa';
  ecdsaCurve?: 'p256' | 'p384' | 'p521';
  rsaBits?: number;
  comment?: string;
}

const generate = promisify(ssh2.utils.generateKeyPair) as (
  type: string,
  opts: object,
) => Promise<{ private: string; public: string }>;
const CURVE_BITS = { p256: 256, p384: 384, p521: 521 } as const;

/**
 * generateKeyPair makes a new SSH key pair off the event loop (RSA 4096 takes most of a second). ssh2 1.17
 * drops the leading zero byte of an ed25519 public key — about one key in 256 comes out 31 bytes long, and
 * neither OpenSSH nor ssh2 can read it — so a key that does not parse back is made again.
 */
export async function generateKeyPair(opts: KeyOptions): Promise<KeyPair> {
  const params =
    opts.algorithm === 'rsa'
      ? { bits: opts.rsaBits ?? 4096 }
      : opts.algorithm === 'ecdsa'
        ? { bits: CURVE_BITS[opts.ecdsaCurve ?? 'p384'] }
        : {};
  for (let attempt = 1; ; attempt++) {
    const keys = await generate(opts.algorithm, { ...params, comment: opts.comment ?? '' });
    const [type, blob] = keys.public.trim().split(/\s+/);
    if (isPrivateKey(keys.private)) return { privateKey: keys.private, publicKey: `${type} ${blob}` };
    if (attempt >= 10) throw new Error(`ssh2 made ${attempt} unreadable ${opts.algorithm} keys in a row`);
  }
}

/** fingerprint returns OpenSSH's SHA256 fingerprint of a public key line or raw key blob. */
export function fingerprint(key: string | Buffer): string {
  const blob = typeof key === 'string' ? Buffer.from(key.trim().split(/\s+/)[1] ?? '', 'base64') : key;
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** isPrivateKey is true for a PEM or OpenSSH private key that ssh2 can parse. */
export function isPrivateKey(text: string): boolean {
  const parsed = ssh2.utils.parseKey(text);
  return !(parsed instanceof Error) && !Array.isArray(parsed) && parsed.isPrivateKey();
}
