/**
 * How the image runs node (Dockerfile's ENTRYPOINT and ENV; test/integration/deploy.test.ts keeps them equal): the
 * end-to-end tests and the bench run the operator the same way, so what they measure is what ships.
 */
export const NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size'];
export const NODE_ENV = { MALLOC_ARENA_MAX: '2' };
