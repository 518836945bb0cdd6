// Builds (and caches) the Go binaries the local lab needs: etcd, kube-apiserver, kube-controller-manager,
// kubectl, source-controller and kustomize-controller.
//
// Each component family has its own Go module under test/lab/go/<module>/ (go.mod + go.sum, committed), so the
// dependency graphs never fight. Binaries are cached outside the repo in
//   ${LAB_CACHE_DIR:-$HOME/.cache/flux-bootstrap-operator/lab}/<component>-<key>/<component>
// where key = short sha256 of (go.mod + go.sum, `go version`, build flags). A missing entry is built into a temp
// dir next to it and renamed into place, so an interrupted build never leaves a half binary behind.
//
// Run as a script (`node test/lab/build.ts`) it ensures every binary and prints the JSON map of paths.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, constants as fsConstants } from 'node:fs';
import { access, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export type LabBinary =
  'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kubectl' | 'source-controller' | 'kustomize-controller';

export type LabBinaries = Record<LabBinary, string>;

export interface EnsureOptions {
  /** Receives one progress line per component; defaults to stderr. */
  log?: (line: string) => void;
}

export interface BuildSpec {
  /** Binary (and cache entry) name. */
  name: string;
  /** Directory of the Go module the package is built from. */
  moduleDir: string;
  /** Import path of the main package (a `tool` of that module). */
  pkg: string;
  /** Extra `go build` flags, part of the cache key. */
  flags: string[];
  /** Build with cgo (CGO_ENABLED=1, part of the cache key); default off. */
  cgo?: boolean;
  /**
   * GOTOOLCHAIN of the build; default `local` (the installed Go). `auto` lets go fetch the Go that the module's
   * go.mod asks for (its `toolchain` line, from the module proxy) when the installed one is older; the key then
   * holds the `go version` of the Go that builds.
   */
  goToolchain?: string;
}

const GO_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'go');

/** Kubernetes release the kubernetes module builds (keep in sync with test/lab/go/kubernetes/go.mod). */
export const KUBERNETES_VERSION = 'v1.36.4';

function kubernetesLdflags(version: string): string {
  const [, major, minor] = /^v(\d+)\.(\d+)\./.exec(version) ?? [];
  const vars: string[] = [];
  for (const pkg of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
    vars.push(
      `-X ${pkg}.gitVersion=${version}`,
      `-X ${pkg}.gitMajor=${major}`,
      `-X ${pkg}.gitMinor=${minor}`,
      `-X ${pkg}.gitTreeState=clean`,
    );
  }
  return vars.join(' ');
}

/** Flags common to every build (besides CGO_ENABLED=0 GOTOOLCHAIN=local in the environment). */
const COMMON_FLAGS = ['-trimpath', '-mod=readonly'];

export const LAB_BUILDS: Record<LabBinary, BuildSpec> = {
  etcd: {
    name: 'etcd',
    moduleDir: path.join(GO_DIR, 'etcd'),
    pkg: 'go.etcd.io/etcd/server/v3',
    flags: [...COMMON_FLAGS],
  },
  'kube-apiserver': {
    name: 'kube-apiserver',
    moduleDir: path.join(GO_DIR, 'kubernetes'),
    pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
    flags: [...COMMON_FLAGS, '-ldflags', kubernetesLdflags(KUBERNETES_VERSION)],
  },
  'kube-controller-manager': {
    name: 'kube-controller-manager',
    moduleDir: path.join(GO_DIR, 'kubernetes'),
    pkg: 'k8s.io/kubernetes/cmd/kube-controller-manager',
    flags: [...COMMON_FLAGS, '-ldflags', kubernetesLdflags(KUBERNETES_VERSION)],
  },
  kubectl: {
    name: 'kubectl',
    moduleDir: path.join(GO_DIR, 'kubernetes'),
    pkg: 'k8s.io/kubernetes/cmd/kubectl',
    flags: [...COMMON_FLAGS, '-ldflags', kubernetesLdflags(KUBERNETES_VERSION)],
  },
  'source-controller': {
    name: 'source-controller',
    moduleDir: path.join(GO_DIR, 'source-controller'),
    pkg: 'github.com/fluxcd/source-controller',
    flags: [...COMMON_FLAGS],
  },
  'kustomize-controller': {
    name: 'kustomize-controller',
    moduleDir: path.join(GO_DIR, 'kustomize-controller'),
    pkg: 'github.com/fluxcd/kustomize-controller',
    flags: [...COMMON_FLAGS],
  },
};

