import semver from 'semver';

/**
 * resolveVersion turns spec.flux.version into the Flux version to install: an exact version (`v2.9.4` or
 * `2.9.4`) must be one of `available`; a semver range (`2.9.x`, `~2.9`, `>=2.9.0 <2.11.0`, `2.x`) resolves to the
 * newest available version it matches, so a cluster follows the range as versions are added. It returns
 * undefined when nothing matches (or the text is neither), for the caller to report with what is available.
 */
export function resolveVersion(wanted: string, available: string[]): string | undefined {
  const bare = available.map((v) => v.replace(/^v/, ''));
  const exact = semver.valid(wanted.trim().replace(/^v/, ''));
  if (exact) return bare.includes(exact) ? `v${exact}` : undefined;
  const range = semver.validRange(wanted.trim());
  if (!range) return undefined;
  const best = semver.maxSatisfying(bare, range);
  return best ? `v${best}` : undefined;
}

/** newestVersion is the newest of the available versions. */
export function newestVersion(available: string[]): string {
  return [...available].sort((a, b) => semver.compare(a.replace(/^v/, ''), b.replace(/^v/, ''))).at(-1)!;
}
