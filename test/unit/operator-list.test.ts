import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listPages } from '../../src/controller/operator.ts';

test("the informer lists a page at a time and joins the pages, at the first page's resourceVersion", async () => {
  const asked: string[] = [];
  const pages: Record<string, any> = {
    '/apis/x?limit=2': { items: [1, 2], metadata: { resourceVersion: '7', continue: 'a b' } },
    '/apis/x?limit=2&continue=a%20b': { items: [3, 4], metadata: { resourceVersion: '7', continue: 'c' } },
    '/apis/x?limit=2&continue=c': { items: [5], metadata: { resourceVersion: '7' } },
  };
  const mgmt = { request: async (_m: string, path: string) => (asked.push(path), pages[path]) } as any;
  const list = await listPages(mgmt, '/apis/x', 2);
  assert.deepEqual(list.items, [1, 2, 3, 4, 5]);
  assert.equal(list.metadata?.resourceVersion, '7');
  assert.equal(asked.length, 3);
});
