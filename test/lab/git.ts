/**
 * Git over ssh: an OpenSSH sshd (own config, host keys and port) serving bare repos under `<dir>/git/` through the
 * git-only system user GIT_USER (shell git-shell). Each authorized key has a forced command (`lab-git rw|ro <git
 * root>`, installed in `~fluxlab/git-shell-commands/`) that allows only git-upload-pack/-archive, plus
 * git-receive-pack for `rw` keys, on repos inside that lab's `<dir>/git/`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { labDir, readLabEnvOrNull } from './env.ts';
import { childEnv, run, startDetached, startServer, waitFor } from './process.ts';

/** GIT_USER is the git-only system account that owns the lab's repos and that ssh logs into. */
export const GIT_USER = 'fluxlab';
/** SSHD is the OpenSSH server the lab runs. */
export const SSHD = '/usr/sbin/sshd';
/** GIT_SHELL is the login shell of GIT_USER. */
export const GIT_SHELL = '/usr/bin/git-shell';
const FORCED_COMMAND = 'lab-git';

/** The forced command of every lab key, installed as `~fluxlab/git-shell-commands/lab-git` (git-shell runs only
 * commands from there). Arguments: `rw|ro` and the lab's git root; the client's request is in SSH_ORIGINAL_COMMAND. */
const WRAPPER = `#!/bin/sh
# Forced command of the flux lab's ssh keys (test/lab/git.ts): lab-git rw|ro <git root>
# Allows only git-upload-pack / git-upload-archive, plus git-receive-pack for rw keys, on repos under <git root>.
set -u
access="\${1:-}"; root="\${2:-}"
deny() { echo "lab-git: $*" >&2; exit 128; }
case "$access" in rw|ro) ;; *) deny "bad access mode";; esac
case "$root" in /*) ;; *) deny "bad git root";; esac
cmd="\${SSH_ORIGINAL_COMMAND:-}"
case "$cmd" in
  "git-upload-pack "*|"git-upload-archive "*) ;;
  "git-receive-pack "*) [ "$access" = rw ] || deny "read-only key: push refused" ;;
  "") deny "no interactive login; git only" ;;
  *) deny "only git fetch/push/archive is allowed" ;;
esac
verb="\${cmd%% *}"
repo="\${cmd#* }"
case "$repo" in "'"*"'") repo="\${repo#\\'}"; repo="\${repo%\\'}" ;; esac
case "$repo" in *..*|"") deny "bad repository path" ;; esac
case "$repo" in *[!A-Za-z0-9._/-]*) deny "bad repository path" ;; esac
repo="\${repo#/}"
[ -d "$root/$repo" ] || deny "no such repository: /$repo"
exec git "\${verb#git-}" "$root/$repo"
`;

/**
 * ensureGitUser creates the git-only system user GIT_USER (shell git-shell) with the forced command; returns its home.
 */
export async function ensureGitUser(log: (l: string) => void): Promise<string> {
  let entry = (await run('getent', ['passwd', GIT_USER]).catch(() => '')).trim();
  if (!entry) {
    log(`creating system user ${GIT_USER} (shell ${GIT_SHELL})`);
    const added = await run('useradd', [
      '--system',
      '--user-group',
      '--create-home',
      '--home-dir',
      `/var/lib/${GIT_USER}`,
      '--shell',
      GIT_SHELL,
      GIT_USER,
    ]).then(
      () => undefined,
      (err: Error) => err,
    );
    entry = (await run('getent', ['passwd', GIT_USER]).catch(() => '')).trim();
    if (!entry) throw added ?? new Error(`useradd made no ${GIT_USER} user`); // a lab starting beside may have made it meanwhile
  }
  const fields = entry.split(':');
  const home = fields[5];
  if (fields[6] !== GIT_SHELL) await run('usermod', ['-s', GIT_SHELL, GIT_USER]);
  const shadow = (await run('getent', ['shadow', GIT_USER]).catch(() => '')).split(':')[1] ?? '';
  if (shadow.startsWith('!')) await run('usermod', ['-p', '*', GIT_USER]); // locked accounts cannot log in even by key
  const cmdDir = path.join(home, 'git-shell-commands');
  fs.mkdirSync(cmdDir, { recursive: true, mode: 0o755 });
  const wrapper = path.join(cmdDir, FORCED_COMMAND);
  let current = '';
  try {
    current = fs.readFileSync(wrapper, 'utf8');
  } catch {
    /* missing */
  }
  if (current !== WRAPPER) {
    const tmp = `${wrapper}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`; // labs may start side by side
    fs.writeFileSync(tmp, WRAPPER, { mode: 0o755 });
    fs.renameSync(tmp, wrapper);
  }
  return home;
}

