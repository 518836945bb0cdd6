import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/** Probes answer /healthz (the process works) and /readyz (it is ready to lead or stand by). */
export interface Probes {
  healthy: () => boolean;
  ready: () => boolean;
}

function listen(addr: string, handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i) || undefined;
  const port = Number(addr.slice(i + 1));
  const server = createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** startHealthServer serves the liveness and readiness probes. */
export function startHealthServer(addr: string, probes: Probes): Promise<Server> {
  return listen(addr, (req, res) => {
    const ok = req.url === '/healthz' ? probes.healthy() : req.url === '/readyz' ? probes.ready() : undefined;
    res.writeHead(ok === undefined ? 404 : ok ? 200 : 503, { 'Content-Type': 'text/plain' });
    res.end(ok === undefined ? 'not found\n' : ok ? 'ok\n' : 'not ready\n');
  });
}

/** startMetricsServer serves Prometheus metrics at /metrics. */
export function startMetricsServer(addr: string, registry: Registry): Promise<Server> {
  return listen(addr, async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': registry.contentType });
    res.end(await registry.metrics());
  });
}
