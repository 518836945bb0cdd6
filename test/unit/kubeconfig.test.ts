import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { KubeconfigError, parseTargetKubeconfig } from '../../src/kube/kubeconfig.ts';
import { KubeClient } from '../../src/kube/client.ts';

// A self-signed certificate and key, base64 as a kubeconfig holds them, made once for the file.
let certData = '';
let keyData = '';
before(() => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-'));
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
        '/CN=test',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { cwd: dir, stdio: 'ignore' },
    );
    certData = readFileSync(join(dir, 'c.pem')).toString('base64');
    keyData = readFileSync(join(dir, 'k.pem')).toString('base64');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** config is an inline kubeconfig whose cluster and user can be changed per test. */
function config(
  change: { cluster?: Record<string, unknown>; user?: Record<string, unknown>; top?: Record<string, unknown> } = {},
): string {
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'c',
        cluster: { server: 'https://10.0.0.1:6443', 'certificate-authority-data': certData, ...change.cluster },
      },
    ],
    users: [{ name: 'u', user: { 'client-certificate-data': certData, 'client-key-data': keyData, ...change.user } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
    ...change.top,
  });
}

describe('a target kubeconfig', () => {
  const refused: { what: string; change: Parameters<typeof config>[0]; field: string; secret?: string }[] = [
    {
      what: 'an exec credential plugin',
      change: {
        user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: '/bin/sh', args: ['-c', 'steal'] } },
      },
      field: 'users[0].user.exec',
      secret: 'steal',
    },
    {
      what: 'an auth-provider',
      change: { user: { 'auth-provider': { name: 'azure', config: { 'cmd-path': '/bin/steal' } } } },
      field: 'users[0].user.auth-provider',
      secret: '/bin/steal',
    },
    {
      what: 'a token-file',
      change: { user: { 'token-file': '/var/run/secrets/kubernetes.io/serviceaccount/token' } },
      field: 'users[0].user.token-file',
      secret: '/var/run',
    },
    {
      what: 'a tokenFile',
      change: { user: { tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' } },
      field: 'users[0].user.tokenFile',
      secret: '/var/run',
    },
    {
      what: 'a client-certificate path',
      change: { user: { 'client-certificate': '/etc/operator/tls.crt' } },
      field: 'users[0].user.client-certificate',
      secret: '/etc/operator',
    },
    {
      what: 'a client-key path',
      change: { user: { 'client-key': '/etc/operator/tls.key' } },
      field: 'users[0].user.client-key',
      secret: '/etc/operator',
    },
    {
      what: 'a certificate-authority path',
      change: { cluster: { 'certificate-authority': '/etc/operator/ca.crt' } },
      field: 'clusters[0].cluster.certificate-authority',
      secret: '/etc/operator',
    },
    {
      what: 'a proxy-url',
      change: { cluster: { 'proxy-url': 'socks5://attacker:1080' } },
      field: 'clusters[0].cluster.proxy-url',
      secret: 'attacker',
    },
    {
      what: 'insecure-skip-tls-verify',
      change: { cluster: { 'insecure-skip-tls-verify': true } },
      field: 'clusters[0].cluster.insecure-skip-tls-verify',
    },
    {
      what: 'a field client-node would ignore',
      change: { user: { 'as-groups': ['system:masters'] } },
      field: 'users[0].user.as-groups',
    },
    {
      what: 'a file:// server',
      change: { cluster: { server: 'file:///etc/passwd' } },
      field: 'clusters[0].cluster.server',
      secret: 'passwd',
    },
    {
      what: 'a server aimed at an internal service path, hidden behind a bare fragment',
      change: { cluster: { server: 'http://svc.internal:8080/admin/path#' } },
      field: 'clusters[0].cluster.server',
    },
    {
      what: 'a server with a bare query',
      change: { cluster: { server: 'https://10.0.0.1:6443?' } },
      field: 'clusters[0].cluster.server',
    },
    {
      what: 'a server with a path prefix',
      change: { cluster: { server: 'https://10.0.0.1:6443/api/v1/namespaces/kube-system/services/x/proxy' } },
      field: 'clusters[0].cluster.server',
    },
    {
      what: 'a server URL with credentials',
      change: { cluster: { server: 'https://admin:hunter2@10.0.0.1' } },
      field: 'clusters[0].cluster.server',
      secret: 'hunter2',
    },
    {
      what: 'a token that would add a header',
      change: { user: { token: 'abc\r\nX-Evil: 1' } },
      field: 'users[0].user.token',
      secret: 'abc',
    },
    {
      what: 'certificate data that is not PEM',
      change: { cluster: { 'certificate-authority-data': Buffer.from('s3cret').toString('base64') } },
      field: 'clusters[0].cluster.certificate-authority-data',
    },
    {
      what: 'a client certificate without its key',
      change: { user: { 'client-key-data': null } },
      field: 'users[0].user.client-key-data',
    },
    { what: 'no current-context', change: { top: { 'current-context': undefined } }, field: 'current-context' },
    {
      what: 'a current-context that names no context',
      change: { top: { 'current-context': 'nope' } },
      field: 'current-context',
    },
    {
      what: 'a context whose cluster is missing',
      change: { top: { contexts: [{ name: 'x', context: { cluster: 'gone', user: 'u' } }] } },
      field: 'contexts[0].context.cluster',
    },
    { what: 'a cluster without a server', change: { cluster: { server: null } }, field: 'clusters[0].cluster.server' },
  ];
  for (const r of refused) {
    test(`with ${r.what} is refused, naming ${r.field} and not quoting the value`, () => {
      assert.throws(
        () => parseTargetKubeconfig(config(r.change)),
        (err: unknown) => {
          assert.ok(err instanceof KubeconfigError);
          assert.equal(err.field, r.field);
          assert.ok(err.message.startsWith(`${r.field} `), err.message);
          if (r.secret) assert.ok(!err.message.includes(r.secret), err.message);
          return true;
        },
      );
    });
  }

  test('that is not YAML is refused without quoting the text', () => {
    const text = 'users:\n- name: u\n  user:\n    token: "s3cr3t-token\n  : [';
    assert.throws(
      () => parseTargetKubeconfig(text),
      (err: unknown) => {
        assert.ok(err instanceof KubeconfigError);
        assert.equal(err.field, 'kubeconfig');
        assert.ok(!err.message.includes('s3cr3t'), err.message);
        assert.equal(err.cause, undefined);
        return true;
      },
    );
  });

  test('that is an alias bomb is refused without expanding it', () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++)
      levels.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    assert.throws(
      () => parseTargetKubeconfig(`${levels.join('\n')}\ncurrent-context: x\n`),
      /uses too many YAML aliases/,
    );
  });

  test('with inline certificates is read, and only its current context, cluster and user are kept', () => {
    const text = config({
      top: {
        users: [
          { name: 'other', user: { exec: { command: 'x' } } },
          { name: 'u', user: { 'client-certificate-data': certData, 'client-key-data': keyData } },
        ],
      },
    });
    const kc = parseTargetKubeconfig(text);
    assert.equal(kc.getCurrentCluster()?.server, 'https://10.0.0.1:6443');
    assert.equal(kc.getCurrentCluster()?.caData, certData);
    assert.equal(kc.getCurrentUser()?.certData, certData);
    assert.equal(kc.getCurrentUser()?.keyData, keyData);
    assert.equal(kc.getUsers().length, 1);
    assert.equal(kc.getCurrentUser()?.exec, undefined);
  });

  test('with a token, a server name and an http server is read', () => {
    const kc = parseTargetKubeconfig(
      config({
        cluster: { server: 'http://127.0.0.1:8080/', 'tls-server-name': 'api.example' },
        user: { 'client-certificate-data': null, 'client-key-data': null, token: 'abc.def' },
      }),
    );
    assert.equal(kc.getCurrentCluster()?.server, 'http://127.0.0.1:8080');
    assert.equal(kc.getCurrentCluster()?.tlsServerName, 'api.example');
    assert.equal(kc.getCurrentUser()?.token, 'abc.def');
  });

  test('with an exec plugin is read when the operator allows exec', () => {
    const exec = { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws', args: ['eks', 'get-token'] };
    const kc = parseTargetKubeconfig(config({ user: { exec } }), { allowExec: true });
    assert.deepEqual(kc.getCurrentUser()?.exec, exec);
  });

  test('that skips TLS verification is read when the operator allows it', () => {
    const kc = parseTargetKubeconfig(config({ cluster: { 'insecure-skip-tls-verify': true } }), {
      allowInsecureTLS: true,
    });
    assert.equal(kc.getCurrentCluster()?.skipTLSVerify, true);
  });

  test('reaches KubeClient.fromKubeconfig, which refuses what the parser refuses', () => {
    assert.throws(() => KubeClient.fromKubeconfig(config({ user: { tokenFile: '/etc/shadow' } })), KubeconfigError);
    assert.equal(KubeClient.fromKubeconfig(config()).server, 'https://10.0.0.1:6443');
  });

  test("from the operator's own administrator may still use file paths, through fromTrustedKubeconfig", () => {
    const client = KubeClient.fromTrustedKubeconfig(
      config({ cluster: { 'certificate-authority': '/etc/ssl/certs/ca.pem' } }),
    );
    assert.equal(client.server, 'https://10.0.0.1:6443');
  });
});
