import { Reasons } from '../api/conditions.ts';
import { PhaseError } from '../api/errors.ts';
import type { ClusterBootstrap } from '../api/types.ts';
import type { IdentityStore, KubeApi, StoredIdentity } from '../phases/context.ts';
import type { Identity, SopsKeys } from '../phases/types.ts';
import { isPrivateKey, type KeyPair } from '../ssh/keys.ts';
import { KubeError } from './client.ts';
import { decodeSecret, encodeSecret, ownerReference } from './objects.ts';

/** identitySecretName names the management-cluster Secret that holds a ClusterBootstrap's Flux identity. */
export const identitySecretName = (name: string) => `${name}-flux-identity`;

/** CREATED_AT is the identity Secret's annotation of when its current key was made. */
const CREATED_AT = 'fluxbootstrap.dev/created-at';
/** ALGORITHM is the identity Secret's annotation of the algorithm its first key was made with. */
const ALGORITHM = 'fluxbootstrap.dev/algorithm';

/**
 * KEYS is the layout of the identity Secret: Flux's current key pair, the host keys pinned on the first
 * scan, and a rotation's state — the next key pair until Flux is switched to it, then the public key it
 * replaced, when the switch happened and the annotation value that asked for it.
 */
const KEYS = {
  privateKey: 'identity',
  publicKey: 'identity.pub',
  knownHosts: 'known_hosts',
  nextPrivateKey: 'next.identity',
  nextPublicKey: 'next.identity.pub',
  previousPublicKey: 'previous.identity.pub',
  switchedAt: 'rotation.switchedAt',
  requestedAt: 'rotation.requestedAt',
  sopsKey: 'sops.agekey',
  sopsPrevious: 'sops.previous.agekey',
  sopsRequestedAt: 'sops.requestedAt',
} as const;

/**
 * SecretIdentityStore keeps the identity of one ClusterBootstrap in Secret `<name>-flux-identity` of its
 * namespace, owned by it; see IdentityStore.
 */
export class SecretIdentityStore implements IdentityStore {
  readonly secretName: string;
  readonly #kube: KubeApi;
  readonly #cb: ClusterBootstrap;

  constructor(kube: KubeApi, cb: ClusterBootstrap) {
    this.#kube = kube;
    this.#cb = cb;
    this.secretName = identitySecretName(cb.metadata.name);
  }

  async read(): Promise<StoredIdentity | undefined> {
    const secret = await this.#kube.get('v1', 'Secret', this.#cb.metadata.namespace, this.secretName);
    return secret ? this.#identityOf(secret) : undefined;
  }

