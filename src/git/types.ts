/** GitAuth is how the operator reaches a repository: an SSH key with pinned host keys, or HTTPS basic auth. */
export type GitAuth =
  | { transport: 'ssh'; privateKey: string; knownHosts: string }
  | {
      transport: 'https';
      username: string;
      password: string;
      /** ca is the PEM the host's certificate is checked against, when not a public CA. */ ca?: string;
    };

/** FileUpdate is one file the operator owns: its path in the repository and how to render it from what is there. */
export interface FileUpdate {
  path: string;
  render: (existing: string | undefined) => string;
}

/** UpdateRequest asks for files to be committed and pushed to a branch, only when they change. */
export interface UpdateRequest {
  url: string;
  branch: string;
  auth: GitAuth;
  author: { name: string; email: string };
  message: string;
  /** signingKey, an OpenSSH private key, signs every commit of the update (gpg.format=ssh). */
  signingKey?: string;
  files: FileUpdate[];
  /**
   * proposeTo, for pull-request mode, names the head branch the change goes to instead of `branch` (the base): the
   * files are judged against the base first — nothing to change there means the change is on the base (merged) —
   * then committed on top of the head branch (a fast-forward: nobody's commit is overwritten), or on the base
   * when the head branch is absent or holds nothing the base lacks (merged, squashed or rebased).
   */
  proposeTo?: string;
  /**
   * scan asks which files under `path` (at the branch's head, before the update) contain `needle` — the files
   * still encrypted for a SOPS key being retired; `exclude` lists paths left out.
   */
  scan?: { path: string; needle: string; exclude?: string[] };
  /**
   * signal withdraws the update when it is aborted: before its batch starts it is dropped; in a running batch
   * it is left out of the commit (the attempt starts again without it), and a batch whose every update is
   * withdrawn stops, its git processes killed, before anything is pushed.
   */
  signal?: AbortSignal;
}

/** UpdateResult says what the branch holds after the update, and whether this update pushed a commit. */
export interface UpdateResult {
  head: string;
  pushed: boolean;
  /** attempts is how many fetches it took: more than 1 when pushes lost races to other writers first. */
  attempts: number;
  /** found lists the files the request's scan matched (the first 100), when it asked for one. */
  found?: string[];
  /** proposal is the head branch's commit after a proposeTo update whose change is not on the base yet. */
  proposal?: { branch: string; commit: string; pushed: boolean };
}

/** RepositoriesOptions are the limits of Repositories; every field has a default. */
export interface RepositoriesOptions {
  /** transferTimeoutMs is the hard deadline of one fetch or push: 120 s by default. */
  transferTimeoutMs?: number;
  /** readTimeoutMs is the hard deadline of readHead's ls-remote: 30 s by default. */
  readTimeoutMs?: number;
  /** localTimeoutMs is the hard deadline of a local git command (checkout, commit …): 120 s by default. */
  localTimeoutMs?: number;
  /** maxOutputBytes caps what one git command may print before it is killed: 4 MiB by default. */
  maxOutputBytes?: number;
  /** maxFileBytes caps a file the operator reads back from the repository: 2 MiB by default. */
  maxFileBytes?: number;
  /** maxRepoBytes caps what one repository's clone may hold in packs on disk: 1 GiB by default. */
  maxRepoBytes?: number;
  /**
   * protocols are the git transports allowed: `ssh` and `https` by default. Tests add `file` (a local
   * path) or `http`; `ext` and the rest stay refused.
   */
  protocols?: readonly string[];
}
