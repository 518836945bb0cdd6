import { ProviderError, type DeployKey, type DeployKeyProvider } from './types.ts';

/** KEY_TYPES are the OpenSSH public key types a deploy key may have. */
const KEY_TYPE = new RegExp(
  '^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|' +
    'sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com)$',
);

/**
 * keyMaterial is the `type base64` part of an OpenSSH public key line, the comment dropped: what makes two
 * keys the same key. Returns undefined for text that is no public key line.
 */
export function keyMaterial(line: string): string | undefined {
  const [type, blob] = line.trim().split(/\s+/);
  if (!type || !blob || !KEY_TYPE.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return undefined;
  return `${type} ${blob}`;
}

/** checkedKey is keyMaterial of a key about to be sent, or ProviderError `invalid`. */
export function checkedKey(publicKey: string): string {
  const key = keyMaterial(publicKey);
  if (!key)
    throw new ProviderError(
      'invalid',
      'the public key is not an OpenSSH `type base64` line (ssh-ed25519, ecdsa-sha2-nistp*, ssh-rsa)',
    );
  return key;
}

/** checkedTitle is a title with control characters turned to spaces, or ProviderError `invalid` when empty. */
export function checkedTitle(title: string): string {
  const clean = title.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (!clean) throw new ProviderError('invalid', 'a deploy key needs a title');
  return clean;
}

/** sameKey is true when two public key lines are the same key, whatever their comments. */
export function sameKey(a: string, b: string): boolean {
  const ka = keyMaterial(a);
  return ka !== undefined && ka === keyMaterial(b);
}

/**
 * ensureDeployKey makes `publicKey` a deploy key of the provider's repository, once: a key with the same
 * material already there is kept, whatever its title, and nothing is added. A key that turns up between the
 * listing and the add (another reconcile, a person) counts as there. A key someone registered with write
 * access is kept too; `key.readOnly` tells the caller.
 */
export async function ensureDeployKey(
  provider: DeployKeyProvider,
  title: string,
  publicKey: string,
): Promise<{ key: DeployKey; created: boolean }> {
  const material = checkedKey(publicKey);
  const found = (keys: DeployKey[]) => keys.find((k) => keyMaterial(k.key) === material);
  const existing = found(await provider.list());
  if (existing) return { key: existing, created: false };
  try {
    return { key: await provider.add(title, material), created: true };
  } catch (err) {
    if (!(err instanceof ProviderError) || err.kind !== 'conflict') throw err;
    const raced = found(await provider.list());
    if (raced) return { key: raced, created: false };
    throw err;
  }
}

/**
 * removeDeployKeys removes the deploy keys that match every criterion given — `title` exactly, `publicKey`
 * by key material — and returns them. With no criterion it removes nothing: it never empties a repository.
 */
export async function removeDeployKeys(
  provider: DeployKeyProvider,
  match: { title?: string; publicKey?: string },
): Promise<DeployKey[]> {
  if (match.title === undefined && match.publicKey === undefined) return [];
  const material = match.publicKey === undefined ? undefined : checkedKey(match.publicKey);
  const doomed = (await provider.list()).filter(
    (k) =>
      (match.title === undefined || k.title === match.title) &&
      (material === undefined || keyMaterial(k.key) === material),
  );
  for (const k of doomed) await provider.remove(k.id);
  return doomed;
}
