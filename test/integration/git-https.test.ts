import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Repositories, GitError } from '../../src/git/repository.ts';

// A real git smart-HTTP server: git http-backend behind a tiny CGI bridge that demands basic auth.
const root = mkdtempSync(join(tmpdir(), 'http-git-'));
execFileSync('git', ['init', '-q', '--bare', '-b', 'main', join(root, 'fleet.git')]);
execFileSync('git', ['-C', join(root, 'fleet.git'), 'config', 'http.receivepack', 'true']);
const expected = `Basic ${Buffer.from('bot:s3cret').toString('base64')}`;
let sawHeaders: string[] = [];

const server = createServer((req, res) => {
  sawHeaders.push(req.headers.authorization ?? '');
  if (req.headers.authorization !== expected) {
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
    return;
  }
  const url = new URL(req.url!, 'http://x');
  const cgi = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REMOTE_USER: 'bot',
      REQUEST_METHOD: req.method,
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
    },
  });
  req.pipe(cgi.stdin);
  let head = Buffer.alloc(0);
  let headerDone = false;
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (headerDone) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headerDone = true;
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.subarray(0, end).toString().split('\r\n')) {
      const [k, ...v] = line.split(':');
      if (k.toLowerCase() === 'status') status = parseInt(v.join(':'));
      else headers[k] = v.join(':').trim();
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  cgi.stdout.on('end', () => res.end());
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fleet.git`;
after(() => server.close());

const update = (password: string) =>
  new Repositories(mkdtempSync(join(tmpdir(), 'work-')), { protocols: ['http'] }).update({
    url,
    branch: 'main',
    auth: { transport: 'https', username: 'bot', password },
    author: { name: 'Test', email: 'test@example.com' },
    message: 'over http',
    files: [{ path: 'clusters/a/flux-system/kustomization.yaml', render: () => 'resources: []\n' }],
  });

test('an https push sends the credentials as a basic auth header, never in the URL', async () => {
  sawHeaders = [];
  const r = await update('s3cret');
  assert.equal(r.pushed, true);
  assert.equal(
    execFileSync('git', ['-C', join(root, 'fleet.git'), 'rev-parse', 'main'], { encoding: 'utf8' }).trim(),
    r.head,
  );
  assert.ok(
    sawHeaders.every((h) => h === expected),
    'every request carried the header',
  );
});

test('a wrong https password is a GitError of kind auth', async () => {
  await assert.rejects(update('wrong'), (err: unknown) => err instanceof GitError && err.kind === 'auth');
});
