import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bitbucketServerRepo,
  giteaRepo,
  githubRepo,
  gitlabProject,
  parseGitUrl,
  providerFor,
  ProviderError,
  type ProviderOptions,
} from '../../src/providers/index.ts';
import { keyMaterial, sameKey } from '../../src/providers/keys.ts';

/** rejects asserts that a call throws ProviderError `invalid` with a message matching `message`. */
function rejects(call: () => unknown, message: RegExp): ProviderError {
  try {
    call();
  } catch (err) {
    assert.ok(err instanceof ProviderError, String(err));
    assert.equal(err.kind, 'invalid');
    assert.match(err.message, message);
    return err;
  }
  assert.fail('no error');
}

describe('a GitHub repository is found in', () => {
  const cases: [string, string][] = [
    ['ssh://git@github.com/acme/fleet.git', 'acme/fleet'],
    ['ssh://git@github.com:22/acme/fleet', 'acme/fleet'],
    ['https://github.com/acme/fleet.git', 'acme/fleet'],
    ['https://github.com/acme/fleet', 'acme/fleet'],
    ['git@github.com:acme/fleet.git', 'acme/fleet'],
    ['ssh://git@ghe.example.com:2222/Acme-Corp/fleet.config.git', 'Acme-Corp/fleet.config'],
  ];
  for (const [url, want] of cases) {
    test(url, () => {
      const r = githubRepo(url);
      assert.equal(`${r.owner}/${r.repo}`, want);
    });
  }
  test('but not a URL with one or three path segments', () => {
    rejects(
      () => githubRepo('https://github.com/acme'),
      /does not name a GitHub repository: its path should be owner\/repo/,
    );
    rejects(() => githubRepo('https://github.com/acme/fleet/tree'), /owner\/repo/);
  });
});

describe('a GitLab project is found in', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['ssh://git@gitlab.com/acme/fleet.git', undefined, 'acme/fleet', 'acme%2Ffleet'],
    [
      'ssh://git@gitlab.com/group/sub/deeper/fleet.git',
      undefined,
      'group/sub/deeper/fleet',
      'group%2Fsub%2Fdeeper%2Ffleet',
    ],
    ['https://gitlab.com/group/sub/fleet.git', undefined, 'group/sub/fleet', 'group%2Fsub%2Ffleet'],
    ['git@gitlab.example.com:group/fleet.git', 'https://gitlab.example.com/api/v4', 'group/fleet', 'group%2Ffleet'],
    // A GitLab under a relative URL root has that root in its https clone URLs, not in its ssh ones.
    ['https://example.com/gitlab/group/fleet.git', 'https://example.com/gitlab/api/v4', 'group/fleet', 'group%2Ffleet'],
    ['ssh://git@example.com/gitlab/fleet.git', 'https://example.com/gitlab/api/v4', 'gitlab/fleet', 'gitlab%2Ffleet'],
  ];
  for (const [url, api, path, id] of cases) {
    test(`${url}${api ? ` (API ${api})` : ''}`, () => {
      assert.deepEqual(gitlabProject(url, api), { path, id });
    });
  }
  test('but not a URL of a page inside a project, nor one without a group', () => {
    rejects(() => gitlabProject('https://gitlab.com/acme/fleet/-/tree/main'), /group\/\[subgroup\/…\]project/);
    rejects(() => gitlabProject('https://gitlab.com/fleet.git'), /GitLab/);
  });
});

describe('a Gitea repository is found in', () => {
  const cases: [string, string | undefined, string][] = [
    ['ssh://git@gitea.example.com:2222/acme/fleet.git', 'https://gitea.example.com/api/v1', 'acme/fleet'],
    ['http://gitea.example.com:3000/acme/fleet.git', 'http://gitea.example.com:3000/api/v1', 'acme/fleet'],
    ['https://example.com/git/acme/fleet.git', 'https://example.com/git/api/v1', 'acme/fleet'],
    ['git@codeberg.org:acme/fleet.git', 'https://codeberg.org/api/v1', 'acme/fleet'],
  ];
  for (const [url, api, want] of cases) {
    test(url, () => {
      const r = giteaRepo(url, api);
      assert.equal(`${r.owner}/${r.repo}`, want);
    });
  }
  test('but not a URL with a nested path', () => {
    rejects(() => giteaRepo('https://gitea.example.com/a/b/c.git'), /owner\/repo/);
  });
});

describe('a Bitbucket Server repository is found in', () => {
  const cases: [string, string, string][] = [
    ['ssh://git@bitbucket.example.com:7999/OPS/fleet.git', 'OPS', 'fleet'],
    ['ssh://git@bitbucket.example.com:7999/ops/fleet.git', 'ops', 'fleet'],
    ['https://bitbucket.example.com/scm/OPS/fleet.git', 'OPS', 'fleet'],
    ['https://example.com/bitbucket/scm/OPS/fleet.git', 'OPS', 'fleet'],
    ['https://bitbucket.example.com/scm/~alice/fleet.git', '~alice', 'fleet'],
    ['ssh://git@bitbucket.example.com:7999/~alice/fleet.git', '~alice', 'fleet'],
    ['https://bitbucket.example.com/projects/OPS/repos/fleet/browse', 'OPS', 'fleet'],
  ];
  for (const [url, projectKey, slug] of cases) {
    test(url, () => assert.deepEqual(bitbucketServerRepo(url), { projectKey, slug }));
  }
  test('but not an https URL without /scm/', () => {
    rejects(() => bitbucketServerRepo('https://bitbucket.example.com/OPS/fleet.git'), /scm\/PROJECT\/repo/);
  });
});

