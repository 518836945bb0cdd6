/**
 * Cluster API's CRDs in the lab, straight from its Go module: `sigs.k8s.io/cluster-api` CLUSTER_API_VERSION is
 * fetched with the Go toolchain (`go mod download`, into the Go module cache, through GOPROXY and checked against the
 * checksum database), and its generated CRDs (`core/config/crd/bases/*.yaml`, `config/crd/bases` in older
 * releases) are copied into the lab's cache (`<LAB_CACHE_DIR>/cluster-api-<version>/`), like the lab's binaries:
 * later labs need neither Go nor the network. `installClusterApiCRDs` applies them (by default only
 * `cluster.x-k8s.io_clusters.yaml`) server-side, as they are, and waits until they are established.
 *
 * The CRDs come without their conversion webhook (upstream adds it with a kustomize patch), so each served version
 * reads and writes the stored object as it is: use the storage version (v1beta2).
 */
import fs from 'node:fs';
import path from 'node:path';
import { goModDownload, labCacheDir } from './build.ts';
import { labDir, readLabEnv } from './env.ts';
import { kubeRequest, labCreds, sleep, type KubeCreds } from './kube.ts';

/** The Go module the CRDs come from, and its version. */
export const CLUSTER_API_MODULE = 'sigs.k8s.io/cluster-api';
export const CLUSTER_API_VERSION = 'v1.14.2';
/** The Cluster CRD's file in the module's CRD folder. */
export const CLUSTER_CRD_FILE = 'cluster.x-k8s.io_clusters.yaml';
/** Where the module keeps its generated core CRDs (v1.10 on: core/…; before: config/…). */
const CRD_DIRS = ['core/config/crd/bases', 'config/crd/bases'];

/**
 * ensureClusterApiCRDs returns the lab's cached copy of Cluster API's core CRD folder (every `*.yaml` of it, plus
 * SOURCE saying module, version, checksum and path), fetching the module with `go mod download` when it is not
 * cached yet. The copy is made in a temp folder and renamed into place, so racing callers never see half of it.
 */
export async function ensureClusterApiCRDs(opts: { log?: (line: string) => void } = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  const cache = labCacheDir();
  const entry = path.join(cache, `cluster-api-${CLUSTER_API_VERSION}`);
  if (fs.existsSync(path.join(entry, CLUSTER_CRD_FILE))) return entry;
  log(`capi: go mod download ${CLUSTER_API_MODULE}@${CLUSTER_API_VERSION}`);
  const mod = await goModDownload(CLUSTER_API_MODULE, CLUSTER_API_VERSION);
  const sub = CRD_DIRS.find((d) => fs.existsSync(path.join(mod.Dir, d, CLUSTER_CRD_FILE)));
  if (!sub)
    throw new Error(
      `${CLUSTER_API_MODULE}@${CLUSTER_API_VERSION} (${mod.Dir}) has no ${CLUSTER_CRD_FILE} in ` +
        `${CRD_DIRS.join(' or ')}`,
    );
  fs.mkdirSync(cache, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cache, `.tmp-cluster-api-${CLUSTER_API_VERSION}-`));
  try {
    for (const f of fs.readdirSync(path.join(mod.Dir, sub))) {
      if (f.endsWith('.yaml')) fs.copyFileSync(path.join(mod.Dir, sub, f), path.join(tmp, f));
    }
    fs.writeFileSync(path.join(tmp, 'SOURCE'), `${mod.Path}@${mod.Version} ${mod.Sum ?? ''}\n${sub}/\n`);
    for (const f of fs.readdirSync(tmp)) fs.chmodSync(path.join(tmp, f), 0o644);
    fs.chmodSync(tmp, 0o755);
    try {
      fs.renameSync(tmp, entry);
    } catch (err) {
      // another process put the same entry in place first: keep it
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'EEXIST' && code !== 'ENOTEMPTY') || !fs.existsSync(path.join(entry, CLUSTER_CRD_FILE))) throw err;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  log(`capi: CRDs of ${CLUSTER_API_MODULE}@${CLUSTER_API_VERSION} cached in ${entry}`);
  return entry;
}

/** The `metadata.name` of a CRD file's single document (the first `name:` indented two spaces under `metadata:`). */
function crdName(yaml: string, file: string): string {
  const m = /^metadata:\n(?:[ ]{2,}.*\n)*?[ ]{2}name: *(\S+)/m.exec(yaml);
  if (!m) throw new Error(`${file}: no metadata.name`);
  return m[1].replace(/^["']|["']$/g, '');
}

/**
 * installClusterApiCRDs applies Cluster API's CRDs, as upstream generated them, to a cluster: `target` is a lab dir
 * (its management cluster; default the default lab) or the credentials of any API server. `files` are names in the
 * module's CRD folder (default: only CLUSTER_CRD_FILE). Server-side apply (field manager `flux-lab`), then waits
 * (up to `timeoutMs`, default 60 s) until each is Established. Returns the CRDs' names.
 */
export async function installClusterApiCRDs(
  target?: string | KubeCreds,
  opts: { files?: string[]; log?: (line: string) => void; timeoutMs?: number } = {},
): Promise<string[]> {
  const creds =
    typeof target === 'object' ? target : labCreds(labDir({ dir: target }), readLabEnv(target).LAB_MGMT_SERVER);
  const crds = await ensureClusterApiCRDs(opts);
  const names: string[] = [];
  for (const file of opts.files ?? [CLUSTER_CRD_FILE]) {
    if (!/^[\w.-]+\.yaml$/.test(file)) throw new Error(`not a CRD file name: ${file}`);
    const text = fs.readFileSync(path.join(crds, file), 'utf8').replace(/^---\n/, '');
    if (/^---/m.test(text)) throw new Error(`${file} holds more than one document`);
    const name = crdName(text, file);
    const r = await kubeRequest(
      creds,
      'PATCH',
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}?fieldManager=flux-lab&force=true`,
      text,
      'application/apply-patch+yaml',
    );
    if (r.status !== 200 && r.status !== 201)
      throw new Error(`applying ${file} to ${creds.server}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    names.push(name);
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (const name of names) {
    for (;;) {
      const r = await kubeRequest(creds, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      if ((r.json?.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not established in ${creds.server} (HTTP ${r.status})`);
      await sleep(200);
    }
  }
  opts.log?.(`capi: ${names.join(', ')} established in ${creds.server}`);
  return names;
}
