/**
 * The binaries the lab runs, built (or found in the cache) by build.ts and linked into `<dir>/bin`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { labDir, logger, type LabOptions } from './env.ts';

/** BINARIES are the binaries the lab runs; `LAB_BIN` holds a link to each. */
export const BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kubectl',
  'source-controller',
  'kustomize-controller',
] as const;
/** BinaryName is one of BINARIES. */
export type BinaryName = (typeof BINARIES)[number];

/** ensureBinaries builds (or finds in the cache) the six binaries and links them into `<dir>/bin`. Returns that folder. */
export async function ensureBinaries(opts: LabOptions = {}): Promise<string> {
  const dir = labDir(opts);
  const log = logger(opts);
  const mod = await import('./build.ts');
  const paths: Record<string, string> = await mod.ensureLabBinaries({ log });
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const name of BINARIES) {
    const target = paths[name];
    if (!target || !fs.existsSync(target)) throw new Error(`ensureLabBinaries gave no ${name} (${target})`);
    const link = path.join(bin, name);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.resolve(target), link);
  }
  return bin;
}
