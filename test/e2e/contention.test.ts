/**
 * A busy fleet repository: 30 ClusterBootstraps on one repository (the lab's OpenSSH git server) while another
 * writer pushes a commit to the same branch every second. Every ClusterBootstrap commits within 2 minutes,
 * every commit of the other writer stays in the branch's history, and no lost race is ever reported as
 * PushRejected (the reason a protected branch gets).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { API_VERSION, KIND, type ClusterBootstrap } from '../../src/api/types.ts';
import {
  applyCB,
  authorize,
  condition,
  installCRD,
  lab,
  mgmt,
  namespace,
  pushSecret,
  repo,
  sleep,
  startOperator,
  type RunningOperator,
} from './harness.ts';

const COUNT = 30;
const WITHIN_MS = 120_000;
const names = Array.from({ length: COUNT }, (_, i) => `c${String(i).padStart(2, '0')}`);

let ns: string;
let url: string;
let operator: RunningOperator;

before(async () => {
  await installCRD();
  ns = await namespace('e2e-contention');
  await pushSecret(ns);
  url = await repo('busy');
  operator = await startOperator({ namespaces: [ns], args: ['--concurrency=16'] });
});

after(async () => {
  await operator?.stop();
});

const run = promisify(execFile);

/**
 * outsideWriter is another writer of the repository, with its own clone and the lab's push key (its ssh
 * connection shared, so it pushes as fast as it can): every second it commits a file of its own and pushes
 * it; a push that loses a race to the operator is rebased onto the branch and pushed again. It keeps the
 * commits it pushed.
 */
async function outsideWriter(repoUrl: string) {
  const base = mkdtempSync(join(tmpdir(), 'e2e-writer-'));
  const dir = join(base, 'repo');
  const control = join(base, 'cm');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GIT_SSH_COMMAND:
      `${lab().LAB_GIT_SSH_COMMAND} -o ControlMaster=auto -o ControlPath=${control} -o ` + `ControlPersist=120s`,
    GIT_AUTHOR_NAME: 'Platform Team',
    GIT_AUTHOR_EMAIL: 'platform@example.com',
    GIT_COMMITTER_NAME: 'Platform Team',
    GIT_COMMITTER_EMAIL: 'platform@example.com',
  };
  const git = async (...args: string[]) => (await run('git', args, { cwd: dir, env, encoding: 'utf8' })).stdout.trim();
  await run('git', ['clone', '-q', repoUrl, dir], { env });
  mkdirSync(join(dir, 'apps'), { recursive: true });
  writeFileSync(join(dir, 'apps', 'README.md'), "the platform team's own files\n");
  await git('add', '.');
  await git('commit', '-q', '-m', 'apps');
  await git('push', '-q', 'origin', 'HEAD:main');
  const pushed: string[] = [await git('rev-parse', 'HEAD')];
  let lost = 0;
  let stopping = false;
  const loop = (async () => {
    for (let n = 1; !stopping; n++) {
      const tick = Date.now();
      writeFileSync(join(dir, 'apps', `app-${n}.yaml`), `n: ${n}\n`);
      await git('add', '.');
      await git('commit', '-q', '-m', `app ${n}`);
      for (let tries = 1; ; tries++) {
        try {
          await git('push', '-q', 'origin', 'HEAD:main');
          break;
        } catch (err) {
          if (tries >= 50) throw err;
          lost++;
          await git('pull', '-q', '--rebase', 'origin', 'main');
        }
      }
      pushed.push(await git('rev-parse', 'HEAD'));
      await sleep(Math.max(0, 1000 - (Date.now() - tick)));
    }
  })();
  return {
    pushed,
    lost: () => lost,
    async stop() {
      stopping = true;
      await loop;
      await run('ssh', ['-F', '/dev/null', '-o', `ControlPath=${control}`, '-O', 'exit', 'writer']).catch(
        () => undefined,
      );
    },
  };
}

/**
 * muxMasters lists the operator's shared SSH connections (`ssh: <its key folder>/cm [mux]`) with their age in seconds.
 */
