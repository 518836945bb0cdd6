/**
 * Process supervision for the lab: commands run to completion (`run`), detached lab processes with their PID in
 * `<dir>/pids/<name>` and output in `<dir>/logs/<name>.log`, waiting for them, stopping them, finding strays, and
 * starting servers on fresh ports with a retry when a port turns out to be taken (`startServer`).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { labDir } from './env.ts';
import { sleep } from './kube.ts';
import { ADDRESS_IN_USE, freePorts, listensOn, releasePorts, type PortOptions } from './ports.ts';

const execFileP = promisify(execFile);

/**
 * childEnv is the environment for child processes: ours minus ambient git and kube settings that would redirect them.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('GIT_') || k === 'KUBECONFIG' || k.startsWith('SSH_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** run runs a command to completion and returns its stdout; throws with the last lines of its output. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? childEnv(),
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err: any) {
    const detail = `${err.stderr ?? ''}${err.stdout ?? ''}`.trim().split('\n').slice(-5).join(' | ');
    throw new Error(`${cmd} ${args.join(' ')} failed: ${detail || err.message}`);
  }
}

function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** alive tells whether `pid` is a live process (zombies count as dead). */
export function alive(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Whether the command line mentions the lab dir as a path (`<dir>/…` or `<dir>` alone). */
function mentions(line: string, dir: string): boolean {
  return line.includes(dir + '/') || line.split(/[\s=]/).includes(dir);
}

/** A live process of this lab (its command line mentions the lab dir: guards against PID reuse). */
function ours(pid: number, dir: string): boolean {
  return alive(pid) && mentions(cmdline(pid), dir);
}

function readPid(dir: string, name: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'pids', name), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** running is the PID of the lab process `name` when it is alive (and really this lab's), else undefined. */
export function running(dir: string, name: string): number | undefined {
  const pid = readPid(dir, name);
  return pid !== undefined && ours(pid, dir) ? pid : undefined;
}

function logFile(dir: string, name: string): string {
  return path.join(dir, 'logs', `${name}.log`);
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * startDetached starts a detached process (own session, stdio to `<dir>/logs/<name>.log`), PID in `<dir>/pids/<name>`.
 */
export function startDetached(
  dir: string,
  name: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = childEnv(),
): number {
  const file = logFile(dir, name);
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, `--- ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env, cwd: dir });
    child.on('error', (err) => fs.appendFileSync(file, `spawn failed: ${err.message}\n`));
    child.unref();
    if (!child.pid) throw new Error(`could not start ${name} (${cmd}); see ${file}`);
    fs.writeFileSync(path.join(dir, 'pids', name), `${child.pid}\n`);
    return child.pid;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * waitFor polls `probe` until it returns true. It fails early when the watched process `proc` died (with its log's
 * tail) or when `failWhen` returns a reason.
 */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; dir: string; proc?: string; intervalMs?: number; failWhen?: () => string | undefined },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  const logHint = () =>
    opts.proc ? `; log ${logFile(opts.dir, opts.proc)}:\n${tail(logFile(opts.dir, opts.proc))}` : '';
  let last = '';
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    const reason = opts.failWhen?.();
    if (reason) throw new Error(`${reason} while waiting for ${what}${logHint()}`);
    if (opts.proc) {
      const pid = readPid(opts.dir, opts.proc);
      if (pid === undefined || !alive(pid))
        throw new Error(`${opts.proc} exited while waiting for ${what}${logHint()}`);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${opts.timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}${logHint()}`,
      );
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/**
 * stopProcesses stops named lab processes: SIGTERM (to the process and its group), SIGKILL after `graceMs`, waits for
 * exit.
 */
export async function stopProcesses(dir: string, names: string[], graceMs = 5000): Promise<void> {
  const pids: { name: string; pid: number }[] = [];
  for (const name of names) {
    const pid = running(dir, name);
    if (pid !== undefined) pids.push({ name, pid });
  }
  const signal = (pid: number, sig: NodeJS.Signals) => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, sig);
      } catch {
        /* gone already, or no group */
      }
    }
  };
  for (const { pid } of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some((p) => alive(p.pid)) && Date.now() < deadline) await sleep(50);
  for (const { pid } of pids) if (alive(pid)) signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (pids.some((p) => alive(p.pid)) && Date.now() < killDeadline) await sleep(50);
  const left = pids.filter((p) => alive(p.pid));
  if (left.length) throw new Error(`lab processes did not exit: ${left.map((p) => `${p.name}=${p.pid}`).join(', ')}`);
  for (const name of names) fs.rmSync(path.join(dir, 'pids', name), { force: true });
}

