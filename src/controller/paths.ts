import { ConditionTypes, findCondition, Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import type { ClusterBootstrap } from '../api/types.ts';
import { validate, type Policy } from '../api/validate.ts';

interface Entry {
  cb: ClusterBootstrap;
  generation?: number;
  key?: string;
}

/**
 * PathIndex knows which ClusterBootstraps claim which repository, branch and path, from the informer's
 * events: a conflict check looks up one key instead of validating every other ClusterBootstrap (which made
 * each resync O(N²) at fleet size). A spec is validated once per generation.
 */
export class PathIndex {
  readonly #policy?: Policy;
  readonly #byUid = new Map<string, Entry>();
  readonly #byKey = new Map<string, Set<string>>();

  constructor(policy?: Policy) {
    this.#policy = policy;
  }

  /** upsert records a ClusterBootstrap as the informer (or a reconcile) last saw it. */
  upsert(cb: ClusterBootstrap): void {
    const uid = cb.metadata.uid;
    const entry = this.#byUid.get(uid);
    if (entry && entry.generation === cb.metadata.generation) {
      entry.cb = cb;
      return;
    }
    if (entry) this.remove(cb);
    let key: string | undefined;
    try {
      const { git } = validate(cb, this.#policy);
      key = `${git.url}|${git.branch}|${git.path}`;
    } catch {
      // An invalid spec claims no path.
    }
    this.#byUid.set(uid, { cb, generation: cb.metadata.generation, key });
    if (key) this.#byKey.set(key, (this.#byKey.get(key) ?? new Set()).add(uid));
  }

  /** remove forgets a ClusterBootstrap (deleted, or being deleted). */
  remove(cb: ClusterBootstrap): void {
    const entry = this.#byUid.get(cb.metadata.uid);
    if (!entry) return;
    this.#byUid.delete(cb.metadata.uid);
    const uids = entry.key ? this.#byKey.get(entry.key) : undefined;
    uids?.delete(cb.metadata.uid);
    if (entry.key && uids?.size === 0) this.#byKey.delete(entry.key);
  }

  /**
   * check throws PathConflict when another ClusterBootstrap holds cb's repository, branch and path. The
   * holder is the one that has proven it can write there (Committed at its current generation), the oldest
   * such first; while none has, the oldest in cb's own namespace. A ClusterBootstrap in another namespace that
   * never committed there blocks nobody — a tenant cannot squat another's path with a guessed URL — and
   * another namespace's object is never named.
   */
  check(cb: ClusterBootstrap): void {
    const key = this.#byUid.get(cb.metadata.uid)?.key;
    if (!key) return;
    const mine = proven(cb);
    for (const uid of this.#byKey.get(key) ?? []) {
      const other = this.#byUid.get(uid)!.cb;
      if (uid === cb.metadata.uid || other.metadata.deletionTimestamp) continue;
      const sameNamespace = other.metadata.namespace === cb.metadata.namespace;
      const theirs = proven(other);
      if (!theirs && !sameNamespace) continue;
      if (theirs !== mine ? !theirs : order(other) >= order(cb)) continue;
      const [url, branch, path] = key.split('|');
      const who = sameNamespace ? `ClusterBootstrap ${other.metadata.name}` : 'a ClusterBootstrap in another namespace';
      throw new PhaseError(
        Reasons.PathConflict,
        `${who} already bootstraps ${path} on ${branch} of ${url}: choose another spec.git.path`,
      );
    }
  }

  /** size is how many ClusterBootstraps are indexed. */
  get size(): number {
    return this.#byUid.size;
  }
}

/** proven is true when a ClusterBootstrap has committed at its current spec's path: it holds write access there. */
function proven(cb: ClusterBootstrap): boolean {
  const committed = findCondition(cb.status?.conditions, ConditionTypes.Committed);
  return committed?.status === 'True' && committed.observedGeneration === cb.metadata.generation;
}

const order = (x: ClusterBootstrap) => `${x.metadata.creationTimestamp}|${x.metadata.namespace}/${x.metadata.name}`;
