/**
 * flux-manifests renders Flux's install manifests for a version from source, as Flux's own release does, and
 * writes them where the operator ships them:
 *
 *   npm run flux:manifests -- v2.9.5 [--out DIR] [--stand-in <controller>@<version>]…
 *                                                     (default DIR: src/manifests/flux/<version>)
 *
 * The steps are those of flux2's release (.github/workflows/release.yaml in its module): the controllers' release
 * assets, `manifests/scripts/bundle.sh` (the manifests `flux` embeds), then `flux install --export` with
 * `--components-extra=image-reflector-controller,image-automation-controller` (pkg/manifestgen/install) into
 * gotk-components.yaml. Every input is a Go module, fetched with `go mod download` into the Go module cache:
 *
 * - flux2's `manifests/` from `github.com/fluxcd/flux2/v2@<version>`;
 * - each controller's `<controller>.crds.yaml` and `.deployment.yaml`, which flux2's bases fetch from GitHub
 *   releases, rebuilt from the controller's own module at the version the bases pin, as the controllers' release
 *   workflow (fluxcd/gha-workflows controller-release.yaml) builds them: `kustomize build config/crd` and
 *   `kustomize build config/manager`.
 *
 * A controller module the Go module proxy does not serve at the pinned version stops the rendering, unless a
 * `--stand-in <controller>@<earlier patch version>` is given (used only when the module cannot be fetched): then its assets are built from that version's
 * config/ with the pinned image tag, and only if the controller's api module (what its CRDs are generated from) is
 * the same at both versions. The summary line says which controllers were built so; SHIPPED_STAND_INS records
 * those the shipped versions were rendered with.
 *
 * kustomize is the lab's (KUSTOMIZE_BUILD, built once and cached). source-watcher.yaml holds source-watcher's
 * objects as `flux install` renders them when source-watcher is one of the components (the release's
 * gotk-components.yaml leaves it out): its CRD, ServiceAccount, Service and Deployment.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { DEFAULT_COMPONENTS, EXTRA_COMPONENTS } from '../src/manifests/components.ts';
import { ensureKustomize, goModDownload, type GoModule } from './lab/build.ts';

/** FLUX_MODULE is the Go module of flux2 (the CLI, and the `manifests/` its release builds from). */
export const FLUX_MODULE = 'github.com/fluxcd/flux2/v2';

/** RELEASE_COMPONENTS are the components of the release's gotk-components.yaml (all but source-watcher). */
export const RELEASE_COMPONENTS = [...DEFAULT_COMPONENTS, ...EXTRA_COMPONENTS.filter((c) => c !== 'source-watcher')];

/**
 * INSTALL_TEMPLATES are the sha256 of the templates of `flux install` (the raw strings of flux2's
 * pkg/manifestgen/install/templates.go) that installOverlay follows: those of v2.9.3 to v2.9.5. A version with
 * other templates is refused until installOverlay is checked against them and their sha256 added here.
 */
const INSTALL_TEMPLATES = new Set(['71f8d9501ef67bd84557b78e6712eac5a4fb978131b0ea96f9b5c53c6f58fcf4']);

/**
 * SHIPPED_STAND_INS are the stand-ins the shipped versions were rendered with (the Go module proxy here does not
 * serve these controllers at the versions Flux pins), used when the command line gives none for that version, so
 * `npm run flux:manifests -- <version>` reproduces what ships. Where the modules can be fetched, the stand-ins are
 * not used: the integration test then checks that the real modules render what ships.
 */
export const SHIPPED_STAND_INS: Record<string, Record<string, string>> = {
  'v2.9.5': {
    'notification-controller': 'v1.9.3',
    'image-reflector-controller': 'v1.2.4',
    'image-automation-controller': 'v1.2.4',
    'source-watcher': 'v2.2.3',
  },
};

/** A release asset URL of flux2's bases: https://github.com/fluxcd/<controller>/releases/download/<v>/<file>. */
const RELEASE_ASSET =
  /^https:\/\/github\.com\/fluxcd\/([a-z0-9-]+)\/releases\/download\/(v\d+\.\d+\.\d+)\/\1\.(crds|deployment)\.yaml$/;

/** ControllerRelease is one controller's release assets, rebuilt from its module. */
export interface ControllerRelease {
  name: string;
  version: string;
  /** Go module path at that version (with the /vN suffix from v2 on). */
  module: string;
  /** The version whose config/ the assets were built from, when it is not `version` (a stand-in). */
  configFrom?: string;
}

