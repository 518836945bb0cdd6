import { createHash } from 'node:crypto';
import yaml from 'js-yaml';
import { componentsFor, type ComponentsOptions } from './components.ts';
import { renderKustomization, renderSync, type SyncOptions } from './sync.ts';
import { renderSopsConfig, type SopsRule } from './sops.ts';

/** ManifestFile is one file of the repository the operator owns: its path, and how to render it from what is there. */
export interface ManifestFile {
  path: string;
  render: (existing: string | undefined) => string;
}

/** FluxFilesOptions say which Flux to install and what it syncs with; `sync.path` is the cluster's folder. */
export interface FluxFilesOptions {
  flux: ComponentsOptions;
  sync: SyncOptions;
}

/**
 * fluxFiles renders `<path>/flux-system/{gotk-components,gotk-sync,kustomization}.yaml`, and `<path>/.sops.yaml`
 * with a SOPS rule. The first two are the operator's alone; kustomization.yaml and .sops.yaml keep what the user
 * added, and throw KustomizationError or SopsConfigError when the file in the repository cannot be read as one.
 */
export function fluxFiles(opts: FluxFilesOptions, sops?: SopsRule): ManifestFile[] {
  const dir = `${opts.sync.path}/flux-system`;
  const components = componentsFor(opts.flux);
  const sync = renderSync(opts.sync);
  return [
    { path: `${dir}/gotk-components.yaml`, render: () => components },
    { path: `${dir}/gotk-sync.yaml`, render: () => sync },
    { path: `${dir}/kustomization.yaml`, render: (existing) => renderKustomization(existing) },
    ...(sops ? [{ path: `${opts.sync.path}/.sops.yaml`, render: (e?: string) => renderSopsConfig(e, sops) }] : []),
  ];
}

/** ComponentObject is one object of Flux's install manifests, as JSON. */
export interface ComponentObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
}

const parsed = new Map<string, ComponentObject[]>();

/**
 * componentObjects parses the rendered gotk-components.yaml into objects, as Flux's install applies them. The
 * objects of the last few option sets are kept, frozen, and shared by every caller: a fleet on one set of options
 * parses them once, not once per cluster and pass.
 */
export function componentObjects(opts: ComponentsOptions): ComponentObject[] {
  const key = JSON.stringify(opts);
  let objects = parsed.get(key);
  if (!objects) {
    objects = deepFreeze((yaml.loadAll(componentsFor(opts)) as ComponentObject[]).filter((o) => o && o.kind));
    if (parsed.size >= 8) parsed.delete(parsed.keys().next().value!);
    parsed.set(key, objects);
  }
  return objects;
}

/** componentsDigest names the rendered components: the same digest, the same objects. */
export function componentsDigest(opts: ComponentsOptions): string {
  return `sha256:${createHash('sha256').update(componentsFor(opts)).digest('hex')}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
