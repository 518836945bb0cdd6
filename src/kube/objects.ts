/** ownerReference makes a management-cluster object belong to its owner, so that it goes when the owner goes. */
export function ownerReference(owner: { apiVersion: string; kind: string; metadata: { name: string; uid: string } }) {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** decodeSecret returns a Secret's data as UTF-8 strings. */
export function decodeSecret(secret: { data?: Record<string, string> } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret?.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}