/** strays are processes not recorded in `<dir>/pids` whose command line still mentions the lab dir. */
export function strays(dir: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid === process.ppid) continue;
    if (ours(pid, dir)) out.push(pid);
  }
  return out;
}

/** labPids are the PIDs of the lab's processes that are alive, by name (from `<dir>/pids/`). */
export function labPids(dir?: string): Record<string, number> {
  const d = labDir({ dir });
  const out: Record<string, number> = {};
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(d, 'pids'));
  } catch {
    return out;
  }
  for (const n of names) {
    const pid = running(d, n);
    if (pid !== undefined) out[n] = pid;
  }
  return out;
}

/** rssKiB is the resident set size of process `pid` in KiB (VmRSS in /proc), or undefined when it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** ServerSpec describes a lab process that must be told its ports up front. */
export interface ServerSpec {
  /** How many ports it needs. */
  ports: number;
  /** Write its config and start it with startDetached under the server's name, on these ports. */
  start: (ports: number[]) => void | Promise<void>;
  /** Whether it answers as ready on these ports. */
  ready: (ports: number[]) => Promise<boolean>;
  timeoutMs: number;
  intervalMs?: number;
  /** Start-ups that may fail on a taken port before giving up; default 5. */
  attempts?: number;
  log?: (line: string) => void;
  /** For tests: where freePorts picks and reserves ports. */
  portOptions?: PortOptions;
}

/**
 * startServer starts the lab process `name` on ports from freePorts and waits until it is ready and listens on
 * every one of them itself (an answer from another process on the port does not count). When its log says a port
 * was taken (bind: address already in use), it stops the process and starts it again on new ports. Returns the
 * ports it runs on; on any other failure it stops the process and throws.
 */
export async function startServer(dir: string, name: string, spec: ServerSpec): Promise<number[]> {
  const log = spec.log ?? (() => {});
  const file = logFile(dir, name);
  const attempts = spec.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(spec.ports, spec.portOptions);
    let from = 0;
    try {
      from = fs.statSync(file).size;
    } catch {
      /* no log yet */
    }
    const clash = () => {
      try {
        const fd = fs.openSync(file, 'r');
        try {
          const buf = Buffer.alloc(Math.max(0, fs.fstatSync(fd).size - from));
          fs.readSync(fd, buf, 0, buf.length, from);
          return ADDRESS_IN_USE.exec(buf.toString('utf8'))?.[0];
        } finally {
          fs.closeSync(fd);
        }
      } catch {
        return undefined;
      }
    };
    try {
      await spec.start(ports);
      await waitFor(
        `${name} on port ${ports.join(', ')}`,
        async () => {
          const pid = running(dir, name);
          return pid !== undefined && (await spec.ready(ports)) && ports.every((p) => listensOn(pid, p));
        },
        {
          timeoutMs: spec.timeoutMs,
          dir,
          proc: name,
          intervalMs: spec.intervalMs,
          failWhen: () => (clash() ? `${name} could not bind port ${ports.join(', ')} (${clash()})` : undefined),
        },
      );
      releasePorts(ports, spec.portOptions); // bound now: nobody else can take them
      return ports;
    } catch (err) {
      await stopProcesses(dir, [name]).catch(() => {});
      const why = clash();
      if (!why || attempt >= attempts) throw err;
      log(
        `${name}: a port of ${ports.join(', ')} was taken (${why}); starting again on new ports (attempt ` +
          `${attempt + 1} of ${attempts})`,
      );
    }
  }
}
