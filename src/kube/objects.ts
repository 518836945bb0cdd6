/** ownerReference makes a management-cluster object belong to its owner, so that it goes when the owner goes. */
export function ownerReference(owner: { apiVersion: string; kind: string; metadata: { name: string; uid: string } }) {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name,
    uid: owner.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** decodeSecret returns a Secret's data as UTF-8 strings. */
export function decodeSecret(secret: { data?: Record<string, string> } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret?.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

/** encodeSecret returns strings as a Secret's base64 data. */
export function encodeSecret(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
}

/**
 * mergePatchOf is the JSON merge patch (RFC 7386) that turns `before` into `after`: what changed, and null for
 * every key that is gone — so that a status field the operator no longer sets is removed, not kept.
 */
export function mergePatchOf(before: unknown, after: unknown): unknown {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) return after === undefined ? null : after;
  const patch: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (after[key] === undefined) {
      if (before[key] !== undefined) patch[key] = null;
    } else if (JSON.stringify(before[key]) !== JSON.stringify(after[key]))
      patch[key] = mergePatchOf(before[key], after[key]);
  }
  return patch;
}
