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

/**
 * ensureBinaries builds (or finds in the cache) the six binaries and links them into `<dir>/bin`. Returns that folder.
 */
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
  // helm is built only on demand (ensureHelm); once it is in the cache, every lab links it too.
  const helm = await mod.cachedBinary(mod.HELM_BUILD, { log });
  if (helm) linkInto(bin, 'helm', helm);
  return bin;
}

/** linkInto points `<bin>/<name>` at target, atomically (a new link renamed over the old), so racing callers agree. */
function linkInto(bin: string, name: string, target: string): void {
  const tmp = path.join(bin, `.${name}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
  fs.symlinkSync(path.resolve(target), tmp);
  fs.renameSync(tmp, path.join(bin, name));
}

/**
 * ensureHelm builds helm (v3.22.0, test/lab/go/helm) or finds it in the cache, and links it into `<dir>/bin`
 * (LAB_BIN) whether or not that lab is up. Returns the link. lab:up does not build it: the chart's tests call this.
 */
export async function ensureHelm(opts: LabOptions = {}): Promise<string> {
  const bin = path.join(labDir(opts), 'bin');
  const mod = await import('./build.ts');
  const target = await mod.ensureHelm({ log: logger(opts) });
  fs.mkdirSync(bin, { recursive: true });
  linkInto(bin, 'helm', target);
  return path.join(bin, 'helm');
}