  async create(keys: KeyPair, algorithm: string, at: string): Promise<StoredIdentity> {
    const cb = this.#cb;
    try {
      const secret: any = await this.#kube.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: this.secretName,
          namespace: cb.metadata.namespace,
          labels: { 'app.kubernetes.io/managed-by': 'flux-bootstrap-operator' },
          annotations: { [ALGORITHM]: algorithm, [CREATED_AT]: at },
          ownerReferences: [ownerReference(cb)],
        },
        type: 'Opaque',
        stringData: { [KEYS.privateKey]: keys.privateKey, [KEYS.publicKey]: keys.publicKey },
      });
      // An API server answers a create with data, not stringData.
      return this.#identityOf(secret.data ? secret : { ...secret, data: encodeSecret(secret.stringData ?? {}) });
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
      const winner = await this.read();
      if (!winner) throw err;
      return winner;
    }
  }

  async pinKnownHosts(knownHosts: string): Promise<void> {
    await this.#patch({ data: { [KEYS.knownHosts]: Buffer.from(knownHosts).toString('base64') } });
  }

  async beginRotation(current: StoredIdentity, next: KeyPair, requestedAt: string): Promise<StoredIdentity> {
    return this.#guarded(current, {
      stringData: {
        [KEYS.nextPrivateKey]: next.privateKey,
        [KEYS.nextPublicKey]: next.publicKey,
        [KEYS.requestedAt]: requestedAt,
      },
    });
  }

  async storeSops(current: StoredIdentity, sops: SopsKeys): Promise<StoredIdentity> {
    const set = {
      [KEYS.sopsKey]: sops.key,
      [KEYS.sopsPrevious]: sops.previous,
      [KEYS.sopsRequestedAt]: sops.requestedAt,
    };
    return this.#guarded(current, {
      stringData: Object.fromEntries(Object.entries(set).filter(([, v]) => v !== undefined)),
      data: Object.fromEntries(Object.entries(set).flatMap(([k, v]) => (v === undefined ? [[k, null]] : []))),
    });
  }

  /** #guarded patches the Secret only if it is still at `current`'s version; on a conflict the winner is returned. */
  async #guarded(current: StoredIdentity, patch: Record<string, unknown>): Promise<StoredIdentity> {
    try {
      return this.#identityOf(await this.#patch({ ...patch, metadata: { resourceVersion: current.resourceVersion } }));
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
      const winner = await this.read();
      if (!winner) throw err;
      return winner;
    }
  }

  async switchToNext(identity: Identity, at: string): Promise<void> {
    const next = identity.next!;
    await this.#patch({
      metadata: { annotations: { [CREATED_AT]: at } },
      stringData: {
        [KEYS.privateKey]: next.privateKey,
        [KEYS.publicKey]: next.publicKey,
        [KEYS.previousPublicKey]: identity.publicKey,
        [KEYS.switchedAt]: at,
      },
      data: { [KEYS.nextPrivateKey]: null, [KEYS.nextPublicKey]: null },
    });
  }

  async retirePrevious(): Promise<void> {
    await this.#patch({ data: { [KEYS.previousPublicKey]: null, [KEYS.switchedAt]: null, [KEYS.requestedAt]: null } });
  }

  async allKeys(): Promise<string[]> {
    const secret = await this.#kube.get('v1', 'Secret', this.#cb.metadata.namespace, this.secretName);
    const data = decodeSecret(secret);
    return [data[KEYS.publicKey], data[KEYS.nextPublicKey], data[KEYS.previousPublicKey]]
      .map((k) => k?.trim())
      .filter((k): k is string => !!k);
  }

  #patch(patch: unknown): Promise<any> {
    return this.#kube.mergePatch('v1', 'Secret', this.#cb.metadata.namespace, this.secretName, patch);
  }

  #identityOf(secret: any): StoredIdentity {
    const data = decodeSecret(secret);
    if (!data[KEYS.privateKey] || !data[KEYS.publicKey] || !isPrivateKey(data[KEYS.privateKey]))
      throw new PhaseError(
        Reasons.InternalError,
        `Secret ${this.secretName} does not hold a usable SSH key pair (identity, identity.pub); ` +
          'delete it to have a new key generated',
      );
    const next = data[KEYS.nextPrivateKey] && data[KEYS.nextPublicKey];
    return {
      secretName: this.secretName,
      privateKey: data[KEYS.privateKey],
      publicKey: data[KEYS.publicKey].trim(),
      knownHosts: data[KEYS.knownHosts] || undefined,
      next: next ? { privateKey: data[KEYS.nextPrivateKey], publicKey: data[KEYS.nextPublicKey].trim() } : undefined,
      previous: data[KEYS.previousPublicKey]?.trim() || undefined,
      switchedAt: data[KEYS.switchedAt] || undefined,
      rotationRequest: data[KEYS.requestedAt] || undefined,
      sops: data[KEYS.sopsKey]
        ? {
            key: data[KEYS.sopsKey].trim(),
            previous: data[KEYS.sopsPrevious]?.trim() || undefined,
            requestedAt: data[KEYS.sopsRequestedAt] || undefined,
          }
        : undefined,
      createdAt: secret.metadata?.annotations?.[CREATED_AT] ?? secret.metadata?.creationTimestamp,
      resourceVersion: secret.metadata?.resourceVersion,
    };
  }
}
