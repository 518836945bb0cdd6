import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { CancelledError } from '../../src/cancel.ts';
import { bytesInFlight } from '../../src/http/bounded.ts';
import { KubeClient, KubeError, type KubeClientOptions } from '../../src/kube/client.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void;

/** Server is a local API server stand-in that counts requests and connections. */
interface Server {
  url: string;
  hits: { method: string; url: string; auth?: string }[];
  connections: number;
  closed: Promise<void>;
}

const servers: (http.Server | https.Server)[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

/** serve starts a server on 127.0.0.1 (https with `tls`) whose handler sees each request and its number. */
async function serve(handler: Handler, tls?: { cert: Buffer; key: Buffer }): Promise<Server> {
  let onClose!: () => void;
  const state: Server = { url: '', hits: [], connections: 0, closed: new Promise<void>((r) => (onClose = r)) };
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    state.hits.push({ method: req.method!, url: req.url!, auth: req.headers.authorization });
    res.on('close', () => res.writableFinished || onClose());
    req.resume();
    req.on('end', () => handler(req, res, state.hits.length));
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  server.keepAliveTimeout = 60_000;
  server.on(tls ? 'secureConnection' : 'connection', () => state.connections++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

/** client builds a KubeClient the way the operator does for a target: from inline kubeconfig YAML. */
function client(server: string, opts: KubeClientOptions = {}, caData?: string): KubeClient {
  const text = yaml.dump({
    clusters: [{ name: 'c', cluster: { server, 'certificate-authority-data': caData } }],
    users: [{ name: 'u', user: { token: 'tenant-token' } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  return KubeClient.fromKubeconfig(text, opts);
}

const json = (res: http.ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(code, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const status = (code: number, message = 'try later') => ({
  kind: 'Status',
  status: 'Failure',
  reason: 'ServiceUnavailable',
  message,
  code,
});

/** failure returns the KubeError a call rejects with, and how long it took. */
async function failure(call: () => Promise<unknown>): Promise<{ err: KubeError; ms: number }> {
  const start = Date.now();
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof KubeError, String(err));
    return { err, ms: Date.now() - start };
  }
  assert.fail('the call succeeded');
}

describe('a KubeClient call', () => {
  test('is cut at its deadline by a server that sends one byte every 200 ms', { timeout: 10_000 }, async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 200);
      res.on('close', () => clearInterval(drip));
    });
    const { err, ms } = await failure(() => client(s.url, { timeoutMs: 1000 }).request('GET', '/api/v1/namespaces'));
    assert.equal(err.reason, 'Timeout');
    assert.ok(ms >= 900 && ms < 2500, `took ${ms} ms`);
    await s.closed;
    assert.equal(s.hits.length, 1);
  });

  test(
    'is cut when the answer outgrows the body cap, however long the server would go on',
    { timeout: 15_000 },
    async () => {
      const s = await serve((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 'x');
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
      });
      const { err, ms } = await failure(() =>
        client(s.url, { timeoutMs: 20_000, maxBodyBytes: 1024 * 1024 }).request('GET', '/api/v1/secrets'),
      );
      assert.equal(err.reason, 'ResponseTooLarge');
      assert.match(err.message, /larger than the 1048576-byte limit/);
      assert.ok(ms < 10_000, `took ${ms} ms`);
      await s.closed;
    },
  );

  test('is refused at once when the answer announces a length over the cap', { timeout: 10_000 }, async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Length': String(64 * 1024 * 1024) });
      res.write('{');
    });
    const { err } = await failure(() =>
      client(s.url, { timeoutMs: 20_000, maxBodyBytes: 1024 }).request('GET', '/api/v1/secrets'),
    );
    assert.equal(err.reason, 'ResponseTooLarge');
  });

  const retries: { method: string; hits: number }[] = [
    { method: 'GET', hits: 2 },
    { method: 'DELETE', hits: 2 },
    { method: 'PATCH', hits: 1 },
    { method: 'POST', hits: 1 },
  ];
  for (const r of retries) {
    test(`with ${r.method} ${r.hits === 2 ? 'is tried again' : 'is not tried again'} after a 503`, async () => {
      const s = await serve((_req, res, hit) =>
        hit === 1 ? json(res, 503, status(503)) : json(res, 200, { ok: true }),
      );
      const c = client(s.url, { retryBaseMs: 10 });
      if (r.hits === 2)
        assert.deepEqual(await c.request(r.method, '/api/v1/namespaces/a', r.method === 'GET' ? undefined : {}), {
          ok: true,
        });
      else assert.equal((await failure(() => c.request(r.method, '/api/v1/namespaces/a', {}))).err.code, 503);
      assert.equal(s.hits.length, r.hits);
    });
  }

  test('waits as long as Retry-After asks before trying again', async () => {
    const s = await serve((_req, res, hit) =>
      hit === 1 ? json(res, 429, status(429), { 'Retry-After': '1' }) : json(res, 200, { ok: true }),
    );
    const start = Date.now();
    assert.deepEqual(await client(s.url, { retryBaseMs: 1 }).request('GET', '/api'), { ok: true });
    assert.ok(Date.now() - start >= 950, `took ${Date.now() - start} ms`);
    assert.equal(s.hits.length, 2);
  });

  test('gives up at once when Retry-After reaches past the deadline', async () => {
    const s = await serve((_req, res) => json(res, 503, status(503), { 'Retry-After': '30' }));
    const { err, ms } = await failure(() => client(s.url, { timeoutMs: 3000 }).request('GET', '/api'));
    assert.equal(err.code, 503);
    assert.equal(err.retryAfterMs, 30_000);
    assert.ok(ms < 1500, `took ${ms} ms`);
    assert.equal(s.hits.length, 1);
  });

  test('is tried at most three times', async () => {
    const s = await serve((_req, res) => json(res, 500, status(500)));
    assert.equal((await failure(() => client(s.url, { retryBaseMs: 5 }).request('GET', '/api'))).err.code, 500);
    assert.equal(s.hits.length, 3);
  });

  test('whose kept-alive connection the server dropped unanswered is sent again on a new one, even a POST', async () => {
    const s = await serve((req, res, hit) => (hit === 2 ? req.socket.destroy() : json(res, 201, { hit })));
    const c = client(s.url);
    await c.request('GET', '/api');
    assert.deepEqual(await c.request('POST', '/api/v1/namespaces', {}), { hit: 3 });
    assert.equal(s.connections, 2);
  });

  test("quotes a server's message on one bounded line", async () => {
    const s = await serve((_req, res) => json(res, 422, status(422, `bad\r\nX-Injected: 1\n${'y'.repeat(10_000)}`)));
    const { err } = await failure(() => client(s.url).request('PATCH', '/api/v1/namespaces/a', {}));
    assert.equal(err.code, 422);
    assert.ok(!/[\r\n]/.test(err.message));
    assert.ok(err.message.length < 700, `${err.message.length} characters`);
  });
});

