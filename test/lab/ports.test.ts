/**
 * Tests of the lab's port allocation (ports.ts) and of the start-up retry on a taken port (startServer in
 * process.ts). No lab binaries needed: the "server" is a small node script. Fast; runs anywhere with /proc.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { canBind, freePorts, listensOn, portRange, releasePorts, type PortOptions } from './ports.ts';
import { running, startDetached, startServer, stopProcesses } from './process.ts';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-lab-ports-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A private range of `n` ports that are free now, and a private reservations folder. */
async function privateRange(n: number): Promise<PortOptions & { range: [number, number] }> {
  const [lo, hi] = portRange();
  for (;;) {
    const base = lo + Math.floor(Math.random() * (hi - lo - n));
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => canBind(base + i)));
    if (ok.every(Boolean))
      return { range: [base, base + n - 1], reservations: fs.mkdtempSync(path.join(work, 'reservations-')) };
  }
}

test('freePorts picks ports below the kernel ephemeral range, so no listen(0) or outgoing connection takes them', async () => {
  const [ephemeralLow] = fs
    .readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number);
  const ports = await freePorts(5);
  releasePorts(ports);
  assert.equal(new Set(ports).size, 5);
  for (const p of ports) assert.ok(p >= 20_000 && p < ephemeralLow, `${p} is in [20000, ${ephemeralLow})`);
});

test('a port freePorts gave to another process is not given again before anyone binds it', async () => {
  const opts = await privateRange(6);
  const script = `import { freePorts } from ${JSON.stringify(path.join(import.meta.dirname, 'ports.ts'))};
    console.log(JSON.stringify(await freePorts(3, ${JSON.stringify(opts)})));`;
  const theirs: number[] = JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
  );
  const ours = await freePorts(3, opts);
  assert.equal(theirs.length, 3);
  assert.deepEqual(
    ours.filter((p) => theirs.includes(p)),
    [],
    `ours ${ours} and theirs ${theirs} are disjoint`,
  );
  for (const p of [...ours, ...theirs]) assert.ok(p >= opts.range[0] && p <= opts.range[1], `${p} is in the range`);
  await assert.rejects(freePorts(1, opts), /no 1 free ports/, 'all six are reserved: none is left');
});

test(
  'startServer starts again on a new port when another process took its port first, and that process answering ' +
    'does not count',
  async () => {
    const dir = path.join(work, 'lab');
    for (const sub of ['pids', 'logs']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    const server = path.join(dir, 'server.mjs');
    fs.writeFileSync(
      server,
      `import http from 'node:http';
    const s = http.createServer((req, res) => res.end('ours'));
    s.on('error', (err) => { console.error(err.message); process.exit(1); });
    s.listen(Number(process.argv[2]), '127.0.0.1');\n`,
    );
    const opts = await privateRange(4);
    const intruders: http.Server[] = [];
    const stolen: number[] = [];
    let starts = 0;
    try {
      const [port] = await startServer(dir, 'probe', {
        ports: 1,
        start: async ([p]) => {
          starts++;
          if (starts === 1) {
            // someone else binds the port between freePorts and our process, and answers like ours would
            const intruder = http.createServer((req, res) => res.end('intruder'));
            await new Promise<void>((resolve) => intruder.listen(p, '127.0.0.1', resolve));
            intruders.push(intruder);
            stolen.push(p);
          }
          startDetached(dir, 'probe', process.execPath, [server, String(p)]);
        },
        ready: async ([p]) => (await fetch(`http://127.0.0.1:${p}/`)).ok,
        timeoutMs: 20_000,
        intervalMs: 20,
        portOptions: opts,
      });
      assert.equal(starts, 2, 'started twice');
      assert.notEqual(port, stolen[0], 'not on the taken port');
      assert.ok(listensOn(running(dir, 'probe')!, port), 'the probe process itself listens on the port it returned');
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'ours');
      assert.match(fs.readFileSync(path.join(dir, 'logs', 'probe.log'), 'utf8'), /EADDRINUSE/);
    } finally {
      await stopProcesses(dir, ['probe']);
      for (const s of intruders) s.close();
    }
  },
);

test('startServer gives up and stops the process when it fails for another reason than a taken port', async () => {
  const dir = path.join(work, 'lab-fails');
  for (const sub of ['pids', 'logs']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  const script = path.join(dir, 'sleeper.mjs');
  fs.writeFileSync(script, 'setInterval(() => {}, 1000);\n');
  let starts = 0;
  await assert.rejects(
    startServer(dir, 'sleeper', {
      ports: 1,
      start: () => {
        starts++;
        startDetached(dir, 'sleeper', process.execPath, [script]);
      },
      ready: async () => false,
      timeoutMs: 1000,
      intervalMs: 50,
      portOptions: await privateRange(2),
    }),
    /timed out/,
  );
  assert.equal(starts, 1, 'no retry');
  assert.equal(running(dir, 'sleeper'), undefined, 'stopped');
});
