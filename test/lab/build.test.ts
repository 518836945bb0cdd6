// Unit tests of test/lab/build.ts on a tiny throw-away Go module (no real lab binaries are built).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { cacheKey, ensureBinary, GITEA_BUILD, KUSTOMIZE_BUILD, LAB_BUILDS, type BuildSpec } from './build.ts';

function haveGo(): boolean {
  try {
    execFileSync(process.env.GO ?? 'go', ['version'], {
      stdio: 'ignore',
      env: { ...process.env, GOTOOLCHAIN: 'local' },
    });
    return true;
  } catch {
    return false;
  }
}

describe('lab build', { skip: haveGo() ? false : 'go not installed' }, () => {
  let dir: string;
  let moduleDir: string;
  let savedCacheDir: string | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lab-build-test-'));
    moduleDir = path.join(dir, 'mod');
    await mkdir(path.join(moduleDir, 'hello'), { recursive: true });
    await mkdir(path.join(moduleDir, 'broken'), { recursive: true });
    await writeFile(path.join(moduleDir, 'go.mod'), 'module example.com/labtest\n\ngo 1.24\n');
    await writeFile(path.join(moduleDir, 'go.sum'), '');
    await writeFile(path.join(moduleDir, 'hello', 'main.go'), 'package main\n\nfunc main() { println("hello lab") }\n');
    await writeFile(path.join(moduleDir, 'broken', 'main.go'), 'package main\n\nfunc main() { undefinedThing() }\n');
    savedCacheDir = process.env.LAB_CACHE_DIR;
    process.env.LAB_CACHE_DIR = path.join(dir, 'cache');
  });

  after(async () => {
    if (savedCacheDir === undefined) delete process.env.LAB_CACHE_DIR;
    else process.env.LAB_CACHE_DIR = savedCacheDir;
    await rm(dir, { recursive: true, force: true });
  });

  it('keys depend on go version and flags, and are stable', async () => {
    const spec = LAB_BUILDS.etcd;
    const a = await cacheKey(spec, 'go version go1.26.8 linux/amd64');
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.equal(await cacheKey(spec, 'go version go1.26.8 linux/amd64'), a);
    assert.notEqual(await cacheKey(spec, 'go version go1.26.9 linux/amd64'), a);
    assert.notEqual(await cacheKey({ ...spec, flags: [...spec.flags, '-race'] }, 'go version go1.26.8 linux/amd64'), a);
  });

  it('leaves Gitea out of the lab builds (built on demand), with cgo in its key', async () => {
    assert.ok(!Object.keys(LAB_BUILDS).includes('gitea'), 'lab:up and lab:build do not build Gitea');
    assert.equal(GITEA_BUILD.cgo, true);
    const go = 'go version go1.26.8 linux/amd64';
    assert.notEqual(await cacheKey(GITEA_BUILD, go), await cacheKey({ ...GITEA_BUILD, cgo: false }, go));
  });

  it('leaves kustomize out of the lab builds (built on demand), with the Go its go.mod asks for', () => {
    assert.ok(!Object.values(LAB_BUILDS).some((b) => b.name === 'kustomize'), 'lab:up does not build kustomize');
    assert.equal(KUSTOMIZE_BUILD.goToolchain, 'auto');
  });

  it('builds a missing binary once, then serves it from the cache', async () => {
    const spec: BuildSpec = { name: 'hello', moduleDir, pkg: 'example.com/labtest/hello', flags: ['-trimpath'] };
    const lines: string[] = [];
    const bin = await ensureBinary(spec, { log: (l) => lines.push(l) });
    assert.ok(path.isAbsolute(bin));
    assert.ok(bin.startsWith(path.join(dir, 'cache', 'hello-')));
    const ran = spawnSync(bin, { encoding: 'utf8' });
    assert.equal(ran.status, 0);
    assert.match(ran.stderr, /hello lab/);
    assert.match(lines.at(-1) ?? '', /hello built in \d+ s/);

    const again: string[] = [];
    assert.equal(await ensureBinary(spec, { log: (l) => again.push(l) }), bin);
    assert.deepEqual(
      again.map((l) => l.replace(/ \(.*\)$/, '')),
      ['lab: hello cached'],
    );
  });

  it('lets concurrent ensures of one entry build it once', async () => {
    const spec: BuildSpec = {
      name: 'hello',
      moduleDir,
      pkg: 'example.com/labtest/hello',
      flags: ['-trimpath', '-ldflags=-s'],
    };
    const a: string[] = [];
    const b: string[] = [];
    const [p1, p2] = await Promise.all([
      ensureBinary(spec, { log: (l) => a.push(l) }),
      ensureBinary(spec, { log: (l) => b.push(l) }),
    ]);
    assert.equal(p1, p2);
    const built = [...a, ...b].filter((l) => / built in /.test(l));
    assert.equal(built.length, 1, [...a, ...b].join('\n'));
  });

  it('breaks the lock of a dead builder', async () => {
    const spec: BuildSpec = {
      name: 'hello',
      moduleDir,
      pkg: 'example.com/labtest/hello',
      flags: ['-trimpath', '-ldflags=-w'],
    };
    const key = await cacheKey(
      spec,
      execFileSync(process.env.GO ?? 'go', ['version'], {
        encoding: 'utf8',
        env: { ...process.env, GOTOOLCHAIN: 'local' },
      }),
    );
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const lock = path.join(dir, 'cache', `.lock-hello-${key}`);
    await mkdir(lock, { recursive: true });
    await writeFile(path.join(lock, 'pid'), `${dead}\n`);
    await writeFile(path.join(dir, 'cache', `.tmp-hello-${key}-deadbeef`), 'half a binary');
    const bin = await ensureBinary(spec, { log: () => {} });
    assert.ok(bin.endsWith(`hello-${key}/hello`));
    const entries = await readdir(path.join(dir, 'cache'));
    assert.ok(!entries.some((e) => e.startsWith('.lock-') || e.startsWith('.tmp-')), entries.join(','));
  });

  it('reports a failed build with the output tail and a cause, leaving no half entry', async () => {
    const spec: BuildSpec = { name: 'broken', moduleDir, pkg: 'example.com/labtest/broken', flags: ['-trimpath'] };
    await assert.rejects(ensureBinary(spec, { log: () => {} }), (err: Error) => {
      assert.match(err.message, /building broken failed/);
      assert.match(err.message, /undefinedThing/);
      assert.ok(err.cause instanceof Error);
      return true;
    });
    const entries = await readdir(path.join(dir, 'cache'));
    assert.ok(!entries.some((e) => e.startsWith('broken-') || e.startsWith('.tmp-')), entries.join(','));
  });
});
