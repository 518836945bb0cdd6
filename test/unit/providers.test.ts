import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ensureDeployKey,
  providerFor,
  ProviderError,
  removeDeployKeys,
  type DeployKeyProvider,
  type ProviderErrorKind,
  type ProviderType,
} from '../../src/providers/index.ts';

// Local stand-ins for each provider's deploy-key API, each following its documented endpoints, paging,
// authentication and error shapes, over one in-memory store of keys.

/** StoredKey is a deploy key as a fake host keeps it. */
interface StoredKey {
  id: number;
  title: string;
  key: string;
  readOnly: boolean;
}

/** Host is a fake git host's state, which a test sets up and inspects. */
interface Host {
  token: string;
  /** visible is false when the repository does not exist or the token cannot see it. */
  visible: boolean;
  /** admin is false when the token lacks the scope or role that manages deploy keys. */
  admin: boolean;
  /** rateLimitReset, epoch seconds, rate limits every request until then. */
  rateLimitReset?: number;
  /** echoToken makes every error message repeat the Authorization the server got, as careless servers do. */
  echoToken: boolean;
  /** pageCap is the largest page the server hands out, whatever the client asks (real servers cap too). */
  pageCap: number;
  /**
   * noLink leaves the Link header out, as GitLab does past 10,000 rows and some proxies do: the other paging headers
   * must do.
   */
  noLink: boolean;
  /** noNextPage leaves GitLab's X-Next-Page out, so only the Link header tells the next page. */
  noNextPage: boolean;
  keys: StoredKey[];
  nextId: number;
  /** elsewhere holds key material registered on other repositories or user accounts. */
  elsewhere: string[];
  hits: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
}

type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** Dialect is one provider's API as the fake serves it. */
interface Dialect {
  name: string;
  type: ProviderType;
  /** apiPath is the API's path on the fake host, appended to its origin to make apiUrl. */
  apiPath: string;
  repoUrl: (port: number) => string;
  /** repoName is how messages should name the repository. */
  repoName: string;
  /** scopeHint is a phrase the forbidden message must contain. */
  scopeHint: RegExp;
  handle: (host: Host, req: http.IncomingMessage, body: any, reply: Reply) => void;
}

const material = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(' ');
const newKey = (comment = '') => `ssh-ed25519 ${randomBytes(32).toString('base64')}${comment ? ` ${comment}` : ''}`;
const epochNow = () => Math.floor(Date.now() / 1000);

/** authToken is the token a request carries in the given header form, or undefined. */
function authToken(req: http.IncomingMessage, scheme: 'Bearer' | 'token' | 'PRIVATE-TOKEN'): string | undefined {
  if (scheme === 'PRIVATE-TOKEN') return req.headers['private-token'] as string | undefined;
  const m = new RegExp(`^${scheme} (.+)$`).exec(req.headers.authorization ?? '');
  return m?.[1];
}

/** page cuts a list as a server with page numbers does. */
function page<T>(items: T[], pageNo: number, size: number): { items: T[]; last: number } {
  const last = Math.max(1, Math.ceil(items.length / size));
  return { items: items.slice((pageNo - 1) * size, pageNo * size), last };
}

/** linkHeader builds an RFC 8288 Link header for page-numbered listings. */
function linkHeader(url: URL, host: string, pageNo: number, last: number): string {
  const at = (n: number) => {
    const u = new URL(url.pathname + url.search, `http://${host}`);
    u.searchParams.set('page', String(n));
    return `<${u.href}>`;
  };
  const parts: string[] = [];
  if (pageNo < last) parts.push(`${at(pageNo + 1)}; rel="next"`, `${at(last)}; rel="last"`);
  if (pageNo > 1) parts.push(`${at(1)}; rel="first"`, `${at(pageNo - 1)}; rel="prev"`);
  return parts.join(', ');
}

/** echo is what a careless server puts in its messages: the credentials it was sent. */
const echo = (host: Host, req: http.IncomingMessage) =>
  host.echoToken ? ` (credentials: ${req.headers.authorization ?? req.headers['private-token']})` : '';

