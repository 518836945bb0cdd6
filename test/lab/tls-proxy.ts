/**
 * A TLS terminator for the lab (gitea.ts runs it detached as `gitea-https`): accepts TLS on 127.0.0.1:LISTEN with
 * a certificate of the lab CA and passes the plain bytes to 127.0.0.1:TO (Gitea's HTTP server). Gitea serves one
 * protocol per process; this gives the lab's Gitea HTTPS beside its HTTP API.
 *
 *   node test/lab/tls-proxy.ts --listen PORT --to PORT --cert FILE --key FILE
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { listen: { type: 'string' }, to: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' } },
});
const listen = Number(values.listen);
const to = Number(values.to);
if (!Number.isInteger(listen) || !Number.isInteger(to) || !values.cert || !values.key) {
  console.error('usage: node test/lab/tls-proxy.ts --listen PORT --to PORT --cert FILE --key FILE');
  process.exit(2);
}

const server = tls.createServer({ cert: fs.readFileSync(values.cert), key: fs.readFileSync(values.key) }, (client) => {
  const upstream = net.connect(to, '127.0.0.1');
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
server.on('tlsClientError', () => {}); // a client that does not trust the lab CA: its problem
server.on('error', (err) => {
  console.error(`tls-proxy: ${err.message}`); // "listen EADDRINUSE: address already in use" makes startServer retry
  process.exit(1);
});
server.listen(listen, '127.0.0.1', () => console.error(`tls-proxy: 127.0.0.1:${listen} -> 127.0.0.1:${to}`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