export function labCacheDir(): string {
  const fromEnv = process.env.LAB_CACHE_DIR;
  return path.resolve(fromEnv ? fromEnv : path.join(homedir(), '.cache', 'flux-bootstrap-operator', 'lab'));
}

/** The `go` binary: GO env var, else `go` on PATH, else /usr/local/go/bin/go. */
async function findGo(): Promise<string> {
  if (process.env.GO) return process.env.GO;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'go');
    if (await isExecutable(candidate)) return candidate;
  }
  return '/usr/local/go/bin/go';
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Environment of every go invocation: static host build with the installed toolchain (unless told), no workspace. */
function goEnv(cgo = false, toolchain = 'local'): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CGO_ENABLED: cgo ? '1' : '0',
    GOTOOLCHAIN: toolchain,
    GOWORK: 'off',
  };
  // Always build for the host the lab runs on.
  for (const k of ['GOOS', 'GOARCH', 'GOAMD64', 'GOARM', 'GOARM64', 'GOFLAGS']) delete env[k];
  return env;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs a command, collecting stdout+stderr (and teeing it into logFile when given). */
function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; logFile?: string },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = opts.logFile ? createWriteStream(opts.logFile) : undefined;
    const chunks: Buffer[] = [];
    const onData = (b: Buffer) => {
      chunks.push(b);
      log?.write(b);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      log?.end();
      reject(err);
    });
    child.on('close', (code, signal) => {
      const output = Buffer.concat(chunks).toString('utf8');
      const done = () => resolve({ code, signal, output });
      if (log) log.end(done);
      else done();
    });
  });
}

function tail(text: string, lines = 40): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/** Key of a build: short sha256 of go.mod + go.sum, `go version` output, the package and its flags. */
export async function cacheKey(spec: BuildSpec, goVersion: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum']) {
    h.update(`${f}\0`);
    h.update(await readFile(path.join(spec.moduleDir, f)));
    h.update('\0');
  }
  h.update(`${goVersion.trim()}\0CGO_ENABLED=${spec.cgo ? 1 : 0}\0${spec.pkg}\0${JSON.stringify(spec.flags)}\0`);
  return h.digest('hex').slice(0, 16);
}

export interface Context {
  go: string;
  goVersion: string;
  cacheDir: string;
  log: (line: string) => void;
}

async function makeContext(opts: EnsureOptions | undefined): Promise<Context> {
  const go = await findGo();
  const env = goEnv();
  let res: RunResult;
  try {
    res = await run(go, ['version'], { cwd: GO_DIR, env });
  } catch (err) {
    throw new Error(`cannot run '${go} version' (is Go installed?)`, { cause: err });
  }
  if (res.code !== 0) throw new Error(`'${go} version' failed: ${tail(res.output)}`);
  return {
    go,
    goVersion: res.output.trim(),
    cacheDir: labCacheDir(),
    log: opts?.log ?? ((line) => process.stderr.write(`${line}\n`)),
  };
}

/** Returns the absolute path of one binary, building it into the cache if it is missing. */
export async function ensureBinary(spec: BuildSpec, opts?: EnsureOptions & { context?: Context }): Promise<string> {
  const ctx = opts?.context ?? (await makeContext(opts));
  const key = await cacheKey(spec, await goVersionOf(spec, ctx));
  const entry = path.join(ctx.cacheDir, `${spec.name}-${key}`);
  const binary = path.join(entry, spec.name);
  if (await isExecutable(binary)) {
    ctx.log(`lab: ${spec.name} cached (${binary})`);
    return binary;
  }
  await mkdir(ctx.cacheDir, { recursive: true });
  // Several processes (test runs, the lab CLI) may ensure the same entry at once: one builds, the others wait.
  return withLock(path.join(ctx.cacheDir, `.lock-${spec.name}-${key}`), ctx, spec.name, async () => {
    if (await isExecutable(binary)) {
      ctx.log(`lab: ${spec.name} cached, built by another process (${binary})`);
      return binary;
    }
    await build(spec, key, entry, ctx);
    return binary;
  });
}