const github: Dialect = {
  name: 'GitHub Enterprise',
  type: 'github',
  apiPath: '/api/v3',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/acme/fleet.git`,
  repoName: 'acme/fleet',
  scopeHint: /Administration: write.*classic token with the repo scope/,
  handle(host, req, body, reply) {
    const url = new URL(req.url!, 'http://x');
    const m = /^\/api\/v3\/repos\/([^/]+)\/([^/]+)\/keys(?:\/(\d+))?$/.exec(url.pathname);
    if (req.headers['x-github-api-version'] !== '2022-11-28' || req.headers.accept !== 'application/vnd.github+json') {
      return reply(400, { message: 'Unsupported API version or media type' });
    }
    if (authToken(req, 'Bearer') !== host.token)
      return reply(401, {
        message: `Bad credentials${echo(host, req)}`,
        documentation_url: 'https://docs.github.com/rest',
        status: '401',
      });
    if (host.rateLimitReset) {
      return reply(
        403,
        { message: `API rate limit exceeded for user ID 1.${echo(host, req)}` },
        { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(host.rateLimitReset) },
      );
    }
    if (!m || m[1] !== 'acme' || m[2] !== 'fleet' || !host.visible)
      return reply(404, { message: `Not Found${echo(host, req)}`, status: '404' });
    if (!host.admin)
      return reply(403, {
        message: `Resource not accessible by personal access token${echo(host, req)}`,
        status: '403',
      });
    const view = (k: StoredKey) => ({
      id: k.id,
      key: k.key,
      url: `https://ghe/keys/${k.id}`,
      title: k.title,
      verified: true,
      created_at: '2024-01-01T00:00:00Z',
      read_only: k.readOnly,
    });
    if (req.method === 'GET' && !m[3]) {
      const size = Math.min(Number(url.searchParams.get('per_page') ?? 30), 100, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(host.keys, pageNo, size);
      const link = linkHeader(url, req.headers.host!, pageNo, p.last);
      return reply(200, p.items.map(view), link ? { link } : {});
    }
    if (req.method === 'POST' && !m[3]) {
      if (typeof body?.key !== 'string' || !/^ssh-\S+ \S+/.test(body.key)) {
        return reply(422, {
          message: 'Validation Failed',
          errors: [
            {
              resource: 'PublicKey',
              code: 'custom',
              field: 'key',
              message: 'key is invalid. You must supply a key in OpenSSH public key format',
            },
          ],
        });
      }
      if (
        host.keys.some((k) => material(k.key) === material(body.key)) ||
        host.elsewhere.includes(material(body.key))
      ) {
        return reply(422, {
          message: 'Validation Failed',
          errors: [{ resource: 'PublicKey', code: 'custom', field: 'key', message: 'key is already in use' }],
        });
      }
      const k = { id: host.nextId++, title: body.title, key: material(body.key), readOnly: body.read_only === true };
      host.keys.push(k);
      return reply(201, view(k));
    }
    if (req.method === 'DELETE' && m[3]) {
      const i = host.keys.findIndex((k) => k.id === Number(m[3]));
      if (i < 0) return reply(404, { message: 'Not Found' });
      host.keys.splice(i, 1);
      return reply(204, undefined);
    }
    reply(404, { message: 'Not Found' });
  },
};

