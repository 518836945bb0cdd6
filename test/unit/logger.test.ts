import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/logger.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(chunk.toString()), done()) });
  return { log: createLogger('debug', stream), lines };
}

test('a secret logged at any depth, or attached to an error and its cause, never reaches the log', async () => {
  const { log, lines } = capture();
  const cause = Object.assign(new Error('request failed'), { response: { body: { token: 'tok-in-cause' } } });
  const err = Object.assign(new Error('push failed', { cause }), { cfg: { auth: { password: 'pw-deep' } } });
  log.warn(
    {
      namespace: 'fleet',
      name: 'a',
      err,
      secret: { stringData: { identity: 'PRIVATE' } },
      list: [{ a: { b: { bearerToken: 'bt' } } }],
    },
    'failed',
  );
  await new Promise((r) => setImmediate(r));
  const text = lines.join('');
  for (const leaked of ['tok-in-cause', 'pw-deep', 'PRIVATE', 'bt"'])
    assert.ok(!text.includes(leaked), `${leaked} leaked: ${text}`);
  const line = JSON.parse(lines[0]);
  assert.match(line.err.message, /^push failed/);
  assert.equal(line.err.cfg.auth.password, '[redacted]');
  assert.equal(line.namespace, 'fleet');
});