/** goVersionOf is the `go version` of the Go that builds spec: the installed one, unless spec.goToolchain says. */
async function goVersionOf(spec: BuildSpec, ctx: Context): Promise<string> {
  if (!spec.goToolchain || spec.goToolchain === 'local') return ctx.goVersion;
  const res = await run(ctx.go, ['version'], { cwd: spec.moduleDir, env: goEnv(spec.cgo, spec.goToolchain) });
  if (res.code !== 0)
    throw new Error(`'go version' for ${spec.name} (GOTOOLCHAIN=${spec.goToolchain}) failed: ${tail(res.output)}`);
  return res.output.trim().split('\n').at(-1)!;
}

async function build(spec: BuildSpec, key: string, entry: string, ctx: Context): Promise<void> {
  const logDir = path.join(ctx.cacheDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const logFile = path.join(logDir, `${spec.name}-${key}.log`);
  // We hold the lock of this entry: temp dirs of it left behind by killed builds are stale.
  const tmpPrefix = `.tmp-${spec.name}-${key}-`;
  for (const name of await readdir(ctx.cacheDir)) {
    if (name.startsWith(tmpPrefix)) await rm(path.join(ctx.cacheDir, name), { recursive: true, force: true });
  }
  // Temp dir on the same filesystem as the entry, so the final rename is atomic.
  const tmp = path.join(ctx.cacheDir, `${tmpPrefix}${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  ctx.log(`lab: building ${spec.name} (${spec.pkg}); log: ${logFile}`);
  const started = Date.now();
  try {
    const args = ['build', '-v', ...spec.flags, '-o', path.join(tmp, spec.name), spec.pkg];
    let res: RunResult;
    try {
      res = await run(ctx.go, args, { cwd: spec.moduleDir, env: goEnv(spec.cgo, spec.goToolchain), logFile });
    } catch (err) {
      throw new Error(`building ${spec.name}: cannot run ${ctx.go}`, { cause: err });
    }
    if (res.code !== 0) {
      const cause = new Error(
        `go ${args.join(' ')} (in ${spec.moduleDir}) exited with ${res.code ?? `signal ${res.signal}`}`,
      );
      throw new Error(`building ${spec.name} failed (full log: ${logFile}):\n${tail(res.output)}`, { cause });
    }
    try {
      await rename(tmp, entry);
    } catch (err) {
      // Only if a lock was broken wrongly: another process finished the same build first; keep its entry.
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'EEXIST' && code !== 'ENOTEMPTY') || !(await isExecutable(path.join(entry, spec.name)))) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  ctx.log(`lab: ${spec.name} built in ${Math.round((Date.now() - started) / 1000)} s (${path.join(entry, spec.name)})`);
}

/** How long a lock directory without a readable owner pid may exist before it is considered stale. */
const LOCK_GRACE_MS = 30_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs fn while holding a directory lock (mkdir is atomic); waits for a live holder, breaks a dead one's lock. */
async function withLock<T>(lockDir: string, ctx: Context, name: string, fn: () => Promise<T>): Promise<T> {
  const pidFile = path.join(lockDir, 'pid');
  let announced = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(await readFile(pidFile, 'utf8'), 10);
    } catch {
      // not written yet, or the holder died between mkdir and writeFile
    }
    let stale: boolean;
    if (Number.isInteger(pid) && pid > 0) {
      stale = !isAlive(pid);
    } else {
      const st = await stat(lockDir).catch(() => undefined);
      stale = st !== undefined && Date.now() - st.mtimeMs > LOCK_GRACE_MS;
    }
    if (stale) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (!announced) {
      ctx.log(`lab: waiting for another process${Number.isInteger(pid) ? ` (pid ${pid})` : ''} building ${name}`);
      announced = true;
    }
    await sleep(500);
  }
  try {
    await writeFile(pidFile, `${process.pid}\n`);
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/** Returns absolute paths of all lab binaries, building (sequentially) whatever is not cached yet. */
export async function ensureLabBinaries(opts?: { log?: (line: string) => void }): Promise<LabBinaries> {
  const context = await makeContext(opts);
  const out = {} as LabBinaries;
  for (const name of Object.keys(LAB_BUILDS) as LabBinary[]) {
    out[name] = await ensureBinary(LAB_BUILDS[name], { context });
  }
  return out;
}

/** Helm release the helm module builds (keep in sync with test/lab/go/helm/go.mod). */
export const HELM_VERSION = 'v3.22.0';

/**
 * HELM_BUILD builds helm, for the chart's tests. It is not in LAB_BUILDS: `ensureLabBinaries` (lab:up) never
 * builds it; `ensureHelm` does, when a test needs it. The ldflags are those of helm's Makefile (version, and the
 * Kubernetes version `helm lint` / `helm template` assume: that of its client-go v0.37 → 1.37).
 */
export const HELM_BUILD: BuildSpec = {
  name: 'helm',
  moduleDir: path.join(GO_DIR, 'helm'),
  pkg: 'helm.sh/helm/v3/cmd/helm',
  flags: [
    ...COMMON_FLAGS,
    '-ldflags',
    [
      `-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`,
      '-X helm.sh/helm/v3/internal/version.gitTreeState=clean',
      ...['pkg/lint/rules', 'pkg/chartutil'].flatMap((p) => [
        `-X helm.sh/helm/v3/${p}.k8sVersionMajor=1`,
        `-X helm.sh/helm/v3/${p}.k8sVersionMinor=37`,
      ]),
    ].join(' '),
  ],
};

/** ensureHelm returns the absolute path of helm, building it into the cache if it is missing (minutes, once). */
export async function ensureHelm(opts?: EnsureOptions): Promise<string> {
  return ensureBinary(HELM_BUILD, opts);
}

/** cachedBinary returns the path of a binary already in the cache, or undefined; it never builds. */
export async function cachedBinary(spec: BuildSpec, opts?: EnsureOptions): Promise<string | undefined> {
  const ctx = await makeContext(opts);
  const binary = path.join(
    ctx.cacheDir,
    `${spec.name}-${await cacheKey(spec, await goVersionOf(spec, ctx))}`,
    spec.name,
  );
  return (await isExecutable(binary)) ? binary : undefined;
}

/** SOPS_BUILD builds sops (test/lab/go/sops), for the SOPS e2e; on demand only, like helm. */
export const SOPS_BUILD: BuildSpec = {
  name: 'sops',
  moduleDir: path.join(GO_DIR, 'sops'),
  pkg: 'github.com/getsops/sops/v3/cmd/sops',
  flags: [...COMMON_FLAGS, '-ldflags', '-s -w'],
};

/** ensureSops returns the absolute path of sops, building it into the cache if it is missing (minutes, once). */
export async function ensureSops(opts?: EnsureOptions): Promise<string> {
  return ensureBinary(SOPS_BUILD, opts);
}

/** Kustomize release the kustomize module builds (keep in sync with test/lab/go/kustomize/go.mod). */
export const KUSTOMIZE_VERSION = 'v5.8.3';

/**
 * KUSTOMIZE_BUILD builds kustomize, for rendering Flux's install manifests from source (test/flux-manifests.ts).
 * It is not in LAB_BUILDS: `ensureLabBinaries` (lab:up) never builds it; `ensureKustomize` does, when asked.
 * kustomize v5.8.3 needs Go 1.27: with an older installed Go, go fetches the go.mod's toolchain from the proxy.
 * No version ldflag: `kustomize version` reads v5.8.3 from the binary's build info.
 */
export const KUSTOMIZE_BUILD: BuildSpec = {
  name: 'kustomize',
  moduleDir: path.join(GO_DIR, 'kustomize'),
  pkg: 'sigs.k8s.io/kustomize/kustomize/v5',
  goToolchain: 'auto',
  flags: [...COMMON_FLAGS],
};

/** ensureKustomize returns the absolute path of kustomize, building it into the cache if it is missing. */
export async function ensureKustomize(opts?: EnsureOptions): Promise<string> {
  return ensureBinary(KUSTOMIZE_BUILD, opts);
}

/** Gitea release the gitea module builds (keep in sync with test/lab/go/gitea/go.mod). */
export const GITEA_VERSION = '1.26.0';

/**
 * GITEA_BUILD builds Gitea (sqlite, with cgo, as upstream's Makefile does with TAGS="sqlite sqlite_unlock_notify"),
 * for labs started with `gitea: true`. It is not in LAB_BUILDS: `ensureLabBinaries` (lab:up) never builds it;
 * `ensureGitea` does, when Gitea is asked for. Templates and locales are not embedded (no `bindata`): Gitea reads
 * them from the module's folder in the Go module cache (`giteaStaticRoot`).
 */
export const GITEA_BUILD: BuildSpec = {
  name: 'gitea',
  moduleDir: path.join(GO_DIR, 'gitea'),
  pkg: 'code.gitea.io/gitea',
  cgo: true,
  flags: [
    ...COMMON_FLAGS,
    '-tags',
    'sqlite sqlite_unlock_notify',
    '-ldflags',
    `-X main.Version=${GITEA_VERSION} -X 'main.Tags=sqlite sqlite_unlock_notify'`,
  ],
};

/** ensureGitea returns the absolute path of gitea, building it into the cache if it is missing (minutes, once). */
export async function ensureGitea(opts?: EnsureOptions): Promise<string> {
  return ensureBinary(GITEA_BUILD, opts);
}

/** giteaStaticRoot is the gitea module's folder in the Go module cache (templates, locales), downloading it if gone. */
export async function giteaStaticRoot(): Promise<string> {
  const go = await findGo();
  const res = await run(go, ['mod', 'download', '-json', 'code.gitea.io/gitea'], {
    cwd: GITEA_BUILD.moduleDir,
    env: goEnv(),
  });
  if (res.code !== 0) throw new Error(`go mod download code.gitea.io/gitea failed: ${tail(res.output)}`);
  const dir = (JSON.parse(res.output) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download code.gitea.io/gitea gave no Dir: ${tail(res.output)}`);
  return dir;
}

/** GoModule is what `go mod download -json` says of a module version. */
export interface GoModule {
  Path: string;
  Version: string;
  /** The module's files (read-only) in the Go module cache. */
  Dir: string;
  Zip?: string;
  Sum?: string;
}

/**
 * goModDownload fetches `module@version` into the Go module cache with the Go toolchain (`go mod download -json`,
 * through GOPROXY and checked against the checksum database, as any module download) and returns where it is.
 * No go.mod needed: it runs outside every module.
 */
export async function goModDownload(module: string, version: string): Promise<GoModule> {
  const go = await findGo();
  const res = await run(go, ['mod', 'download', '-json', `${module}@${version}`], { cwd: GO_DIR, env: goEnv() });
  let info: GoModule & { Error?: string };
  try {
    info = JSON.parse(res.output.slice(res.output.indexOf('{')));
  } catch {
    throw new Error(`go mod download ${module}@${version} failed: ${tail(res.output)}`);
  }
  if (res.code !== 0 || info.Error || !info.Dir)
    throw new Error(`go mod download ${module}@${version} failed: ${info.Error ?? tail(res.output)}`);
  return info;
}

if (import.meta.main) {
  try {
    const binaries = await ensureLabBinaries();
    process.stdout.write(`${JSON.stringify(binaries, null, 2)}\n`);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof Error && err.cause) process.stderr.write(`cause: ${String(err.cause)}\n`);
    process.exitCode = 1;
  }
}