const gitlab: Dialect = {
  name: 'GitLab',
  type: 'gitlab',
  apiPath: '/api/v4',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/platform/clusters/fleet.git`,
  repoName: 'platform/clusters/fleet',
  scopeHint: /api scope.*Maintainer/,
  handle(host, req, body, reply) {
    const url = new URL(req.url!, 'http://x');
    // The project id is the URL-encoded full path: its slashes arrive as %2F.
    const m = /^\/api\/v4\/projects\/([^/]+)\/deploy_keys(?:\/(\d+))?$/.exec(url.pathname);
    if (authToken(req, 'PRIVATE-TOKEN') !== host.token)
      return reply(401, { message: `401 Unauthorized${echo(host, req)}` });
    if (host.rateLimitReset) {
      const left = host.rateLimitReset - epochNow();
      return reply(429, `Retry later${echo(host, req)}`, {
        'RateLimit-Limit': '600',
        'RateLimit-Remaining': '0',
        'RateLimit-Reset': String(host.rateLimitReset),
        'Retry-After': String(left),
        'Content-Type': 'text/plain',
      });
    }
    if (!m || m[1] !== 'platform%2Fclusters%2Ffleet' || !host.visible)
      return reply(404, { message: `404 Project Not Found${echo(host, req)}` });
    if (!host.admin) {
      return reply(403, {
        error: 'insufficient_scope',
        error_description:
          `The request requires higher privileges than provided by the access ` + `token.${echo(host, req)}`,
        scope: 'api',
      });
    }
    const view = (k: StoredKey) => ({
      id: k.id,
      title: k.title,
      key: k.key,
      fingerprint_sha256: 'SHA256:x',
      created_at: '2024-01-01T00:00:00Z',
      expires_at: null,
      can_push: !k.readOnly,
    });
    if (req.method === 'GET' && !m[2]) {
      const size = Math.min(Number(url.searchParams.get('per_page') ?? 20), 100, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(host.keys, pageNo, size);
      const headers: Record<string, string> = { 'X-Page': String(pageNo), 'X-Per-Page': String(size) };
      if (!host.noNextPage)
        Object.assign(headers, {
          'X-Next-Page': pageNo < p.last ? String(pageNo + 1) : '',
          'X-Total': String(host.keys.length),
          'X-Total-Pages': String(p.last),
        });
      const link = linkHeader(url, req.headers.host!, pageNo, p.last);
      if (link && !host.noLink) headers.Link = link;
      return reply(200, p.items.map(view), headers);
    }
    if (req.method === 'POST' && !m[2]) {
      if (typeof body?.key !== 'string' || !/^ssh-\S+ \S+/.test(body.key))
        return reply(400, { message: { key: ['is invalid'] } });
      if (host.keys.some((k) => material(k.key) === material(body.key)))
        return reply(400, { message: { 'deploy_key.fingerprint_sha256': ['has already been taken'] } });
      const k = { id: host.nextId++, title: body.title, key: body.key, readOnly: body.can_push !== true };
      host.keys.push(k);
      return reply(201, view(k));
    }
    if (req.method === 'DELETE' && m[2]) {
      const i = host.keys.findIndex((k) => k.id === Number(m[2]));
      if (i < 0) return reply(404, { message: '404 Deploy key Not Found' });
      host.keys.splice(i, 1);
      return reply(204, undefined);
    }
    reply(404, { error: '404 Not Found' });
  },
};

const gitea: Dialect = {
  name: 'Gitea',
  type: 'gitea',
  apiPath: '/api/v1',
  repoUrl: (port) => `http://127.0.0.1:${port}/acme/fleet.git`,
  repoName: 'acme/fleet',
  scopeHint: /write:repository/,
  handle(host, req, body, reply) {
    const url = new URL(req.url!, 'http://x');
    const m = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)\/keys(?:\/(\d+))?$/.exec(url.pathname);
    const swagger = `http://${req.headers.host}/api/swagger`;
    if (authToken(req, 'token') !== host.token)
      return reply(401, { message: `user does not exist [uid: 0, name: ]${echo(host, req)}`, url: swagger });
    if (host.rateLimitReset)
      return reply(
        429,
        { message: `rate limited${echo(host, req)}` },
        { 'Retry-After': String(host.rateLimitReset - epochNow()) },
      );
    if (!m || m[1] !== 'acme' || m[2] !== 'fleet' || !host.visible)
      return reply(404, {
        errors: [`repository does not exist${echo(host, req)}`],
        message: "The target couldn't be found.",
        url: swagger,
      });
    if (!host.admin)
      return reply(403, {
        message: `token does not have at least one of required scope(s): [write:repository]${echo(host, req)}`,
        url: swagger,
      });
    const view = (k: StoredKey) => ({
      id: k.id,
      key_id: k.id + 1000,
      key: k.key,
      url: `${swagger}/keys/${k.id}`,
      title: k.title,
      fingerprint: 'SHA256:x',
      created_at: '2024-01-01T00:00:00Z',
      read_only: k.readOnly,
    });
    if (req.method === 'GET' && !m[3]) {
      const size = Math.min(Number(url.searchParams.get('limit') ?? 30), 50, host.pageCap);
      const pageNo = Number(url.searchParams.get('page') ?? 1);
      const p = page(host.keys, pageNo, size);
      const headers: Record<string, string> = { 'X-Total-Count': String(host.keys.length) };
      const link = linkHeader(url, req.headers.host!, pageNo, p.last);
      if (link && !host.noLink) headers.Link = link;
      return reply(200, p.items.map(view), headers);
    }
    if (req.method === 'POST' && !m[3]) {
      if (typeof body?.key !== 'string' || !/^ssh-\S+ \S+/.test(body.key))
        return reply(422, { message: 'Invalid key content: no key found', url: swagger });
      if (host.keys.some((k) => material(k.key) === material(body.key)))
        return reply(422, { message: 'This key has already been added to this repository', url: swagger });
      if (host.elsewhere.includes(material(body.key)))
        return reply(422, { message: 'Key content has been used as non-deploy key', url: swagger });
      if (host.keys.some((k) => k.title === body.title))
        return reply(422, { message: 'A key with the same name already exists', url: swagger });
      const k = { id: host.nextId++, title: body.title, key: material(body.key), readOnly: body.read_only === true };
      host.keys.push(k);
      return reply(201, view(k));
    }
    if (req.method === 'DELETE' && m[3]) {
      const i = host.keys.findIndex((k) => k.id === Number(m[3]));
      if (i < 0)
        return reply(404, { errors: ['key does not exist'], message: "The target couldn't be found.", url: swagger });
      host.keys.splice(i, 1);
      return reply(204, undefined);
    }
    reply(404, { message: "The target couldn't be found.", url: swagger });
  },
};