function chownR(p: string, uid: number, gid: number): void {
  fs.chownSync(p, uid, gid);
  if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chownR(path.join(p, e), uid, gid);
}

/** The key blob (`type base64`) of a public-key line, or throws. */
function parsePublicKey(text: string): { blob: string; line: string } {
  const line = text.trim().split('\n')[0].trim();
  const m =
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-[A-Za-z0-9@._-]+)\s+([A-Za-z0-9+\/]+={0,3})(\s+.*)?$/.exec(
      line,
    );
  if (!m) throw new Error(`not an OpenSSH public key: ${line.slice(0, 60)}`);
  return { blob: `${m[1]} ${m[2]}`, line: `${m[1]} ${m[2]}${(m[3] ?? '').replace(/[\r"]/g, '')}` };
}

/**
 * authorizeKey authorizes an ssh public key on the lab's git server, like registering a deploy key on a git host:
 * `ro` may fetch/clone any lab repo, `rw` may also push. `key` is a path to a `.pub` file or the key line itself.
 * Authorizing a key again replaces its earlier access.
 */
export function authorizeKey(key: string, opts: { access: 'ro' | 'rw'; dir?: string }): void {
  const dir = labDir(opts);
  if (opts.access !== 'ro' && opts.access !== 'rw') throw new Error(`access must be ro or rw, not ${opts.access}`);
  const text = /^(ssh-|ecdsa-|sk-)/.test(key.trim()) ? key : fs.readFileSync(key, 'utf8');
  const { blob, line } = parsePublicKey(text);
  const file = path.join(dir, 'ssh', 'authorized_keys');
  const gitRoot = path.join(dir, 'git');
  let existing: string[] = [];
  try {
    existing = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.includes(` ${blob}`));
  } catch {
    if (!fs.existsSync(path.join(dir, 'ssh'))) throw new Error(`no lab at ${dir}: run labUp first`);
  }
  existing.push(`restrict,command="${FORCED_COMMAND} ${opts.access} ${gitRoot}" ${line}`);
  fs.writeFileSync(file + '.tmp', existing.join('\n') + '\n', { mode: 0o644 });
  fs.renameSync(file + '.tmp', file);
}

