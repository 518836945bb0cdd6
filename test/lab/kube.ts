/**
 * Minimal HTTP(S) helpers for the lab: talk to a lab API server with the admin client certificate, probe health
 * endpoints. No dependency beyond node's own modules, so the detached lab processes (kubelet.ts) stay small.
 */
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import path from 'node:path';

/** How to reach one lab API server as its admin (files under `.lab/pki`). */
export interface KubeCreds {
  server: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface HttpResult {
  status: number;
  text: string;
  /** `text` parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/** Admin credentials for a lab API server (`server` = https://127.0.0.1:PORT) from the lab's pki folder. */
export function labCreds(labDir: string, server: string): KubeCreds {
  return pkiCreds(path.join(labDir, 'pki'), server);
}

/** Admin credentials for the API server at `server` from a pki folder made by makePki (ca.crt, admin.{crt,key}). */
export function pkiCreds(pki: string, server: string): KubeCreds {
  return {
    server,
    ca: fs.readFileSync(path.join(pki, 'ca.crt')),
    cert: fs.readFileSync(path.join(pki, 'admin.crt')),
    key: fs.readFileSync(path.join(pki, 'admin.key')),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One HTTP(S) request; never throws on HTTP status, only on transport errors (refused, reset, timeout). */
export function httpRequest(
  url: string,
  opts: {
    method?: string;
    body?: unknown;
    contentType?: string;
    ca?: Buffer;
    cert?: Buffer;
    key?: Buffer;
    insecure?: boolean;
    timeoutMs?: number;
  } = {},
): Promise<HttpResult> {
  const u = new URL(url);
  const body =
    opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) {
    headers['content-type'] = opts.contentType ?? 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const common = { method: opts.method ?? 'GET', headers, timeout: opts.timeoutMs ?? 10_000 };
    const req =
      u.protocol === 'https:'
        ? https.request(u, {
            ...common,
            ca: opts.ca,
            cert: opts.cert,
            key: opts.key,
            rejectUnauthorized: !opts.insecure,
            agent: false,
          })
        : http.request(u, { ...common, agent: false });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${common.method} ${url}`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A request to the API server at `creds.server` (path like `/api/v1/namespaces`) as the lab admin. */
export function kubeRequest(
  creds: KubeCreds,
  method: string,
  apiPath: string,
  body?: unknown,
  contentType?: string,
): Promise<HttpResult> {
  return httpRequest(creds.server + apiPath, {
    method,
    body,
    contentType,
    ca: creds.ca,
    cert: creds.cert,
    key: creds.key,
  });
}
