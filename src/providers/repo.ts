import { ProviderError } from './types.ts';

/** GitUrl is a git remote URL taken apart: its host and the segments of its path, `.git` removed. */
export interface GitUrl {
  scheme: 'ssh' | 'https' | 'http';
  host: string;
  segments: string[];
}

/**
 * SEGMENT is what one path segment of a repository may hold on any of the providers (`~user` is Bitbucket's personal
 * project).
 */
const SEGMENT = /^~?[A-Za-z0-9_.-]+$/;

/**
 * parseGitUrl takes apart `ssh://git@host[:port]/a/b.git`, `https://host/a/b.git` and the scp form
 * `git@host:a/b.git`. Credentials in the URL are dropped and never repeated in messages. Throws
 * ProviderError `invalid`.
 */
export function parseGitUrl(repoUrl: string): GitUrl {
  const text = repoUrl.trim();
  const scp = /^(?:[^@\s/]+@)?([^:\s/]+):(?!\/)([^\s]+)$/.exec(text);
  let scheme: GitUrl['scheme'];
  let host: string;
  let path: string;
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    scheme = 'ssh';
    host = scp[1].toLowerCase();
    path = scp[2];
  } else {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw invalid('is not a URL');
    }
    const s = url.protocol.slice(0, -1);
    if (s !== 'ssh' && s !== 'https' && s !== 'http') throw invalid(`has the scheme ${s}:, not ssh:, https: or http:`);
    if (url.search || url.hash) throw invalid('has a query or a fragment');
    scheme = s;
    host = url.hostname.toLowerCase();
    path = url.pathname;
  }
  const segments = path.split('/').filter((p) => p !== '');
  if (segments.length) segments[segments.length - 1] = segments[segments.length - 1].replace(/\.git$/, '');
  for (const seg of segments) {
    if (!SEGMENT.test(seg) || seg === '.' || seg === '..')
      throw invalid(`has the path segment "${clipSegment(seg)}", which is no repository name`);
  }
  if (!host) throw invalid('has no host');
  return { scheme, host, segments };

  function invalid(why: string): ProviderError {
    return new ProviderError(
      'invalid',
      `the repository URL ${redactUrl(text)} ${why}; use ssh://git@host/owner/repo.git or https://host/owner/repo.git`,
    );
  }
}

/** OwnerRepo identifies a GitHub or Gitea repository. */
export interface OwnerRepo {
  owner: string;
  repo: string;
}

/** githubRepo finds owner/repo in a GitHub or GitHub Enterprise URL. */
export function githubRepo(repoUrl: string): OwnerRepo {
  const { segments } = parseGitUrl(repoUrl);
  if (segments.length !== 2) throw shape(repoUrl, 'GitHub', 'owner/repo');
  return { owner: segments[0], repo: segments[1] };
}

/**
 * giteaRepo finds owner/repo in a Gitea or Forgejo URL. A server under a sub-path (apiUrl
 * `https://host/git/api/v1`) has it in its https clone URLs too (`https://host/git/owner/repo.git`).
 */
export function giteaRepo(repoUrl: string, apiUrl?: string): OwnerRepo {
  const url = parseGitUrl(repoUrl);
  const segments = url.scheme === 'ssh' ? url.segments : stripPrefix(url.segments, apiPrefix(apiUrl, /\/api\/v1\/?$/));
  if (segments.length !== 2) throw shape(repoUrl, 'Gitea', 'owner/repo');
  return { owner: segments[0], repo: segments[1] };
}

/**
 * gitlabProject finds the project's full path (`group/sub/project`) in a GitLab URL; its URL-encoded form is
 * the project id of the API. A server under a relative URL root (apiUrl `https://host/gitlab/api/v4`) has it
 * in its https clone URLs too.
 */
export function gitlabProject(repoUrl: string, apiUrl?: string): { path: string; id: string } {
  const url = parseGitUrl(repoUrl);
  const segments = url.scheme === 'ssh' ? url.segments : stripPrefix(url.segments, apiPrefix(apiUrl, /\/api\/v4\/?$/));
  if (segments.length < 2 || segments.includes('-')) throw shape(repoUrl, 'GitLab', 'group/[subgroup/…]project');
  const path = segments.join('/');
  return { path, id: encodeURIComponent(path) };
}

/**
 * bitbucketServerRepo finds the project key and repository slug in a Bitbucket Server / Data Center URL:
 * `ssh://git@host:7999/PROJ/repo.git`, `https://host[/context]/scm/PROJ/repo.git`, or a browser URL
 * `https://host/projects/PROJ/repos/repo`. Personal repositories have the project key `~user`.
 */
export function bitbucketServerRepo(repoUrl: string): { projectKey: string; slug: string } {
  const url = parseGitUrl(repoUrl);
  let segments = url.segments;
  if (url.scheme !== 'ssh') {
    const scm = segments.lastIndexOf('scm');
    const projects = segments.indexOf('projects');
    if (scm >= 0) segments = segments.slice(scm + 1);
    else if (projects >= 0 && segments[projects + 2] === 'repos')
      segments = [segments[projects + 1], segments[projects + 3] ?? ''];
    else throw shape(repoUrl, 'Bitbucket Server', 'scm/PROJECT/repo (https) or PROJECT/repo (ssh)');
  }
  if (segments.length !== 2 || !segments[1])
    throw shape(repoUrl, 'Bitbucket Server', 'scm/PROJECT/repo (https) or PROJECT/repo (ssh)');
  return { projectKey: segments[0], slug: segments[1] };
}

/** apiPrefix is the path an API URL has before its fixed suffix (`/gitlab` of `/gitlab/api/v4`), as segments. */
function apiPrefix(apiUrl: string | undefined, suffix: RegExp): string[] {
  if (!apiUrl) return [];
  try {
    return new URL(apiUrl).pathname.replace(suffix, '').split('/').filter(Boolean);
  } catch {
    return [];
  }
}

function stripPrefix(segments: string[], prefix: string[]): string[] {
  if (!prefix.length || prefix.length >= segments.length) return segments;
  return prefix.every((p, i) => segments[i] === p) ? segments.slice(prefix.length) : segments;
}

function shape(repoUrl: string, provider: string, expected: string): ProviderError {
  return new ProviderError(
    'invalid',
    `the repository URL ${redactUrl(repoUrl)} does not name a ${provider} repository: its path should be ${expected}`,
  );
}

/** redactUrl drops a password or token from a URL before it goes into a message. */
export function redactUrl(text: string): string {
  const keep = (scheme: string, user: string) =>
    /^ssh/i.test(scheme) && !user.includes(':') ? `${scheme}${user}@` : scheme;
  return clipSegment(
    text
      .trim()
      .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@/i, (_, scheme: string, user: string) => keep(scheme, user)),
    300,
  );
}

function clipSegment(s: string, max = 60): string {
  const line = s.replace(/[\x00-\x1f\x7f]+/g, ' ');
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
