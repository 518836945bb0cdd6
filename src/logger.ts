import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * SECRET_KEYS name the fields that could ever carry key material or credentials, at any depth of a logged
 * object — a Secret's data, a kubeconfig's user, a request's headers, an error's attached config.
 */
const SECRET_KEYS = new RegExp(
  '^(privateKey|identity|password|passwd|token|bearerToken|access_token|data|stringData|authorization|cookie|' +
    'ca\\.crt|tls\\.key|client-key-data|client-key|key|secret)$',
  'i',
);
const CENSOR = '[redacted]';

/**
 * redactDeep copies a log object with every secret-named field censored, however deep: pino's own
 * `redact` paths are literal (`*.password` covers one level only). Errors are serialised first, their
 * causes and attached fields included, so that nothing an error carries escapes the walk.
 */
export function redactDeep(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth > 10 || seen.has(value)) return '[…]';
  seen.add(value);
  const obj: object = value instanceof Error ? pino.stdSerializers.err(value) : value;
  if (Array.isArray(obj)) return obj.map((v) => redactDeep(v, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj))
    out[k] = SECRET_KEYS.test(k) && v !== undefined && v !== null ? CENSOR : redactDeep(v, depth + 1, seen);
  return out;
}

/** createLogger makes the process logger: pino JSON on stdout, secrets redacted at every depth. */
export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { component: 'flux-bootstrap-operator' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: (obj) => redactDeep(obj) as Record<string, unknown> },
    },
    destination,
  );
}

/** frameworkLogger adapts pino to the string logger @dot-i/k8s-operator expects. */
export function frameworkLogger(log: Logger) {
  const child = log.child({ source: 'k8s-operator' });
  return {
    debug: (m: string) => child.debug(m),
    info: (m: string) => child.info(m),
    warn: (m: string) => child.warn(m),
    error: (m: string) => child.error(m),
  };
}