describe('a git URL', () => {
  test('loses its credentials before it goes into a message', () => {
    const err = rejects(() => githubRepo('https://x-access-token:ghp_secret123@github.com/acme'), /owner\/repo/);
    assert.ok(!err.message.includes('ghp_secret123'), err.message);
    assert.ok(!err.message.includes('x-access-token'), err.message);
  });
  const bad: [string, RegExp][] = [
    ['ftp://host/a/b.git', /scheme ftp:/],
    ['git@host:a/../b.git', /path segment "\.\."/],
    ['https://host/a/b%20c.git', /path segment/],
    ['https://host/a/b.git?ref=main', /query/],
    ['not a url', /not a URL/],
  ];
  for (const [url, message] of bad) {
    test(`"${url}" is refused`, () => {
      rejects(() => parseGitUrl(url), message);
    });
  }
});

describe('providerFor', () => {
  const base: ProviderOptions = {
    type: 'github',
    token: 'ghp_0123456789abcdef',
    repoUrl: 'ssh://git@github.com/acme/fleet.git',
  };

  test('uses api.github.com and gitlab.com for repositories there, without an apiUrl', () => {
    assert.ok(providerFor(base));
    assert.ok(providerFor({ ...base, type: 'gitlab', repoUrl: 'https://gitlab.com/g/p.git' }));
  });

  test('needs the API URL for any other host, rather than send the token to a host the repository URL names', () => {
    rejects(
      () => providerFor({ ...base, repoUrl: 'ssh://git@ghe.example.com/acme/fleet.git' }),
      /needs the API URL of its server \(e\.g\. https:\/\/github\.example\.com\/api\/v3\)/,
    );
    rejects(
      () => providerFor({ ...base, type: 'gitea', repoUrl: 'ssh://git@gitea.example.com/acme/fleet.git' }),
      /needs the API URL/,
    );
    rejects(
      () => providerFor({ ...base, type: 'bitbucketserver', repoUrl: 'ssh://git@bb.example.com:7999/OPS/fleet.git' }),
      /needs the API URL/,
    );
  });

  test('refuses an empty token, naming where it came from', () => {
    rejects(
      () => providerFor({ ...base, token: ' \n', tokenRef: 'Secret flux-system/gh' }),
      /the token in Secret flux-system\/gh is empty/,
    );
  });

  test('refuses an API URL with credentials, a query or another scheme', () => {
    rejects(
      () => providerFor({ ...base, apiUrl: 'https://user:pw@ghe.example.com/api/v3' }),
      /must not carry credentials/,
    );
    rejects(() => providerFor({ ...base, apiUrl: 'https://ghe.example.com/api/v3?x=1' }), /query/);
    rejects(() => providerFor({ ...base, apiUrl: 'file:///etc/passwd' }), /https:\/\/ or http:\/\//);
  });

  test('keeps the token out of a message even when it was pasted into the wrong field', () => {
    const err = rejects(
      () =>
        providerFor({
          ...base,
          apiUrl: 'https://ghe.example.com/api/v3',
          repoUrl: `https://ghe.example.com/${base.token}`,
        }),
      /owner\/repo/,
    );
    assert.ok(!err.message.includes(base.token), err.message);
  });

  test('refuses an unknown provider type', () => {
    rejects(() => providerFor({ ...base, type: 'sourcehut' as never }), /unknown git provider type "sourcehut"/);
    rejects(() => providerFor({ ...base, type: 'toString' as never }), /unknown git provider type "toString"/);
  });
});

describe('key material', () => {
  test('is the type and base64 of a key line, without its comment', () => {
    assert.equal(keyMaterial('  ssh-ed25519 AAAAC3Nza+/b= flux@cluster  x '), 'ssh-ed25519 AAAAC3Nza+/b=');
    assert.equal(keyMaterial('ecdsa-sha2-nistp384 AAAAE2Vj'), 'ecdsa-sha2-nistp384 AAAAE2Vj');
  });
  test('is nothing for text that is no public key', () => {
    assert.equal(keyMaterial('-----BEGIN OPENSSH PRIVATE KEY-----'), undefined);
    assert.equal(keyMaterial('ssh-ed25519'), undefined);
    assert.equal(keyMaterial('ssh-ed25519 not*base64'), undefined);
  });
  test('makes two lines the same key when only their comments differ', () => {
    assert.ok(sameKey('ssh-ed25519 AAAA a', 'ssh-ed25519 AAAA b c'));
    assert.ok(!sameKey('ssh-ed25519 AAAA a', 'ssh-ed25519 AAAB a'));
  });
});
