/**
 * Command line of the lab (npm scripts lab:*):
 *   node test/lab/cli.ts build                      build or find the six binaries, link them into .lab/bin
 *   node test/lab/cli.ts build helm                 the same, and helm (built only on demand)
 *   node test/lab/cli.ts build gitea                the same, and Gitea (built only on demand)
 *   node test/lab/cli.ts build kustomize            the same, and kustomize (built only on demand)
 *   node test/lab/cli.ts up                         start the lab (no-op when up), print .lab/env
 *   node test/lab/cli.ts up --gitea                 the same with Gitea (also LAB_GITEA=1; added to a lab already up)
 *   node test/lab/cli.ts up --targets N             the same with N extra target clusters (also LAB_TARGETS=N; added
 * to a lab already up); --target-controllers (LAB_TARGET_CONTROLLERS=1)
 *                                                   gives each a controller manager
 *   node test/lab/cli.ts up --capi                  the same with Cluster API's Cluster CRD in the management cluster
 *                                                   (also LAB_CAPI=1; added to a lab already up)
 *   node test/lab/cli.ts down                       stop every lab process, remove .lab
 *   node test/lab/cli.ts authorize-key FILE [--rw]  authorize an ssh public key (read-only unless --rw)
 *   node test/lab/cli.ts flux start|stop [--targets 0,1,…|all]
 *                                                   start/stop Flux's source- and kustomize-controller (default: start
 *                                                   for the lab's target 0, stop for every target)
 *   node test/lab/cli.ts env                        print .lab/env
 *   node test/lab/cli.ts status                     print the running lab processes (name, PID, RSS in MiB)
 * LAB_DIR in the environment overrides the lab dir (default <project root>/.lab).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ensureGitea, ensureKustomize } from './build.ts';
import {
  authorizeKey,
  ensureBinaries,
  ensureHelm,
  fluxStart,
  fluxStop,
  labDown,
  labPids,
  labTargets,
  labUp,
  readLabEnv,
  rssKiB,
} from './lab.ts';

const dir = process.env.LAB_DIR || undefined;
const log = (line: string) => process.stderr.write(`[lab ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const usage =
  'usage: node test/lab/cli.ts build [helm|gitea|kustomize] | up [--gitea] [--targets N] [--target-controllers] [--capi] | ' +
  'down | ' +
  'authorize-key <pubkey-file> [--rw] | flux start|stop [--targets 0,1,…|all] | env | status';
const yes = (v: string | undefined) => ['1', 'true', 'yes'].includes(v ?? '');

/** The value of `--name VALUE` or `--name=VALUE` in args, or undefined. */
function flag(args: string[], name: string): string | undefined {
  for (let k = 0; k < args.length; k++) {
    if (args[k] === name) {
      if (args[k + 1] === undefined) throw new Error(`${name} needs a value`);
      return args[k + 1];
    }
    if (args[k].startsWith(`${name}=`)) return args[k].slice(name.length + 1);
  }
  return undefined;
}

/** `--targets` of flux start|stop: `all` (0 and every extra target) or a comma-separated list of indexes. */
function fluxTargets(args: string[]): number[] | undefined {
  const v = flag(args, '--targets');
  if (v === undefined) return undefined;
  if (v === 'all') return [0, ...labTargets(readLabEnv(dir)).map((t) => t.index)];
  const list = v.split(',').map((x) => Number(x.trim()));
  if (!list.length || list.some((n) => !Number.isInteger(n) || n < 0))
    throw new Error(`--targets: expected all or 0,1,…: ${v}`);
  return list;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'build': {
      // `build helm`: helm too, which lab:up does not build (the chart's tests do, on demand).
      if (rest.includes('helm')) await ensureHelm({ dir, log });
      if (rest.includes('gitea')) console.log(await ensureGitea({ log })); // Gitea too (lab:up --gitea starts it)
      if (rest.includes('kustomize')) console.log(await ensureKustomize({ log })); // for npm run flux:manifests
      const bin = await ensureBinaries({ dir, log });
      for (const f of fs.readdirSync(bin)) console.log(`${path.join(bin, f)} -> ${fs.realpathSync(path.join(bin, f))}`);
      return 0;
    }
    case 'up': {
      const t0 = Date.now();
      const gitea = rest.includes('--gitea') || yes(process.env.LAB_GITEA);
      const capi = rest.includes('--capi') || yes(process.env.LAB_CAPI);
      const targetControllers = rest.includes('--target-controllers') || yes(process.env.LAB_TARGET_CONTROLLERS);
      const n = flag(rest, '--targets') ?? (process.env.LAB_TARGETS || undefined);
      const targets = n === undefined ? undefined : Number(n);
      if (targets !== undefined && !(Number.isInteger(targets) && targets >= 0))
        throw new Error(`--targets / LAB_TARGETS: expected a number: ${n}`);
      await labUp({ dir, log, gitea, capi, targets, targetControllers });
      process.stdout.write(fs.readFileSync(path.join(readLabEnv(dir).LAB_DIR, 'env'), 'utf8'));
      log(`up (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return 0;
    }
    case 'down': {
      await labDown({ dir, log });
      return 0;
    }
    case 'authorize-key': {
      const file = rest.find((a) => !a.startsWith('--'));
      if (!file) throw new Error('usage: authorize-key <pubkey-file> [--rw]');
      const access = rest.includes('--rw') ? 'rw' : 'ro';
      authorizeKey(path.resolve(file), { access, dir });
      log(`authorized ${file} (${access})`);
      return 0;
    }
    case 'flux': {
      const targets = fluxTargets(rest.slice(1));
      if (rest[0] === 'start') {
        const info = targets ? await fluxStart({ dir, log, targets }) : await fluxStart({ dir, log });
        console.log(JSON.stringify(info, null, 2));
        return 0;
      }
      if (rest[0] === 'stop') {
        await fluxStop({ dir, log, targets });
        return 0;
      }
      throw new Error('usage: flux start|stop [--targets 0,1,…|all]');
    }
    case 'env': {
      process.stdout.write(fs.readFileSync(path.join(readLabEnv(dir).LAB_DIR, 'env'), 'utf8'));
      return 0;
    }
    case 'status': {
      const pids = labPids(dir);
      for (const [n, p] of Object.entries(pids)) console.log(`${n}\t${p}\t${((rssKiB(p) ?? 0) / 1024).toFixed(0)} MiB`);
      return Object.keys(pids).length ? 0 : 1;
    }
    default:
      console.error(usage);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`lab: ${(err as Error).message}`);
    process.exit(1);
  },
);