/** RenderedFlux is what renderFlux makes for one Flux version. */
export interface RenderedFlux {
  version: string;
  /** gotk-components.yaml as Flux's release has it. */
  components: string;
  /** source-watcher.yaml: source-watcher's objects with a header saying where they come from. */
  sourceWatcher: string;
  /** The controllers whose release assets were rebuilt, in the bases' order. */
  controllers: ControllerRelease[];
}

export interface RenderOptions {
  /** The kustomize binary; default: the lab's (built on first use). */
  kustomize?: string;
  /**
   * Stand-ins, controller name to an earlier patch version, for controllers whose module at the pinned version
   * cannot be fetched (the Go module proxy does not serve it): their assets are built from the earlier version's
   * config/ with the image tag of the pinned one, and only if the controller's api module (its CRDs' source) is
   * the same at both. A stand-in for a module that can be fetched is not used.
   */
  standIns?: Record<string, string>;
  log?: (line: string) => void;
}

/** renderFlux renders Flux's install manifests of version from the Go modules of flux2 and its controllers. */
export async function renderFlux(version: string, opts: RenderOptions = {}): Promise<RenderedFlux> {
  if (!/^v\d+\.\d+\.\d+$/.test(version)) throw new Error(`expected a Flux version like v2.9.5, got ${version}`);
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const kustomize = opts.kustomize ?? (await ensureKustomize({ log }));
  const flux2 = await goModDownload(FLUX_MODULE, version);
  await checkInstallTemplates(flux2.Dir, version);

  const work = await mkdtemp(path.join(tmpdir(), `flux-manifests-${version}-`));
  try {
    // flux2's manifests/, writable (the module cache is read-only), with the release assets built beside the bases.
    const manifests = path.join(work, 'manifests');
    await copyTree(path.join(flux2.Dir, 'manifests'), manifests);
    const controllers = await localizeReleaseAssets(manifests, { kustomize, work, standIns: opts.standIns ?? {} });
    const unused = Object.keys(opts.standIns ?? {}).filter((n) => !controllers.some((c) => c.name === n));
    if (unused.length) throw new Error(`flux2 ${version}'s bases pin no ${unused.join(', ')}`);

    // bundle.sh: one file per controller, rbac.yaml and policies.yaml; what `flux install` starts from.
    const bundle = path.join(work, 'bundle');
    await mkdir(path.join(bundle, 'roles'), { recursive: true });
    const bases = (await readdir(path.join(manifests, 'bases'))).sort();
    for (const base of bases)
      await writeFile(path.join(bundle, `${base}.yaml`), await build(kustomize, path.join(manifests, 'bases', base)));
    for (const dir of ['rbac', 'policies'])
      await writeFile(path.join(bundle, `${dir}.yaml`), await build(kustomize, path.join(manifests, dir)));

    // flux install: its generated kustomization over the bundle, once per set of components.
    const install = async (components: string[]) => {
      const missing = components.filter((c) => !bases.includes(c));
      if (missing.length) throw new Error(`flux2 ${version} has no manifests/bases for ${missing.join(', ')}`);
      for (const [file, text] of Object.entries(installOverlay({ version, components })))
        await writeFile(path.join(bundle, file), text);
      await writeFile(path.join(bundle, 'roles', 'rbac.yaml'), await readFile(path.join(bundle, 'rbac.yaml')));
      return build(kustomize, bundle);
    };
    const components = `${genWarning(version, RELEASE_COMPONENTS)}\n${await install(RELEASE_COMPONENTS)}`;
    const withWatcher = await install([...DEFAULT_COMPONENTS, ...EXTRA_COMPONENTS]);
    const watcher = controllers.find((c) => c.name === 'source-watcher');
    if (!watcher) throw new Error(`flux2 ${version}'s bases pin no source-watcher release`);
    const sourceWatcher = sourceWatcherHeader(version, watcher) + componentDocs(withWatcher, 'source-watcher');
    return { version, components, sourceWatcher, controllers };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * localizeReleaseAssets replaces each release asset URL in manifests/bases/<controller>/kustomization.yaml by a
 * file of the same name built from the controller's Go module, and returns the controllers so rebuilt. Any other
 * remote resource in the folders the release builds from is refused: nothing here can fetch it.
 */
async function localizeReleaseAssets(
  manifests: string,
  opts: { kustomize: string; work: string; standIns: Record<string, string> },
): Promise<ControllerRelease[]> {
  const folders = [
    ...(await readdir(path.join(manifests, 'bases'))).sort().map((b) => path.join('bases', b)),
    'rbac',
    'policies',
  ];
  // The release assets each folder names, and the controllers (one version each) they come from.
  const controllers: ControllerRelease[] = [];
  const assets: { folder: string; url: string; name: string; asset: string }[] = [];
  for (const folder of folders) {
    const text = await readFile(path.join(manifests, folder, 'kustomization.yaml'), 'utf8');
    for (const url of new Set(text.match(/https?:\/\/\S+/g) ?? [])) {
      const m = RELEASE_ASSET.exec(url);
      if (!m)
        throw new Error(`manifests/${folder}/kustomization.yaml: ${url} is not a Flux controller's release asset`);
      const [, name, version, asset] = m;
      const release = controllers.find((c) => c.name === name);
      if (!release) controllers.push({ name, version, module: controllerModule(name, version) });
      else if (release.version !== version)
        throw new Error(`manifests/bases pin ${name} at both ${release.version} and ${version}`);
      assets.push({ folder, url, name, asset });
    }
  }
  // Each controller's config/; every one that cannot be fetched is named at once.
  const configs = new Map<string, string>();
  const unfetched: { release: ControllerRelease; err: unknown }[] = [];
  for (const release of controllers) {
    const config = await controllerConfig(release, opts);
    if (typeof config === 'string') configs.set(release.name, config);
    else unfetched.push({ release, err: config.unfetched });
  }
  if (unfetched.length)
    throw new Error(
      `cannot fetch ${unfetched.map(({ release: r }) => `${r.module}@${r.version}`).join(', ')}; an earlier patch ` +
        'release whose api module is the same can stand in for its config/: ' +
        unfetched.map(({ release: r }) => `--stand-in ${r.name}@v…`).join(' '),
      { cause: unfetched[0].err },
    );
  for (const { folder, url, name, asset } of assets) {
    const file = path.join(manifests, folder, 'kustomization.yaml');
    const local = `${name}.${asset}.yaml`;
    const config = path.join(configs.get(name)!, asset === 'crds' ? 'crd' : 'manager');
    await writeFile(path.join(manifests, folder, local), await build(opts.kustomize, config));
    await writeFile(file, (await readFile(file, 'utf8')).replaceAll(url, local));
  }
  return controllers;
}

/**
 * controllerConfig returns the config/ folder a controller's release assets are built from: that of its module at
 * the pinned version whenever that can be fetched (a stand-in is then not used), else, for a stand-in, a copy of
 * the stand-in version's with the pinned version's image tag.
 * `{ unfetched }`: the module at the pinned version cannot be fetched (the error) and no stand-in was given.
 */
async function controllerConfig(
  release: ControllerRelease,
  opts: { work: string; standIns: Record<string, string> },
): Promise<string | { unfetched: unknown }> {
  const { name, version, module } = release;
  const standIn = opts.standIns[name];
  let pinned: GoModule;
  try {
    pinned = await goModDownload(module, version);
  } catch (err) {
    if (!standIn) return { unfetched: err };
    return standInConfig(release, standIn, opts.work);
  }
  return checkConfig(pinned);
}

/** standInConfig is a copy of the stand-in version's config/, with the pinned version's image tag. */
async function standInConfig(release: ControllerRelease, standIn: string, work: string): Promise<string> {
  const { name, version, module } = release;
  const [want, have] = [/^v(\d+)\.(\d+)\.(\d+)$/.exec(version), /^v(\d+)\.(\d+)\.(\d+)$/.exec(standIn)];
  if (!want || !have || want[1] !== have[1] || want[2] !== have[2] || Number(have[3]) >= Number(want[3]))
    throw new Error(`stand-in ${name}@${standIn}: expected an earlier patch release of ${version}`);
  const earlier = await checkConfig(await goModDownload(module, standIn));
  // The CRDs are generated from the api module: a stand-in is taken only if that is the same at both versions.
  const apiModule = await apiModuleOf(path.dirname(earlier), module);
  const [a, b] = await Promise.all([goModDownload(apiModule, standIn), goModDownload(apiModule, version)]);
  const differs = await treesDiffer(a.Dir, b.Dir, new Set(['go.mod', 'go.sum']));
  if (differs) throw new Error(`stand-in ${name}@${standIn}: ${apiModule} differs from ${version} (${differs})`);
  // Its config/, with the pinned version's image tag (config/manager/kustomization.yaml's newTag).
  const config = path.join(work, `${name}-config`);
  await copyTree(earlier, config);
  const kfile = path.join(config, 'manager', 'kustomization.yaml');
  const text = await readFile(kfile, 'utf8');
  const tag = new RegExp(`^(\\s*newTag: )${standIn.replaceAll('.', '\\.')}$`, 'm');
  if (!tag.test(text))
    throw new Error(`${module}@${standIn} config/manager/kustomization.yaml has no newTag ${standIn}`);
  await writeFile(kfile, text.replace(tag, `$1${version}`));
  release.configFrom = standIn;
  return config;
}

/** checkConfig returns a controller module's config/ folder, after checking it has crd/ and manager/. */
async function checkConfig(mod: GoModule): Promise<string> {
  const config = path.join(mod.Dir, 'config');
  for (const dir of ['crd', 'manager'])
    if (!(await stat(path.join(config, dir)).catch(() => undefined))?.isDirectory())
      throw new Error(`${mod.Path}@${mod.Version} has no config/${dir}`);
  return config;
}

/** apiModuleOf reads the path of a controller's api module from its go.mod (`replace <api> => ./api`). */
async function apiModuleOf(moduleDir: string, module: string): Promise<string> {
  const gomod = await readFile(path.join(moduleDir, 'go.mod'), 'utf8');
  const m = /^replace\s+(\S+)\s+=>\s+\.\/api\s*$/m.exec(gomod);
  if (!m) throw new Error(`${module}'s go.mod replaces no api module with ./api`);
  return m[1];
}

/** treesDiffer names the first file that differs between two folders (ignoring some names), or ''. */
async function treesDiffer(a: string, b: string, ignore: Set<string>, rel = ''): Promise<string> {
  const list = async (dir: string) =>
    (await readdir(path.join(dir, rel), { withFileTypes: true })).filter((e) => !ignore.has(path.join(rel, e.name)));
  const [x, y] = await Promise.all([list(a), list(b)]);
  const names = [...new Set([...x, ...y].map((e) => e.name))].sort();
  for (const name of names) {
    const [ex, ey] = [x.find((e) => e.name === name), y.find((e) => e.name === name)];
    const file = path.join(rel, name);
    if (!ex || !ey || ex.isDirectory() !== ey.isDirectory()) return file;
    if (ex.isDirectory()) {
      const inner = await treesDiffer(a, b, ignore, file);
      if (inner) return inner;
    } else if (!(await readFile(path.join(a, file))).equals(await readFile(path.join(b, file)))) return file;
  }
  return '';
}

/** controllerModule is the Go module path of a Flux controller at a version: github.com/fluxcd/<name>[/vN]. */
export function controllerModule(name: string, version: string): string {
  const major = Number(/^v(\d+)\./.exec(version)?.[1]);
  return `github.com/fluxcd/${name}${major >= 2 ? `/v${major}` : ''}`;
}

/** checkInstallTemplates refuses a flux2 whose `flux install` templates are not those installOverlay follows. */
async function checkInstallTemplates(flux2Dir: string, version: string): Promise<void> {
  const file = path.join(flux2Dir, 'pkg', 'manifestgen', 'install', 'templates.go');
  const raw = (await readFile(file, 'utf8')).match(/`[^`]*`/g) ?? [];
  const sum = createHash('sha256').update(raw.join('\n')).digest('hex');
  if (!INSTALL_TEMPLATES.has(sum))
    throw new Error(
      `flux2 ${version}'s flux install templates (pkg/manifestgen/install/templates.go, sha256 of its raw strings ` +
        `${sum}) are not those test/flux-manifests.ts follows: compare them with installOverlay, then add the sum ` +
        'to INSTALL_TEMPLATES',
    );
}

/** InstallOverlay is what `flux install` writes beside its embedded manifests, file name to content. */
type InstallOverlay = Record<string, string>;

/**
 * installOverlay writes what `flux install` generates beside its embedded manifests (pkg/manifestgen/install
 * generate) for its default options — namespace flux-system, registry ghcr.io/fluxcd, network policies, all
 * namespaces watched, log level info, cluster.local — and the given components. One difference, with the same
 * output: the order of the resources is kept by `sortOptions: fifo` where flux's kustomize library has it unsorted
 * by default (the kustomize CLI would otherwise apply its legacy order).
 */
export function installOverlay(opts: { version: string; components: string[] }): InstallOverlay {
  const namespace = 'flux-system';
  const registry = 'ghcr.io/fluxcd';
  const clusterDomain = 'cluster.local';
  const eventsAddr = opts.components.includes('notification-controller')
    ? `http://notification-controller.$(RUNTIME_NAMESPACE).svc.${clusterDomain}./`
    : '';
  const replace = (i: number, value: string) =>
    `    - op: replace\n      path: /spec/template/spec/containers/0/args/${i}\n      value: ${value}\n`;
  const patch = (component: string, ops: string) =>
    '- target:\n    group: apps\n    version: v1\n    kind: Deployment\n' +
    `    name: ${component}\n  patch: |-\n${ops}`;
  const patches = opts.components.map((c) => {
    if (c === 'notification-controller')
      return patch(c, replace(0, '--watch-all-namespaces=true') + replace(1, '--log-level=info'));
    const common = replace(0, `--events-addr=${eventsAddr}`) + replace(1, '--watch-all-namespaces=true');
    if (c === 'source-controller' || c === 'source-watcher')
      return patch(
        c,
        common +
          replace(2, '--log-level=info') +
          replace(6, `--storage-adv-addr=${c}.$(RUNTIME_NAMESPACE).svc.${clusterDomain}.`),
      );
    return patch(c, common + replace(2, '--log-level=info'));
  });
  if (opts.components.includes('source-watcher'))
    patches.push(
      '- target:\n    kind: Deployment\n    name: "(kustomize-controller|helm-controller)"\n  patch: |-\n' +
        '    - op: add\n      path: /spec/template/spec/containers/0/args/-\n' +
        '      value: --feature-gates=ExternalArtifact=true\n',
    );
  const kustomization = [
    '---',
    'apiVersion: kustomize.config.k8s.io/v1beta1',
    'kind: Kustomization',
    `namespace: ${namespace}`,
    'sortOptions:',
    '  order: fifo',
    'transformers:',
    '  - labels.yaml',
    'resources:',
    '  - namespace.yaml',
    '  - policies.yaml',
    '  - roles',
    ...opts.components.map((c) => `  - ${c}.yaml`),
    'patches:',
    '- path: node-selector.yaml',
    '  target:',
    '    kind: Deployment',
    ...patches.map((p) => p.trimEnd()),
    'images:',
    ...opts.components.flatMap((c) => [`  - name: fluxcd/${c}`, `    newName: ${registry}/${c}`]),
    '',
  ].join('\n');
  return {
    'kustomization.yaml': kustomization,
    'namespace.yaml':
      `---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${namespace}\n  labels:\n` +
      '    pod-security.kubernetes.io/warn: restricted\n    pod-security.kubernetes.io/warn-version: latest\n',
    'labels.yaml':
      '---\napiVersion: builtin\nkind: LabelTransformer\nmetadata:\n  name: labels\nlabels:\n' +
      `  app.kubernetes.io/instance: ${namespace}\n  app.kubernetes.io/version: "${opts.version}"\n` +
      '  app.kubernetes.io/part-of: flux\nfieldSpecs:\n  - path: metadata/labels\n    create: true\n' +
      '  - kind: Deployment\n    path: spec/template/metadata/labels\n    create: true\n',
    'node-selector.yaml':
      '---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: all\nspec:\n  template:\n    spec:\n' +
      '      nodeSelector:\n        kubernetes.io/os: linux\n',
    'roles/kustomization.yaml':
      `---\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ${namespace}\n` +
      `resources:\n  - rbac.yaml\nnameSuffix: -${namespace}\n`,
  };
}

/** genWarning is the header `flux install` puts above its manifests (install.GetGenWarning). */
export function genWarning(version: string, components: string[]): string {
  return [
    '---',
    '# This manifest was generated by flux. DO NOT EDIT.',
    `# Flux Version: ${version}`,
    `# Components: ${components.join(',')}`,
  ].join('\n');
}

/** sourceWatcherHeader says where source-watcher.yaml's objects come from. */
function sourceWatcherHeader(version: string, watcher: ControllerRelease): string {
  const nth = [...DEFAULT_COMPONENTS, ...EXTRA_COMPONENTS].indexOf('source-watcher') + 1;
  return [
    '---',
    `# source-watcher for Flux ${version}, the ${nth}th component (flux install --components-extra=source-watcher).`,
    `# CRD from ${watcher.module}@${watcher.configFrom ?? watcher.version} config/crd/bases; Service and Deployment from its`,
    `# config/manager; with the patches and labels of ${FLUX_MODULE}@${version} manifests/bases/source-watcher`,
    "# and manifests/install, and flux install's defaults (pkg/manifestgen/install), as Flux's own install.yaml has them.",
    ...(watcher.configFrom
      ? [
          `# (${watcher.version}'s module is not served here: its config/ is ${watcher.configFrom}'s, whose api module is the same, ` +
            `with the image tag ${watcher.version}.)`,
        ]
      : []),
    "# Its RBAC is Flux's: crd-controller-flux-system in gotk-components.yaml already binds the source-watcher ServiceAccount.",
    '',
  ].join('\n');
}

/** componentDocs keeps the documents of kustomize output that belong to one component, verbatim. */
export function componentDocs(text: string, component: string): string {
  const docs = text.split(/^---\n/m).filter((d) => {
    const obj = yaml.load(d) as { metadata?: { labels?: Record<string, string> } } | undefined;
    return obj?.metadata?.labels?.['app.kubernetes.io/component'] === component;
  });
  if (!docs.length) throw new Error(`no objects of ${component} in the rendering`);
  return docs.join('---\n');
}

/** build runs `kustomize build dir` and returns its output. */
function build(kustomize: string, dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(kustomize, ['build', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`cannot run ${kustomize}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`kustomize build ${dir} exited with ${code}: ${Buffer.concat(err).toString('utf8')}`));
    });
  });
}

/** copyTree copies a folder's files and folders (not links), the copies writable whatever the originals' modes. */
async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const [src, dst] = [path.join(from, entry.name), path.join(to, entry.name)];
    if (entry.isDirectory()) await copyTree(src, dst);
    else if (entry.isFile()) await writeFile(dst, await readFile(src));
  }
}

/** SHIPPED is where the operator's bundled Flux versions live. */
export const SHIPPED = fileURLToPath(new URL('../src/manifests/flux/', import.meta.url));

/** writeRendered writes gotk-components.yaml and source-watcher.yaml of a rendering into dir. */
export async function writeRendered(rendered: RenderedFlux, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'gotk-components.yaml'), rendered.components);
  await writeFile(path.join(dir, 'source-watcher.yaml'), rendered.sourceWatcher);
}

if (import.meta.main) {
  let args: ReturnType<typeof cliArgs>;
  try {
    args = cliArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(
      `${err instanceof Error ? err.message : String(err)}\n` +
        'usage: npm run flux:manifests -- vX.Y.Z [--out DIR] [--stand-in <controller>@<earlier version>]…\n',
    );
    process.exit(2);
  }
  try {
    const started = Date.now();
    const standIns = Object.keys(args.standIns).length ? args.standIns : (SHIPPED_STAND_INS[args.version] ?? {});
    const rendered = await renderFlux(args.version, { standIns });
    const dir = path.resolve(args.out ?? path.join(SHIPPED, args.version));
    await writeRendered(rendered, dir);
    const sum = createHash('sha256').update(rendered.components).digest('hex');
    const pins = rendered.controllers.map(
      (c) => `${c.name} ${c.version}${c.configFrom ? ` (config/ of ${c.configFrom})` : ''}`,
    );
    process.stderr.write(
      `flux-manifests: Flux ${args.version} (${pins.join(', ')}) rendered in ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s into ${dir}; gotk-components.yaml ` +
        `${rendered.components.length} bytes, sha256 ${sum}\n`,
    );
  } catch (err) {
    process.stderr.write(`flux-manifests: ${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof Error && err.cause) process.stderr.write(`cause: ${String(err.cause)}\n`);
    process.exitCode = 1;
  }
}

/** cliArgs reads the command line: the version, --out DIR, and --stand-in controller@version (repeatable). */
function cliArgs(argv: string[]): { version: string; out?: string; standIns: Record<string, string> } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: 'string' }, 'stand-in': { type: 'string', multiple: true } },
  });
  if (positionals.length !== 1) throw new Error('expected one Flux version');
  const standIns: Record<string, string> = {};
  for (const s of values['stand-in'] ?? []) {
    const [name, version] = s.split('@');
    if (!name || !version) throw new Error(`--stand-in ${s}: expected <controller>@<version>`);
    standIns[name] = version;
  }
  return { version: positionals[0], out: values.out, standIns };
}