const bitbucket: Dialect = {
  name: 'Bitbucket Server',
  type: 'bitbucketserver',
  apiPath: '',
  repoUrl: (port) => `ssh://git@127.0.0.1:${port}/OPS/fleet.git`,
  repoName: 'OPS/fleet',
  scopeHint: /Repository admin/,
  handle(host, req, body, reply) {
    const url = new URL(req.url!, 'http://x');
    const m = /^\/rest\/keys\/1\.0\/projects\/([^/]+)\/repos\/([^/]+)\/ssh(?:\/(\d+))?$/.exec(url.pathname);
    const errors = (message: string, exceptionName: string) => ({
      errors: [{ context: null, message, exceptionName }],
    });
    if (authToken(req, 'Bearer') !== host.token) {
      return reply(
        401,
        errors(
          `Authentication failed. Please check your credentials and try again.${echo(host, req)}`,
          'com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException',
        ),
      );
    }
    if (host.rateLimitReset)
      return reply(
        429,
        errors(`Too many requests${echo(host, req)}`, 'com.atlassian.bitbucket.throttle.ThrottledException'),
        { 'Retry-After': String(host.rateLimitReset - epochNow()) },
      );
    if (!m || m[1] !== 'OPS' || m[2] !== 'fleet' || !host.visible)
      return reply(
        404,
        errors(
          `Repository OPS/fleet does not exist.${echo(host, req)}`,
          'com.atlassian.bitbucket.repository.NoSuchRepositoryException',
        ),
      );
    // Bitbucket documents 401 for "insufficient permissions to add an access key".
    if (!host.admin)
      return reply(
        401,
        errors(
          `You are not permitted to access this resource${echo(host, req)}`,
          'com.atlassian.bitbucket.AuthorisationException',
        ),
      );
    const view = (k: StoredKey) => ({
      key: { id: k.id, text: `${k.key} ${k.title}`, label: k.title },
      repository: { slug: 'fleet', project: { key: 'OPS' } },
      permission: k.readOnly ? 'REPO_READ' : 'REPO_WRITE',
    });
    if (req.method === 'GET' && !m[3]) {
      const limit = Math.min(Number(url.searchParams.get('limit') ?? 25), host.pageCap);
      const start = Number(url.searchParams.get('start') ?? 0);
      const values = host.keys.slice(start, start + limit).map(view);
      const isLastPage = start + limit >= host.keys.length;
      return reply(200, {
        size: values.length,
        limit,
        isLastPage,
        values,
        start,
        ...(isLastPage ? {} : { nextPageStart: start + limit }),
      });
    }
    if (req.method === 'POST' && !m[3]) {
      const text: unknown = body?.key?.text;
      if (typeof text !== 'string' || !/^ssh-\S+ \S+/.test(text))
        return reply(
          400,
          errors('The key text is not a valid SSH public key', 'com.atlassian.bitbucket.ssh.InvalidSshKeyException'),
        );
      if (host.keys.some((k) => material(k.key) === material(text)) || host.elsewhere.includes(material(text))) {
        return reply(
          409,
          errors('This SSH key is already in use', 'com.atlassian.bitbucket.ssh.DuplicateSshKeyException'),
        );
      }
      const k = {
        id: host.nextId++,
        title: text.trim().split(/\s+/).slice(2).join(' '),
        key: material(text),
        readOnly: body.permission === 'REPO_READ',
      };
      host.keys.push(k);
      return reply(201, view(k));
    }
    if (req.method === 'DELETE' && m[3]) {
      const i = host.keys.findIndex((k) => k.id === Number(m[3]));
      if (i < 0)
        return reply(404, errors('The SSH key does not exist', 'com.atlassian.bitbucket.ssh.NoSuchSshKeyException'));
      host.keys.splice(i, 1);
      return reply(204, undefined);
    }
    reply(404, errors('Not found', 'com.atlassian.bitbucket.NoSuchEntityException'));
  },
};

