/**
 * TCP ports for lab processes that must be told their port up front (etcd, kube-apiserver, sshd, ...).
 *
 * A port found free by binding and releasing it can be taken by someone else before the process binds it. Two
 * things close that window:
 * - ports come from a range below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so the kernel
 *   never hands them to a `listen(0)` or to an outgoing connection;
 * - each port handed out is reserved for RESERVATION_MS by a file `<RESERVATIONS>/<port>` made with O_EXCL, so no
 *   other lab, suite or demo on this machine gets it while its process starts.
 * What remains (a program outside the lab binding the port anyway) is caught by the start-up retry in
 * process.ts (`startServer`), which uses `listensOn` to tell its process from whoever else answers on the port.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** RESERVATIONS is the machine-wide folder of port reservations, shared by every checkout and user (not $TMPDIR). */
export const RESERVATIONS = '/tmp/flux-lab-ports';
/** RESERVATION_MS is how long a reservation keeps a port from other allocators: ample time for a process to bind it. */
export const RESERVATION_MS = 10 * 60_000;
const LOWEST = 20_000;

/** PortOptions tune freePorts; the defaults are right outside tests. */
export interface PortOptions {
  /** First and last port to pick from (inclusive); default: LOWEST up to just below the ephemeral range. */
  range?: [number, number];
  /** Folder of reservations; default RESERVATIONS. */
  reservations?: string;
}

/** portRange is the range freePorts picks from: [20000, start of the ephemeral range), or the ports above it. */
export function portRange(): [number, number] {
  let lo = 32768;
  let hi = 60999;
  try {
    [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    /* not Linux: the usual defaults */
  }
  if (lo - LOWEST >= 2000) return [LOWEST, lo - 1];
  if (65535 - hi >= 2000) return [hi + 1, 65535];
  throw new Error(`no room for lab ports outside the ephemeral range ${lo}-${hi} (net.ipv4.ip_local_port_range)`);
}

/** canBind tells whether 127.0.0.1:port can be listened on right now. */
export function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Reserve `port` unless someone else holds a fresh reservation; an expired one is removed (and not reused now). */
function reserve(dir: string, port: number): boolean {
  const file = path.join(dir, String(port));
  try {
    fs.writeFileSync(file, `${process.pid} ${new Date().toISOString()}\n`, { flag: 'wx' });
    return true;
  } catch (err: any) {
    if (err.code !== 'EEXIST') throw err;
  }
  try {
    if (Date.now() - fs.statSync(file).mtimeMs > RESERVATION_MS) fs.rmSync(file, { force: true });
  } catch {
    /* removed meanwhile */
  }
  return false;
}

/**
 * freePorts picks `n` distinct ports on 127.0.0.1 that are free now and reserves them for RESERVATION_MS (see the
 * module comment), so that concurrent labs, suites and demos never get the same port. Throws when the range has
 * no `n` free ports.
 */
export async function freePorts(n: number, opts: PortOptions = {}): Promise<number[]> {
  const [lo, hi] = opts.range ?? portRange();
  const dir = opts.reservations ?? RESERVATIONS;
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, 0o1777); // like /tmp: every user may reserve, nobody removes others' fresh reservations
  }
  const size = hi - lo + 1;
  const picked: number[] = [];
  // Walk the range from a random start, so callers rarely probe the same ports.
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size && picked.length < n; i++) {
    const port = lo + ((start + i) % size);
    if (!reserve(dir, port)) continue;
    if (await canBind(port)) picked.push(port);
    else fs.rmSync(path.join(dir, String(port)), { force: true });
  }
  if (picked.length < n) {
    for (const p of picked) fs.rmSync(path.join(dir, String(p)), { force: true });
    throw new Error(`no ${n} free ports in ${lo}-${hi} (reservations in ${dir})`);
  }
  return picked;
}

/** releasePorts drops the reservations of ports that are bound now or no longer needed. */
export function releasePorts(ports: number[], opts: PortOptions = {}): void {
  for (const p of ports) fs.rmSync(path.join(opts.reservations ?? RESERVATIONS, String(p)), { force: true });
}

/** The listening TCP sockets of this network namespace: socket inode -> port (from /proc/net/tcp and tcp6). */
function listeningSockets(): Map<string, number> {
  const out = new Map<string, number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === '0A') out.set(f[9], parseInt(f[1].slice(f[1].lastIndexOf(':') + 1), 16));
    }
  }
  return out;
}

/** listeningPorts are the TCP ports process `pid` itself listens on (from /proc; needs root for others' processes). */
export function listeningPorts(pid: number): number[] {
  const sockets = listeningSockets();
  const ports = new Set<number>();
  let fds: string[] = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && sockets.has(m[1])) ports.add(sockets.get(m[1])!);
    } catch {
      /* closed meanwhile */
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** listensOn tells whether process `pid` itself (not some other process) listens on TCP `port`. */
export function listensOn(pid: number, port: number): boolean {
  return listeningPorts(pid).includes(port);
}

/** ADDRESS_IN_USE matches the bind failures of Go programs, sshd and node in a log. */
export const ADDRESS_IN_USE = /address already in use|EADDRINUSE|Cannot bind any address/i;
