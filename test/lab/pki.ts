/**
 * Certificates and kubeconfigs of the lab, made at run time with openssl: one CA, the API servers' serving
 * certificate, the admin client certificate (O=system:masters) and a service-account key pair per cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import { run } from './process.ts';

/**
 * makePki writes into `pki`: ca.{crt,key}, serving.{crt,key} (127.0.0.1 and localhost), admin.{crt,key} and a
 * service-account key pair `<sa>-sa.{key,pub}` for each of `opts.sa` (default mgmt and target). `opts.ca` is the
 * CA's common name (default flux-lab-ca): the extra targets (fleet.ts) each get a pki of their own.
 */
export async function makePki(pki: string, opts: { ca?: string; sa?: string[] } = {}): Promise<void> {
  fs.mkdirSync(pki, { recursive: true, mode: 0o700 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const o = { cwd: pki };
  await run(
    'openssl',
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '3650',
      '-subj',
      `/CN=${opts.ca ?? 'flux-lab-ca'}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    ],
    o,
  );
  const leaves: [string, string, string][] = [
    [
      'serving',
      '/CN=flux-lab-apiserver',
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n',
    ],
    [
      'admin',
      '/O=system:masters/CN=lab-admin',
      'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n',
    ],
  ];
  await Promise.all(
    leaves.map(async ([name, subj, ext]) => {
      await run('openssl', ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj], o);
      fs.writeFileSync(path.join(pki, `${name}.ext`), ext);
      await run(
        'openssl',
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-set_serial',
          '0x' + Math.floor(Math.random() * 2 ** 48).toString(16),
          '-days',
          '3650',
          '-extfile',
          `${name}.ext`,
          '-out',
          `${name}.crt`,
        ],
        o,
      );
    }),
  );
  // one service-account key pair per cluster, so tokens of one cluster are worthless in the other
  await Promise.all(
    (opts.sa ?? ['mgmt', 'target']).map(async (c) => {
      await run(
        'openssl',
        ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', `${c}-sa.key`],
        o,
      );
      await run('openssl', ['pkey', '-in', `${c}-sa.key`, '-pubout', '-out', `${c}-sa.pub`], o);
    }),
  );
  for (const f of fs.readdirSync(pki)) if (f.endsWith('.key')) fs.chmodSync(path.join(pki, f), 0o600);
}

/**
 * makeServingCert writes `<name>.{crt,key}` into `pki` (made by makePki): a serving certificate for 127.0.0.1 and
 * localhost, subject `/CN=<cn>`, signed by the lab CA (`ca.crt`).
 */
export async function makeServingCert(pki: string, name: string, cn: string): Promise<void> {
  if (!/^[A-Za-z0-9-]+$/.test(name)) throw new Error(`bad certificate name: ${name}`);
  const o = { cwd: pki };
  await run(
    'openssl',
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${cn}`,
    ],
    o,
  );
  fs.chmodSync(path.join(pki, `${name}.key`), 0o600);
  fs.writeFileSync(
    path.join(pki, `${name}.ext`),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n',
  );
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      '0x' + Math.floor(Math.random() * 2 ** 48).toString(16),
      '-days',
      '3650',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    ],
    o,
  );
}

/** kubeconfig is an admin kubeconfig for the API server at `server`, with the certificates in `pki` inlined. */
export function kubeconfig(name: string, server: string, pki: string): string {
  const b64 = (f: string) => fs.readFileSync(path.join(pki, f)).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64('ca.crt')}`,
    'users:',
    `- name: ${name}-admin`,
    '  user:',
    `    client-certificate-data: ${b64('admin.crt')}`,
    `    client-key-data: ${b64('admin.key')}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}-admin`,
    `current-context: ${name}`,
    '',
  ].join('\n');
}