/** createRepo creates an empty bare repo `<name>.git` (branch main) in the lab's git server; returns its ssh:// URL. */
export function createRepo(name: string, opts: { dir?: string } = {}): string {
  const dir = labDir(opts);
  const base = name.endsWith('.git') ? name.slice(0, -4) : name;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(base) || base.includes('..')) throw new Error(`bad repo name: ${name}`);
  const repo = path.join(dir, 'git', `${base}.git`);
  if (fs.existsSync(repo)) throw new Error(`repo exists: ${repo}`);
  execFileSync('git', ['init', '-q', '--bare', '-b', 'main', repo], {
    env: childEnv(),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const [, , uid, gid] = execFileSync('getent', ['passwd', GIT_USER], { encoding: 'utf8' }).trim().split(':');
  chownR(repo, Number(uid), Number(gid));
  const env = readLabEnvOrNull(dir);
  const port = env?.LAB_GIT_PORT ?? fs.readFileSync(path.join(dir, 'ssh', 'port'), 'utf8').trim();
  return `ssh://${GIT_USER}@127.0.0.1:${port}/${base}.git`;
}

/**
 * gitSshCommand is a GIT_SSH_COMMAND for `key` against the lab's known_hosts, strict host key checking, no agent, no
 * config.
 */
export function gitSshCommand(key: string, knownHosts: string): string {
  return (
    `ssh -F /dev/null -i ${key} -o IdentitiesOnly=yes -o IdentityAgent=none -o ` +
    `UserKnownHostsFile=${knownHosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes`
  );
}

function sshdConfig(dir: string, port: number): string {
  const ssh = path.join(dir, 'ssh');
  return [
    '# flux lab sshd (test/lab/git.ts): git only, key auth only',
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${ssh}/ssh_host_ed25519_key`,
    `HostKey ${ssh}/ssh_host_ecdsa_key`,
    `PidFile ${ssh}/sshd.pid`,
    `AuthorizedKeysFile ${ssh}/authorized_keys`,
    `AllowUsers ${GIT_USER}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'HostbasedAuthentication no',
    'PermitRootLogin no',
    'PermitEmptyPasswords no',
    'UsePAM no',
    'StrictModes no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PermitTunnel no',
    'PermitTTY no',
    'PrintMotd no',
    'AcceptEnv GIT_PROTOCOL',
    'MaxStartups 100:30:200',
    'LogLevel INFO',
    '',
  ].join('\n');
}

async function gitLsRemote(url: string, key: string, knownHosts: string): Promise<string> {
  return run('git', ['ls-remote', url], {
    env: childEnv({ GIT_SSH_COMMAND: gitSshCommand(key, knownHosts) }),
    timeoutMs: 15_000,
  });
}

/** GitServer is where startGitServer serves the lab's repos. */
export interface GitServer {
  port: number;
  /** ssh:// URL of the empty gitops repo. */
  url: string;
  knownHosts: string;
}

/**
 * startGitServer starts the lab's sshd on a free port (host keys and the writer key in `<dir>/ssh` and `writer`
 * must exist), authorizes the writer read-write, creates the empty `gitops.git` and waits until the writer can
 * `git ls-remote` it with strict host key checking.
 */
export async function startGitServer(dir: string, writer: string, log: (line: string) => void): Promise<GitServer> {
  const sshDir = path.join(dir, 'ssh');
  const config = path.join(sshDir, 'sshd_config');
  const knownHosts = path.join(sshDir, 'known_hosts');
  fs.writeFileSync(path.join(sshDir, 'authorized_keys'), '', { mode: 0o644 });
  authorizeKey(`${writer}.pub`, { access: 'rw', dir });
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation dir
  const [port] = await startServer(dir, 'sshd', {
    ports: 1,
    start: async ([p]) => {
      fs.writeFileSync(path.join(sshDir, 'port'), `${p}\n`);
      fs.writeFileSync(config, sshdConfig(dir, p));
      fs.writeFileSync(
        knownHosts,
        ['ed25519', 'ecdsa']
          .map((t) => {
            const [type, blob] = fs
              .readFileSync(path.join(sshDir, `ssh_host_${t}_key.pub`), 'utf8')
              .trim()
              .split(/\s+/);
            return `[127.0.0.1]:${p} ${type} ${blob}\n`;
          })
          .join(''),
      );
      await run(SSHD, ['-t', '-f', config]);
      startDetached(dir, 'sshd', SSHD, ['-D', '-e', '-f', config]);
    },
    ready: async () => true, // listening on its port is enough; git ls-remote below proves the rest
    timeoutMs: 30_000,
    intervalMs: 100,
    log,
  });
  const url = createRepo('gitops', { dir });
  await waitFor(
    'git ls-remote over ssh',
    async () => {
      await gitLsRemote(url, writer, knownHosts);
      return true;
    },
    { timeoutMs: 30_000, dir, proc: 'sshd' },
  );
  return { port, url, knownHosts };
}
