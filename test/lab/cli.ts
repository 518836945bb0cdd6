/**
 * Command line of the lab (npm scripts lab:*):
 *   node test/lab/cli.ts build                      build or find the six binaries, link them into .lab/bin
 *   node test/lab/cli.ts build helm                 the same, and helm (built only on demand)
 *   node test/lab/cli.ts build gitea                the same, and Gitea (built only on demand)
 *   node test/lab/cli.ts up                         start the lab (no-op when up), print .lab/env
 *   node test/lab/cli.ts up --gitea                 the same with Gitea (also LAB_GITEA=1; added to a lab already up)
 *   node test/lab/cli.ts down                       stop every lab process, remove .lab
 *   node test/lab/cli.ts authorize-key FILE [--rw]  authorize an ssh public key (read-only unless --rw)
 *   node test/lab/cli.ts flux start|stop            start/stop Flux's source- and kustomize-controller
 *   node test/lab/cli.ts env                        print .lab/env
 *   node test/lab/cli.ts status                     print the running lab processes
 * LAB_DIR in the environment overrides the lab dir (default <project root>/.lab).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ensureGitea } from './build.ts';
import { authorizeKey, ensureBinaries, ensureHelm, fluxStart, fluxStop, labDown, labPids, labUp, readLabEnv } from './lab.ts';

const dir = process.env.LAB_DIR || undefined;
const log = (line: string) => process.stderr.write(`[lab ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const usage = 'usage: node test/lab/cli.ts build [helm|gitea] | up [--gitea] | down | authorize-key <pubkey-file> [--rw] | flux start|stop | env | status';

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'build': {
      // `build helm`: helm too, which lab:up does not build (the chart's tests do, on demand).
      if (rest.includes('helm')) await ensureHelm({ dir, log });
      if (rest.includes('gitea')) console.log(await ensureGitea({ log })); // Gitea too (lab:up --gitea starts it)
      const bin = await ensureBinaries({ dir, log });
      for (const f of fs.readdirSync(bin)) console.log(`${path.join(bin, f)} -> ${fs.realpathSync(path.join(bin, f))}`);
      return 0;
    }
    case 'up': {
      const t0 = Date.now();
      const gitea = rest.includes('--gitea') || ['1', 'true', 'yes'].includes(process.env.LAB_GITEA ?? '');
      await labUp({ dir, log, gitea });
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
      if (rest[0] === 'start') {
        const info = await fluxStart({ dir, log });
        console.log(JSON.stringify(info, null, 2));
        return 0;
      }
      if (rest[0] === 'stop') {
        await fluxStop({ dir, log });
        return 0;
      }
      throw new Error('usage: flux start|stop');
    }
    case 'env': {
      process.stdout.write(fs.readFileSync(path.join(readLabEnv(dir).LAB_DIR, 'env'), 'utf8'));
      return 0;
    }
    case 'status': {
      const pids = labPids(dir);
      for (const [n, p] of Object.entries(pids)) console.log(`${n}\t${p}`);
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
