import { generateX25519Identity, identityToRecipient } from 'age-encryption';

/** AgeKey is one age X25519 key: the private half (`AGE-SECRET-KEY-…`) and its recipient (`age1…`). */
export interface AgeKey {
  identity: string;
  recipient: string;
}

/** AGE_IDENTITY is an age X25519 private key as age-keygen writes it. */
const AGE_IDENTITY = /^AGE-SECRET-KEY-[1][02-9AC-HJ-NP-Z]{58}$/;

/** generateAgeKey makes a new age X25519 key pair (age-encryption, by age's author). */
export async function generateAgeKey(): Promise<AgeKey> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

/** ageKeyOf reads a stored private key back into a key pair; undefined when it is not one. */
export async function ageKeyOf(identity: string | undefined): Promise<AgeKey | undefined> {
  const key = identity?.trim();
  if (!key || !AGE_IDENTITY.test(key)) return undefined;
  return { identity: key, recipient: await identityToRecipient(key) };
}