function muxMasters(pid: number): number[] {
  const ps = execFileSync('ps', ['-eo', 'etimes=,args='], { encoding: 'utf8' });
  return ps
    .split('\n')
    .filter((l) => l.includes(`fbo-git-${pid}-`) && l.includes('[mux]'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

test(
  `${COUNT} ClusterBootstraps on one repository all commit within 2 minutes beside a writer pushing every ` +
    `second, and every outside commit is kept`,
  async () => {
    const writer = await outsideWriter(url);
    try {
      const started = Date.now();
      for (const name of names)
        await applyCB(ns, name, {
          // A kubeconfig Secret that does not exist: each stops at Applied, after its commit, and touches no cluster.
          target: { kubeconfigSecretRef: { name: `${name}-kubeconfig` } },
          git: { url, secretRef: { name: 'git-push' } },
        });

      const authorized = new Set<string>();
      const committedAt = new Map<string, number>();
      const reasons = new Map<string, number>();
      let lastAuthorized = started;
      let masters = 0;
      let oldestMaster = 0;
      while (committedAt.size < COUNT && Date.now() - started < WITHIN_MS) {
        const cbs = await mgmt().list<ClusterBootstrap>(API_VERSION, KIND, ns);
        for (const cb of cbs) {
          const key = cb.status?.identity?.publicKey;
          if (key && !authorized.has(key)) {
            authorize(key); // as a person registers each deploy key the status publishes
            authorized.add(key);
            lastAuthorized = Date.now();
          }
          const c = condition(cb, 'Committed');
          if (c?.status === 'False') reasons.set(c.reason, (reasons.get(c.reason) ?? 0) + 1);
          if (c?.status === 'True' && !committedAt.has(cb.metadata.name))
            committedAt.set(cb.metadata.name, Date.now() - started);
        }
        const alive = muxMasters(operator.proc.pid!);
        masters = Math.max(masters, alive.length);
        oldestMaster = Math.max(oldestMaster, ...alive, 0);
        await sleep(500);
      }
      const took = Math.max(...committedAt.values());
      // One line per ClusterBootstrap whose files a push carried; the ones that shared a commit name the same one.
      const pushes = operator.logs
        .map((l) => {
          try {
            return JSON.parse(l);
          } catch {
            return undefined;
          }
        })
        .filter((l) => l?.msg === 'pushed the flux-system manifests');
      const attempts = [...new Map(pushes.map((l) => [l.commit, Number(l.attempts)])).values()];
      await writer.stop();

      process.stderr.write(
        `[contention] ${committedAt.size}/${COUNT} committed; the last ${(took / 1000).toFixed(1)} s after creation, ` +
          `${((started + took - lastAuthorized) / 1000).toFixed(1)} s after the last deploy key was registered; ` +
          `${attempts.length} commits by the operator (attempts per commit: ${attempts.join(' ')}); ` +
          `the outside writer pushed ${writer.pushed.length} commits and lost ${writer.lost()} races; ` +
          `Committed=False reasons seen: ${JSON.stringify(Object.fromEntries(reasons))}; ` +
          `shared SSH connections of the operator at once: at most ${masters}, the oldest ${oldestMaster} s\n`,
      );

      assert.deepEqual(
        names.filter((n) => !committedAt.has(n)),
        [],
        `every ClusterBootstrap has Committed=True within ${WITHIN_MS / 1000} s`,
      );
      assert.equal(reasons.get('PushRejected') ?? 0, 0, 'no lost race is reported as PushRejected');

      const check = mkdtempSync(join(tmpdir(), 'e2e-contention-check-'));
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, GIT_SSH_COMMAND: lab().LAB_GIT_SSH_COMMAND };
      await run('git', ['clone', '-q', '--no-checkout', url, check], { env });
      const g = (...args: string[]) =>
        execFileSync('git', ['-C', check, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
      const files = new Set(g('ls-tree', '-r', '--name-only', 'origin/main').split('\n'));
      for (const name of names)
        for (const f of ['gotk-components.yaml', 'gotk-sync.yaml', 'kustomization.yaml'])
          assert.ok(
            files.has(`clusters/${name}/flux-system/${f}`),
            `clusters/${name}/flux-system/${f} is in the branch`,
          );
      assert.ok(writer.pushed.length >= 10, `the outside writer pushed ${writer.pushed.length} commits`);
      const history = new Set(g('rev-list', 'origin/main').split('\n'));
      const lostCommits = writer.pushed.filter((sha) => !history.has(sha));
      assert.deepEqual(lostCommits, [], 'every commit the outside writer pushed is in the branch history');
      for (let i = 1; i < writer.pushed.length; i++)
        assert.ok(files.has(`apps/app-${i}.yaml`), `apps/app-${i}.yaml is kept`);
      assert.ok(
        attempts.length < COUNT,
        `${attempts.length} operator commits for ${COUNT} clusters: changes ready together share one`,
      );
      assert.ok(masters <= 2, `at most ${masters} shared SSH connections of the operator at once, for one repository`);
      assert.ok(oldestMaster <= 60, `no shared SSH connection outlives its commit: the oldest was ${oldestMaster} s`);
    } finally {
      await writer.stop().catch(() => undefined);
    }
  },
);
