import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * REDACT lists the log paths that could ever carry key material or credentials; pino censors them even
 * when a careless call logs a whole object.
 */
const REDACT = [
  'privateKey',
  '*.privateKey',
  'identity',
  '*.identity',
  'password',
  '*.password',
  'token',
  '*.token',
  'data',
  '*.data',
  'stringData',
  '*.stringData',
];

/** createLogger makes the process logger: pino JSON on stdout, secrets redacted. */
export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { component: 'flux-bootstrap-operator' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
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
