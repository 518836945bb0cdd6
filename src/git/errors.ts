/**
 * GitErrorKind classifies a git failure into what a user can act on. `timeout` is a git host that did not
 * finish in time; `unsafeContent` is a repository whose content the operator refuses to touch (a symbolic
 * link, a submodule or an oversized file where it reads or writes). `rejected` is a push that lost a race:
 * another writer moved the branch between the fetch and the push (retried at once from a fresh fetch);
 * `raceLost` is such a race lost every time until the retries' budget ran out; `protected` is a push the
 * host refuses whatever the branch's state (a protected branch, a hook).
 */
export type GitErrorKind =
  | 'hostKey'
  | 'auth'
  | 'notFound'
  | 'unreachable'
  | 'timeout'
  | 'rejected'
  | 'raceLost'
  | 'protected'
  | 'unsafeContent'
  | 'other';

/** GitError is a failed git operation, classified; its message never holds credentials. */
export class GitError extends Error {
  readonly kind: GitErrorKind;
  constructor(kind: GitErrorKind, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'GitError';
    this.kind = kind;
  }
}

const PATTERNS: [GitErrorKind, RegExp][] = [
  ['hostKey', /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known/i],
  ['rejected', /cannot lock ref|failed to update ref|incorrect old value/i],
  ['protected', /pre-receive hook declined|protected branch|\[remote rejected\]/i],
  [
    'rejected',
    new RegExp(
      '\\[rejected\\].*(fetch first|non-fast-forward)|failed to push some refs.*(fetch first|non-fast-forward)|' +
        'Updates were rejected',
      'is',
    ),
  ],
  ['auth', /Permission denied|Authentication failed|could not read Username|invalid credentials|403/i],
  [
    'notFound',
    new RegExp(
      'does not appear to be a git repository|Repository not found|not found|could not be found|does not exist|' +
        'no such repository|No such file or directory',
      'i',
    ),
  ],
  [
    'unreachable',
    new RegExp(
      'Could not resolve hostname|Connection refused|Connection timed out|No route to host|Network is unreachable|' +
        'Connection closed|Connection reset|banner exchange|kex_exchange_identification|not responding|' +
        'Operation too slow',
      'i',
    ),
  ],
];

/** redact drops credentials from a URL before it reaches a message. */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/\s]*@/g, (m) => (m.includes(':') ? '//***@' : m));
}

/**
 * gitOutputDetail keeps what a message needs of git's output: the server's last two `remote:` lines (often
 * the reason, such as a protected branch) and git's last three. The server is not trusted, so control
 * characters are dropped, each line is cut short and URLs are redacted.
 */
export function gitOutputDetail(text: string): string {
  const lines = text
    .split(/[\r\n]+/)
    .map((l) =>
      redact(
        l
          .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
          .replace(/[\x00-\x1f\x7f]/g, '')
          .trim(),
      ),
    )
    .filter((l) => l && !/^(hint|remote):\s*$/.test(l) && !l.startsWith('hint:'))
    .map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l));
  const remote = lines.filter((l) => l.startsWith('remote:'));
  return [...remote.slice(-2), ...lines.filter((l) => !l.startsWith('remote:')).slice(-3)].join('; ');
}

/** classifyGitError turns git's output of a failed command into a GitError of the kind it shows. */
export function classifyGitError(action: string, output: string, cause?: unknown): GitError {
  const kind = PATTERNS.find(([, re]) => re.test(output))?.[0] ?? 'other';
  return new GitError(kind, `${action}: ${gitOutputDetail(output) || 'git failed'}`, cause);
}

/** formatBytes writes a size for a message: `3 MiB`, `256 KiB`. */
export function formatBytes(n: number): string {
  return n >= 1048576 ? `${Math.round((n / 1048576) * 10) / 10} MiB` : `${Math.ceil(n / 1024)} KiB`;
}
