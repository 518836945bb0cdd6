import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as prettier from 'prettier';

const root = new URL('../..', import.meta.url).pathname;

/** sources lists the TypeScript files of a folder, recursively, as paths from the project root. */
function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

const files = [...sources('src'), ...sources('test')];

test('every TypeScript file is formatted by Prettier (npm run format)', async () => {
  const unformatted: string[] = [];
  for (const file of files) {
    const options = { ...(await prettier.resolveConfig(join(root, file))), filepath: join(root, file) };
    if (!(await prettier.check(readFileSync(join(root, file), 'utf8'), options))) unformatted.push(file);
  }
  assert.deepEqual(unformatted, []);
});

test('no line of src/ is wider than the print width of 120', async () => {
  const { printWidth } = (await prettier.resolveConfig(join(root, 'src/main.ts'))) ?? {};
  assert.equal(printWidth, 120);
  const wide = sources('src').flatMap((file) =>
    readFileSync(join(root, file), 'utf8')
      .split('\n')
      .map((line, i) => ({ file, line: i + 1, width: line.length }))
      .filter((l) => l.width > 120),
  );
  assert.deepEqual(wide, []);
});