const servers: http.Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

/** serve starts a fake host speaking one dialect on 127.0.0.1, and a provider pointed at it. */
async function serve(d: Dialect, setup: Partial<Host> = {}): Promise<{ host: Host; provider: DeployKeyProvider }> {
  const host: Host = {
    token: `tok-${randomBytes(12).toString('hex')}`,
    visible: true,
    admin: true,
    echoToken: false,
    pageCap: 100,
    noLink: false,
    noNextPage: false,
    keys: [],
    nextId: 100,
    elsewhere: [],
    hits: [],
    ...setup,
  };
  const server = http.createServer((req, res) => {
    host.hits.push({ method: req.method!, url: req.url!, headers: req.headers });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      } catch {
        body = undefined;
      }
      d.handle(host, req, body, (status, payload, headers = {}) => {
        const text = payload === undefined ? '' : typeof payload === 'string' ? payload : JSON.stringify(payload);
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
        res.end(text);
      });
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const provider = providerFor({
    type: d.type,
    apiUrl: `http://127.0.0.1:${port}${d.apiPath}`,
    token: host.token,
    repoUrl: d.repoUrl(port),
    tokenRef: 'Secret flux-system/git-api-token',
    retryBaseMs: 5,
  });
  return { host, provider };
}

/** failure is the ProviderError a call rejects with. */
async function failure(call: () => Promise<unknown>): Promise<ProviderError> {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof ProviderError, String(err));
    return err;
  }
  assert.fail('the call succeeded');
}

/** assertClean checks that an error says nothing of the token. */
function assertClean(err: Error, host: Host): void {
  assert.ok(!err.message.includes(host.token), `the message holds the token: ${err.message}`);
  assert.ok(!String(err.stack).includes(host.token), 'the stack holds the token');
}

const seed = (n: number, start = 1): StoredKey[] =>
  Array.from({ length: n }, (_, i) => ({ id: start + i, title: `other-${i}`, key: newKey(), readOnly: true }));

