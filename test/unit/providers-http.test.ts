import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { providerFor, ProviderError, type DeployKeyProvider, type ProviderOptions } from '../../src/providers/index.ts';

// How every provider call is bounded — deadline, body cap, retries, redirects, foreign links — shown
// through the GitHub adapter, since all adapters share one HTTP client.

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void;

const TOKEN = 'ghp_bounded0123456789';
const servers: http.Server[] = [];
const rawServers: net.Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  for (const s of rawServers) s.close();
});

/** serve starts a server on 127.0.0.1 whose handler sees each request and its number. */
async function serve(handler: Handler): Promise<{ url: string; hits: { method: string; url: string }[] }> {
  const state = { url: '', hits: [] as { method: string; url: string }[] };
  const server = http.createServer((req, res) => {
    state.hits.push({ method: req.method!, url: req.url! });
    req.resume();
    req.on('end', () => handler(req, res, state.hits.length));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return state;
}

/** github is a GitHub adapter for acme/fleet whose API is at `apiUrl`. */
function github(apiUrl: string, opts: Partial<ProviderOptions> = {}): DeployKeyProvider {
  return providerFor({
    type: 'github',
    apiUrl,
    token: TOKEN,
    repoUrl: 'ssh://git@ghe.example.com/acme/fleet.git',
    retryBaseMs: 5,
    ...opts,
  });
}

const json = (res: http.ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(code, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const KEY = { id: 1, key: 'ssh-ed25519 AAAA', title: 'flux', read_only: true };

/** failure returns the ProviderError a call rejects with, and how long it took. */
async function failure(call: () => Promise<unknown>): Promise<{ err: ProviderError; ms: number }> {
  const start = Date.now();
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof ProviderError, String(err));
    assert.ok(!err.message.includes(TOKEN), err.message);
    return { err, ms: Date.now() - start };
  }
  assert.fail('the call succeeded');
}

describe('a provider call', () => {
  test('is cut at its deadline by a server that sends one byte every 100 ms', { timeout: 10_000 }, async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 100);
      res.on('close', () => clearInterval(drip));
    });
    const { err, ms } = await failure(() => github(s.url, { timeoutMs: 800 }).list());
    assert.equal(err.kind, 'unreachable');
    assert.match(err.message, /no complete answer from http:\/\/127\.0\.0\.1:\d+ within 800 ms/);
    assert.ok(ms >= 700 && ms < 2000, `took ${ms} ms`);
    assert.equal(s.hits.length, 1, 'a call that ran out of time is not tried again');
  });

  test('has one deadline for all the pages of a listing, not one per page', { timeout: 10_000 }, async () => {
    const s = await serve((req, res) => {
      const page = Number(new URL(req.url!, 'http://x').searchParams.get('page') ?? 1);
      setTimeout(
        () =>
          json(res, 200, [{ ...KEY, id: page }], {
            link: `<${s.url}/repos/acme/fleet/keys?page=${page + 1}>; rel="next"`,
          }),
        300,
      );
    });
    const { err, ms } = await failure(() => github(s.url, { timeoutMs: 1000 }).list());
    assert.equal(err.kind, 'unreachable');
    assert.ok(ms < 1500, `took ${ms} ms`);
    assert.ok(s.hits.length <= 4, `${s.hits.length} pages`);
  });

  test('is cut when the answer outgrows the body cap', { timeout: 10_000 }, async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, ' ');
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    });
    const { err } = await failure(() => github(s.url, { maxBodyBytes: 256 * 1024 }).list());
    assert.equal(err.kind, 'other');
    assert.match(err.message, /larger than the 262144-byte limit/);
  });

  const retries: { method: string; call: (p: DeployKeyProvider) => Promise<unknown>; hits: number }[] = [
    { method: 'GET', call: (p) => p.list(), hits: 2 },
    { method: 'DELETE', call: (p) => p.remove('1'), hits: 2 },
    { method: 'POST', call: (p) => p.add('flux', 'ssh-ed25519 AAAA'), hits: 1 },
  ];
  for (const r of retries) {
    test(
      `with ${r.method} ${r.hits === 2 ? 'is tried again' : 'is not tried again, lest it happen twice,'} after a ` +
        `502`,
      async () => {
        const s = await serve((req, res, hit) => {
          if (hit === 1) return json(res, 502, { message: 'Bad Gateway' });
          if (req.method === 'DELETE') return res.writeHead(204).end();
          json(res, 200, [KEY]);
        });
        const p = github(s.url);
        if (r.hits === 2) await r.call(p);
        else assert.equal((await failure(() => r.call(p))).err.kind, 'unreachable');
        assert.equal(s.hits.length, r.hits);
      },
    );
  }

  test('is tried at most three times against a server that keeps failing, and says it is in trouble', async () => {
    const s = await serve((_req, res) => json(res, 503, { message: 'Service Unavailable' }));
    const { err } = await failure(() => github(s.url).list());
    assert.equal(err.kind, 'unreachable');
    assert.equal(err.status, 503);
    assert.match(err.message, /answered 503 to listing deploy keys \(Service Unavailable\)/);
    assert.equal(s.hits.length, 3);
  });

  test('waits as long as Retry-After asks before trying a 503 again', async () => {
    const s = await serve((_req, res, hit) =>
      hit === 1 ? json(res, 503, { message: 'later' }, { 'Retry-After': '1' }) : json(res, 200, [KEY]),
    );
    const start = Date.now();
    await github(s.url).list();
    assert.ok(Date.now() - start >= 950, `took ${Date.now() - start} ms`);
    assert.equal(s.hits.length, 2);
  });

  const cuts: { method: string; call: (p: DeployKeyProvider) => Promise<unknown>; connections: number }[] = [
    { method: 'GET', call: (p) => p.list(), connections: 3 },
    { method: 'POST', call: (p) => p.add('flux', 'ssh-ed25519 AAAA'), connections: 1 },
  ];
  for (const c of cuts) {
    test(
      `with ${c.method} meets a server that cuts every connection ${c.connections} time(s), then says it cannot ` +
        `reach it`,
      async () => {
        const cut = net.createServer((socket) => socket.destroy());
        rawServers.push(cut);
        let connections = 0;
        cut.on('connection', () => connections++);
        await new Promise<void>((r) => cut.listen(0, '127.0.0.1', r));
        const url = `http://127.0.0.1:${(cut.address() as net.AddressInfo).port}`;
        const { err } = await failure(() => c.call(github(url)));
        assert.equal(err.kind, 'unreachable');
        assert.match(err.message, /cannot reach http:\/\/127\.0\.0\.1:\d+/);
        assert.equal(connections, c.connections);
      },
    );
  }

  test('does not follow a next page on another host, so the token stays home', async () => {
    const elsewhere = await serve((_req, res) => json(res, 200, []));
    const s = await serve((_req, res) =>
      json(res, 200, [KEY], { link: `<${elsewhere.url}/repos/acme/fleet/keys?page=2>; rel="next"` }),
    );
    const { err } = await failure(() => github(s.url).list());
    assert.equal(err.kind, 'other');
    assert.match(err.message, /another host .*the token is not sent there/);
    assert.equal(elsewhere.hits.length, 0);
  });

  test('follows a redirect on the same host (a renamed repository), but not one to another host', async () => {
    const elsewhere = await serve((_req, res) => json(res, 200, [KEY]));
    const s = await serve((req, res) => {
      if (req.url!.startsWith('/repos/acme/fleet/'))
        return res.writeHead(301, { Location: '/repositories/42/keys?per_page=100' }).end();
      if (req.url!.startsWith('/repositories/42/')) return json(res, 200, [KEY]);
      res.writeHead(307, { Location: `${elsewhere.url}/x` }).end();
    });
    assert.equal((await github(s.url).list()).length, 1);
    assert.deepEqual(
      s.hits.map((h) => h.url),
      ['/repos/acme/fleet/keys?per_page=100', '/repositories/42/keys?per_page=100'],
    );
    const { err } = await failure(() => github(`${s.url}/other`).list());
    assert.match(err.message, /redirected to another host/);
    assert.equal(elsewhere.hits.length, 0);
  });

  test('says the API URL is likely wrong when a 200 is not the documented JSON', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<html>Sign in</html>');
    });
    const { err } = await failure(() => github(s.url).list());
    assert.equal(err.kind, 'other');
    assert.match(err.message, /is the API URL right\?/);
  });

  test('refuses a key id that is not a number before anything is sent', async () => {
    const s = await serve((_req, res) => json(res, 204, {}));
    const { err } = await failure(() => github(s.url).remove('../../admin'));
    assert.equal(err.kind, 'invalid');
    assert.equal(s.hits.length, 0);
  });

  test('refuses a public key that is no OpenSSH key line before anything is sent', async () => {
    const s = await serve((_req, res) => json(res, 201, KEY));
    const { err } = await failure(() => github(s.url).add('flux', '-----BEGIN OPENSSH PRIVATE KEY-----'));
    assert.equal(err.kind, 'invalid');
    assert.equal(s.hits.length, 0);
  });
});