describe('a KubeClient', () => {
  test('an answer over the cap is cut off, and the bytes held for answers in flight go back to zero', async () => {
    const big = Buffer.from(`[${'{},'.repeat(400_000)}{}]`);
    const s = await serve((_req, res) => json(res, 200, JSON.parse(big.toString())));
    const { err } = await failure(() =>
      client(s.url, { maxBodyBytes: 1024 * 1024, maxAttempts: 1 }).request('GET', '/version'),
    );
    assert.equal(err.reason, 'ResponseTooLarge');
    assert.equal(bytesInFlight(), 0);
  });

  test('an error answer that is not a Kubernetes Status is reported by its code alone, never its body', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(500, { 'Content-Type': 'text/html' });
      res.end('<html>internal admin console: secret-sauce</html>');
    });
    const { err } = await failure(() => client(s.url, { maxAttempts: 1 }).request('GET', '/version'));
    assert.equal(err.code, 500);
    assert.match(err.message, /HTTP 500$/);
    assert.ok(!err.message.includes('secret-sauce'));
  });

  test('withSignal: a call in flight ends when its reconcile is cancelled, and the server sees the request go', async () => {
    const s = await serve(() => {}); // never answers
    const cancel = new AbortController();
    const call = client(s.url, { timeoutMs: 120_000 }).withSignal(cancel.signal).request('GET', '/api');
    while (s.hits.length === 0) await new Promise((r) => setImmediate(r));
    cancel.abort(new CancelledError('the reconcile was cancelled'));
    await assert.rejects(call, (err: unknown) => err instanceof CancelledError);
    await s.closed;
  });

  test('sends many calls over one kept-alive connection', async () => {
    const s = await serve((_req, res) => json(res, 200, { ok: true }));
    const c = client(s.url);
    for (let i = 0; i < 20; i++) await c.request('GET', '/api');
    assert.equal(s.hits.length, 20);
    assert.equal(s.connections, 1);
  });

  test("sends many https calls over one TLS connection, verified with the kubeconfig's CA and with its token", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kubeclient-test-'));
    let tls: { cert: Buffer; key: Buffer };
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          'k.pem',
          '-out',
          'c.pem',
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        { cwd: dir, stdio: 'ignore' },
      );
      tls = { cert: readFileSync(join(dir, 'c.pem')), key: readFileSync(join(dir, 'k.pem')) };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const s = await serve((_req, res) => json(res, 200, { ok: true }), tls);
    const c = client(s.url, {}, tls.cert.toString('base64'));
    for (let i = 0; i < 10; i++) await c.request('GET', '/api');
    assert.equal(s.connections, 1);
    assert.ok(s.hits.every((h) => h.auth === 'Bearer tenant-token'));
    // Without the CA the same server is refused.
    assert.equal(
      (await failure(() => client(s.url, { maxAttempts: 1 }).request('GET', '/api'))).err.reason,
      'ConnectionError',
    );
  });

  test('applies under the field manager it was made with, unless the call names another', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/api/v1')
        return json(res, 200, { resources: [{ name: 'configmaps', kind: 'ConfigMap', namespaced: true }] });
      json(res, 200, {});
    });
    const c = client(s.url, { fieldManager: 'tenant-bootstrap' });
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'n' } };
    await c.apply(cm);
    await c.apply(cm, { fieldManager: 'other' });
    const patches = s.hits
      .filter((h) => h.method === 'PATCH')
      .map((h) => new URL(h.url, s.url).searchParams.get('fieldManager'));
    assert.deepEqual(patches, ['tenant-bootstrap', 'other']);
    assert.equal(client(s.url).fieldManager, 'flux-bootstrap-operator');
  });
});
