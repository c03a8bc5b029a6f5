// scripts/import-cycles.ts, the circle check `npm run lint` runs: it must see every import form
// TypeScript allows (type-only ones included) and name a planted circle.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildGraph, findCycles, importsOf } from '../../scripts/import-cycles.ts'

test('every import form counts, type-only ones too; packages do not', () => {
  const text = [
    `import { join } from 'node:path'`,
    `import { a } from './a.ts'`,
    `import type { B } from '../b/b.ts'`,
    `import { c, type C } from './c.ts'`,
    `export { d } from './d.ts'`,
    `export type * from './e.ts'`,
    `let f: import('./f.ts').F`,
    `const g = await import('./g.ts')`,
  ].join('\n')
  assert.deepEqual(importsOf('src/x/x.ts', text), ['./a.ts', '../b/b.ts', './c.ts', './d.ts', './e.ts', './f.ts', './g.ts'])
})

test('a circle, type-only or through a third file, is found; a chain is not', () => {
  const files: Record<string, string> = {
    'src/a/one.ts': `import type { T } from '../b/two.ts'`,
    'src/b/two.ts': `import { three } from './three.ts'`,
    'src/b/three.ts': `let x: import('../a/one.ts').X`,
    'src/c/chain.ts': `import { one } from '../a/one.ts'`,
  }
  const graph = buildGraph(Object.keys(files), (f) => files[f])
  assert.deepEqual(findCycles(graph), [['src/a/one.ts', 'src/b/three.ts', 'src/b/two.ts']])
  files['src/b/three.ts'] = ''
  assert.deepEqual(findCycles(buildGraph(Object.keys(files), (f) => files[f])), [])
})