for (const d of [github, gitlab, gitea, bitbucket]) {
  describe(`the ${d.name} deploy key adapter`, () => {
    test('adds a key read-only, lists it, and removes it', async () => {
      const { host, provider } = await serve(d);
      const pub = newKey('flux@cluster');
      const added = await provider.add('flux-prod', pub);
      assert.equal(added.key, material(pub));
      assert.equal(added.title, 'flux-prod');
      assert.equal(added.readOnly, true);
      assert.equal(host.keys[0].readOnly, true, 'the server stored it read-only');

      const listed = await provider.list();
      assert.deepEqual(listed, [added]);

      await provider.remove(added.id);
      assert.deepEqual(await provider.list(), []);
      assert.deepEqual(host.keys, []);
    });

    test('removing a key that is already gone is not an error', async () => {
      const { host, provider } = await serve(d);
      await provider.remove('4242');
      assert.equal(host.hits.filter((h) => h.method === 'DELETE').length, 1);
    });

    test('ensureDeployKey adds the key once: a second call, or one with another comment and title, adds nothing', async () => {
      const { host, provider } = await serve(d, { keys: seed(2) });
      const pub = newKey('flux');
      const first = await ensureDeployKey(provider, 'flux-prod', pub);
      assert.equal(first.created, true);
      const second = await ensureDeployKey(provider, 'flux-prod', pub);
      assert.deepEqual(second, { key: first.key, created: false });
      const renamed = await ensureDeployKey(provider, 'another-title', `${material(pub)} someone@laptop`);
      assert.deepEqual(renamed, { key: first.key, created: false });
      assert.equal(host.keys.length, 3);
      assert.equal(host.hits.filter((h) => h.method === 'POST').length, 1);
    });

    test("finds a key on the third page of a listing, following the provider's paging", async () => {
      const pub = newKey();
      const keys = [...seed(5), { id: 77, title: 'flux-prod', key: material(pub), readOnly: true }];
      const { host, provider } = await serve(d, { keys, pageCap: 2 });
      const listed = await provider.list();
      assert.deepEqual(
        listed.map((k) => k.id),
        keys.map((k) => String(k.id)),
      );
      assert.equal(host.hits.length, 3, 'three pages of two');
      host.hits.length = 0;
      const ensured = await ensureDeployKey(provider, 'flux-prod', pub);
      assert.deepEqual(ensured, {
        key: { id: '77', title: 'flux-prod', key: material(pub), readOnly: true },
        created: false,
      });
      assert.equal(host.hits.filter((h) => h.method === 'POST').length, 0);
    });

    const fallbacks: Partial<Record<ProviderType, [string, Partial<Host>]>> = {
      gitlab: ['with only the Link header, no X-Next-Page', { noNextPage: true }],
      gitea: ['with only X-Total-Count, no Link header', { noLink: true }],
    };
    const fallback = fallbacks[d.type];
    if (fallback) {
      test(`pages ${fallback[0]}`, async () => {
        const { host, provider } = await serve(d, { keys: seed(5), pageCap: 2, ...fallback[1] });
        assert.deepEqual(
          (await provider.list()).map((k) => k.id),
          ['1', '2', '3', '4', '5'],
        );
        assert.equal(host.hits.length, 3);
      });
    }

    test('removeDeployKeys removes the keys with a title, across pages, and leaves the others', async () => {
      const keys = [...seed(4), { id: 90, title: 'flux-prod', key: newKey(), readOnly: true }];
      const { host, provider } = await serve(d, { keys, pageCap: 2 });
      const removed = await removeDeployKeys(provider, { title: 'flux-prod' });
      assert.deepEqual(
        removed.map((k) => k.id),
        ['90'],
      );
      assert.deepEqual(
        host.keys.map((k) => k.id),
        [1, 2, 3, 4],
      );
      assert.deepEqual(await removeDeployKeys(provider, {}), [], 'no criterion removes nothing');
      assert.equal(host.keys.length, 4);
    });

    test('says which scope the token lacks when it may not manage deploy keys', async () => {
      const { host, provider } = await serve(d, { admin: false });
      for (const call of [() => provider.list(), () => provider.add('flux', newKey())]) {
        const err = await failure(call);
        assert.equal(err.kind, 'forbidden');
        assert.match(
          err.message,
          /the token in Secret flux-system\/git-api-token lacks the scope to manage deploy keys of/,
        );
        assert.ok(err.message.includes(d.repoName), err.message);
        assert.match(err.message, d.scopeHint);
        assertClean(err, host);
      }
    });

    test('says the repository is not found, naming it', async () => {
      const { host, provider } = await serve(d, { visible: false });
      const err = await failure(() => provider.list());
      assert.equal(err.kind, 'notFound');
      assert.equal(err.status, 404);
      assert.ok(err.message.includes(`repository ${d.repoName}`), err.message);
      assertClean(err, host);
    });

    test('says the token is refused when it is wrong', async () => {
      const { host, provider } = await serve(d);
      host.token = 'the-real-token-is-another';
      const err = await failure(() => provider.list());
      assert.equal(err.kind, 'unauthorized');
      assert.match(err.message, /refused the token in Secret flux-system\/git-api-token/);
    });

    test('surfaces when a rate limit ends, at once and without trying again', async () => {
      const reset = epochNow() + 3600;
      const { host, provider } = await serve(d, { rateLimitReset: reset });
      const start = Date.now();
      const err = await failure(() => provider.list());
      assert.ok(Date.now() - start < 2000, 'it did not wait');
      assert.equal(err.kind, 'rateLimited');
      assert.ok(err.resetAt, 'resetAt is set');
      assert.ok(Math.abs(err.resetAt.getTime() - reset * 1000) <= 2000, `resetAt ${err.resetAt.toISOString()}`);
      assert.ok(err.retryAfterMs! > 3_500_000 && err.retryAfterMs! <= 3_600_000, `retryAfterMs ${err.retryAfterMs}`);
      assert.ok(
        err.message.includes(
          `rate limited the token in Secret flux-system/git-api-token until ${err.resetAt.toISOString()}`,
        ),
        err.message,
      );
      assert.equal(host.hits.length, 1);
    });

    test('refuses a key already registered elsewhere as a conflict that says what to do', async () => {
      const pub = newKey();
      const { host, provider } = await serve(d, { elsewhere: [material(pub)] });
      if (d.type === 'gitlab') {
        // GitLab lets a project share another project's deploy key; a duplicate within the project conflicts.
        host.keys.push({ id: 5, title: 'someone', key: material(pub), readOnly: true });
      }
      const err = await failure(() => provider.add('flux-prod', pub));
      assert.equal(err.kind, 'conflict');
      assert.match(err.message, /remove/);
    });

    test('never puts the token in an error message, even when the server repeats it', async () => {
      const cases: [Partial<Host>, ProviderErrorKind][] = [
        [{ admin: false }, 'forbidden'],
        [{ visible: false }, 'notFound'],
        [{ rateLimitReset: epochNow() + 60 }, 'rateLimited'],
      ];
      for (const [setup, kind] of cases) {
        const { host, provider } = await serve(d, { echoToken: true, ...setup });
        const err = await failure(() => provider.add('flux', newKey()));
        assert.equal(err.kind, kind);
        // GitLab answers a rate limit in plain text (rack-attack's "Retry later"), which is never quoted at all.
        if (d.type === 'gitlab' && kind === 'rateLimited') assert.match(err.message, /HTTP 429/);
        else assert.match(err.message, /credentials: .*\[redacted\]/, 'the server did repeat it');
        assertClean(err, host);
      }
      const { host, provider } = await serve(d, { echoToken: true });
      const token = host.token;
      host.token = 'another';
      const err = await failure(() => provider.list());
      assert.equal(err.kind, 'unauthorized');
      assert.ok(!err.message.includes(token), err.message);
    });
  });
}

