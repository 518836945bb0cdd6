import { isMap, isSeq, parseDocument, type YAMLMap } from 'yaml';
import { dump } from './components.ts';

/** SopsRule is the creation rule the operator keeps in `<path>/.sops.yaml` for the cluster's folder. */
export interface SopsRule {
  /** recipients are the age public keys files are encrypted for: the cluster's own first, then extraRecipients. */
  recipients: string[];
  /** owned are the recipients that mark a rule as the operator's (the cluster's current and previous keys). */
  owned: string[];
  /** cluster names the ClusterBootstrap, for the rule's comment. */
  cluster: string;
}

/** SopsConfigError says that the repository's .sops.yaml cannot be kept as it is. */
export class SopsConfigError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SopsConfigError';
  }
}

/** PATH_REGEX is what the rule covers: every YAML or JSON file under the folder of `.sops.yaml`. */
const PATH_REGEX = '\\.(ya?ml|json)$';
/** ENCRYPTED_REGEX encrypts a Secret's values and nothing else, so a reviewer still reads every other field. */
const ENCRYPTED_REGEX = '^(data|stringData)$';
const MAX_ALIASES = 100;

/**
 * renderSopsConfig makes `<path>/.sops.yaml`: a creation rule encrypting `data` and `stringData` for the
 * cluster's age key (and the platform team's extra recipients). A file the user already has keeps its other rules
 * and comments (the `yaml` Document API); the operator's rule — the one whose `age` names one of `owned` — is
 * rewritten in place, or put first (sops uses the first rule that matches) when there is none. It throws
 * SopsConfigError when the file is not YAML, resolves more than MAX_ALIASES aliases, or has no rule list.
 */
export function renderSopsConfig(existing: string | undefined, rule: SopsRule): string {
  const wanted = {
    path_regex: PATH_REGEX,
    encrypted_regex: ENCRYPTED_REGEX,
    age: rule.recipients.join(','),
  };
  const comment = ` the age key of ${rule.cluster}, kept by flux-bootstrap-operator: Flux decrypts with it`;
  if (existing === undefined || existing.trim() === '') {
    const doc = parseDocument(dump({ creation_rules: [wanted] }));
    const seq = doc.get('creation_rules');
    if (isSeq(seq)) (seq.items[0] as YAMLMap).commentBefore = comment;
    return doc.toString({ lineWidth: 0 });
  }
  const doc = parseDocument(existing, { uniqueKeys: false });
  if (doc.errors.length > 0) throw new SopsConfigError('the existing .sops.yaml is not valid YAML', doc.errors[0]);
  try {
    doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (cause) {
    throw new SopsConfigError(`the existing .sops.yaml resolves more than ${MAX_ALIASES} YAML aliases`, cause);
  }
  if (!isMap(doc.contents)) throw new SopsConfigError('the existing .sops.yaml is not a YAML mapping');
  let rules = doc.get('creation_rules');
  if (rules === undefined) {
    doc.set('creation_rules', doc.createNode([]));
    rules = doc.get('creation_rules');
  }
  if (!isSeq(rules)) throw new SopsConfigError('creation_rules of the existing .sops.yaml is not a list');
  const ours = rules.items.find((item) => isMap(item) && namesOwned(item.get('age'), rule.owned));
  if (isMap(ours)) {
    const changed = Object.entries(wanted).filter(([k, v]) => ours.get(k) !== v);
    if (changed.length === 0) return existing;
    for (const [k, v] of changed) ours.set(k, v);
  } else {
    const node = doc.createNode(wanted) as YAMLMap;
    node.commentBefore = comment;
    rules.items.unshift(node);
  }
  return doc.toString({ lineWidth: 0 });
}

/** namesOwned is true when an `age` value (comma-separated, or a list) names one of the owned recipients. */
function namesOwned(age: unknown, owned: string[]): boolean {
  const list = isSeq(age) ? age.items.map(String) : typeof age === 'string' ? age.split(',') : [];
  return list.some((r) => owned.includes(r.trim()));
}
