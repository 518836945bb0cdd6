/**
 * Global setup of `npm test`: one lab for every end-to-end file, started before the suite and taken down
 * after it (node --test-global-setup). Unit tests do not need it; the lab's own tests start labs of their own.
 */
import { labDown, labUp } from './lab/lab.ts';
import { E2E_LAB_DIR } from './e2e/harness.ts';

const log = (line: string) => process.stderr.write(`[e2e lab] ${line}\n`);

export async function globalSetup(): Promise<void> {
  const started = Date.now();
  // with Gitea (a git host with an API: deploy-key registration); its first build takes minutes, then it is cached
  await labUp({ dir: E2E_LAB_DIR, log: process.env.E2E_VERBOSE ? log : undefined, gitea: true });
  log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${E2E_LAB_DIR}`);
}

export async function globalTeardown(): Promise<void> {
  if (process.env.E2E_KEEP_LAB) {
    log(`kept running at ${E2E_LAB_DIR} (E2E_KEEP_LAB)`);
    return;
  }
  await labDown({ dir: E2E_LAB_DIR });
}