describe('ensureDeployKey', () => {
  test('counts a key that appears between its listing and its add as there, and adds nothing', async () => {
    const { host, provider } = await serve(github);
    const pub = newKey();
    const racing: DeployKeyProvider = {
      list: () => provider.list(),
      add: (title, key) => {
        host.keys.push({ id: 9, title: 'added-by-another-reconcile', key: material(pub), readOnly: true });
        return provider.add(title, key);
      },
      remove: (id) => provider.remove(id),
    };
    const ensured = await ensureDeployKey(racing, 'flux-prod', pub);
    assert.deepEqual(ensured, {
      key: { id: '9', title: 'added-by-another-reconcile', key: material(pub), readOnly: true },
      created: false,
    });
    assert.equal(host.keys.length, 1);
  });

  test('keeps a key someone registered with write access, and tells the caller through readOnly', async () => {
    const pub = newKey();
    const { host, provider } = await serve(gitea, {
      keys: [{ id: 3, title: 'by-hand', key: material(pub), readOnly: false }],
    });
    const ensured = await ensureDeployKey(provider, 'flux-prod', pub);
    assert.equal(ensured.created, false);
    assert.equal(ensured.key.readOnly, false);
    assert.equal(host.keys.length, 1);
  });
});

describe("the adapters send each provider's authentication and headers", () => {
  const expect: Record<string, (h: http.IncomingHttpHeaders, token: string) => void> = {
    github: (h, t) => {
      assert.equal(h.authorization, `Bearer ${t}`);
      assert.equal(h.accept, 'application/vnd.github+json');
      assert.equal(h['x-github-api-version'], '2022-11-28');
    },
    gitlab: (h, t) => assert.equal(h['private-token'], t),
    gitea: (h, t) => assert.equal(h.authorization, `token ${t}`),
    bitbucketserver: (h, t) => assert.equal(h.authorization, `Bearer ${t}`),
  };
  for (const d of [github, gitlab, gitea, bitbucket]) {
    test(`${d.name}: every request carries the token the way the API documents`, async () => {
      const { host, provider } = await serve(d);
      await ensureDeployKey(provider, 'flux', newKey());
      assert.ok(host.hits.length >= 2);
      for (const h of host.hits) expect[d.type](h.headers, host.token);
    });
  }

  test("Bitbucket Server gets the title as the key's comment and REPO_READ", async () => {
    const { host, provider } = await serve(bitbucket);
    const pub = newKey('old-comment');
    await provider.add('flux prod', pub);
    assert.deepEqual(host.keys[0], { id: 100, title: 'flux prod', key: material(pub), readOnly: true });
  });
});
