// The layer table in eslint.config.js (docs/architecture.md explains it) and the SQLSTATE guard:
// planted file contents are linted as if they lived in src/, and a wrong import must be an error.
// Nothing is written to disk.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const eslint = new ESLint({ cwd: root })
const LAYER_RULE = '@typescript-eslint/no-restricted-imports'

const CHECKED: ReadonlySet<string | null> = new Set([LAYER_RULE, 'no-restricted-syntax', null])

/** The layer and SQLSTATE rule ids (or parse errors) ESLint reports for `code` placed at `file`. */
async function ruleErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport {}\n`, { filePath: join(root, file) })
  return result.messages.filter((m) => m.severity === 2 && CHECKED.has(m.ruleId)).map((m) => m.ruleId ?? m.message)
}

const cases: Array<[file: string, code: string, isError: boolean]> = [
  ['src/pool/planted.ts', `import { ClientConn } from '../proxy/client-conn.ts'; void ClientConn`, true],
  ['src/pool/planted.ts', `import type { ClientConn } from '../proxy/client-conn.ts'; let c: ClientConn`, true],
  ['src/pool/planted.ts', `import type { Config } from '../config/types.ts'; let c: Config`, false],
  ['src/pool/planted.ts', `import { loadConfig } from '../config/load.ts'; void loadConfig`, true],
  ['src/pool/planted.ts', `import { Logger } from '../observe/log.ts'; void Logger`, false],
  ['src/pool/planted.ts', `import { renderMetrics } from '../observe/metrics.ts'; void renderMetrics`, true],
  ['src/util/planted.ts', `import { SqlState } from '../protocol/pg-error.ts'; void SqlState`, true],
  ['src/protocol/planted.ts', `import { TidepoolError } from '../util/errors.ts'; void TidepoolError`, false],
  ['src/net/planted.ts', `import { ServerAuth } from '../auth/server-login.ts'; void ServerAuth`, true],
  ['src/auth/planted.ts', `import { dial } from '../net/dial.ts'; void dial`, false],
  ['src/ha/planted.ts', `import { queryOnce } from '../auth/query-once.ts'; void queryOnce`, false],
  ['src/ha/planted.ts', `import { parseHba } from '../auth/hba.ts'; void parseHba`, true],
  ['src/ha/planted.ts', `import type { PoolControl } from '../pool/control.ts'; let p: PoolControl`, false],
  ['src/ha/planted.ts', `import { Pool } from '../pool/pool.ts'; void Pool`, true],
  ['src/admin/planted.ts', `import { Runtime } from '../runtime.ts'; void Runtime`, true],
  ['src/observe/planted.ts', `import { runConsoleQuery } from '../admin/console.ts'; void runConsoleQuery`, true],
  ['src/bench/planted.ts', `import { Framer } from '../protocol/framer.ts'; void Framer`, true],
  ['src/embedded/planted.ts', `import { Logger } from '../observe/log.ts'; void Logger`, true],
  ['src/cli/planted.ts', `import { Runtime } from '../runtime.ts'; void Runtime`, false],
  ['src/cli/planted.ts', `import '../main.ts'`, true],
  ['src/runtime.ts', `import { runStart } from './cli/start.ts'; void runStart`, true],
]

for (const [file, code, isError] of cases) {
  test(`${file}: ${code.split(';')[0]} is ${isError ? 'refused' : 'allowed'}`, async () => {
    const errors = await ruleErrors(file, code)
    assert.deepEqual(errors, isError ? [LAYER_RULE] : [])
  })
}

test('every folder under src/ and every file at its top has a layer rule', async () => {
  const entries = readdirSync(join(root, 'src'), { withFileTypes: true })
  const files = entries.map((e) => (e.isDirectory() ? `src/${e.name}/planted.ts` : `src/${e.name}`)).filter((f) => f.endsWith('.ts'))
  assert.ok(files.length >= 15)
  for (const f of files) {
    const config = await eslint.calculateConfigForFile(join(root, f))
    assert.ok(config.rules?.[LAYER_RULE] !== undefined, `${f} has no layer rule in eslint.config.js`)
  }
})

test('a SQLSTATE spelt outside src/protocol/pg-error.ts is refused; a 5-digit default is not one', async () => {
  assert.deepEqual(await ruleErrors('src/auth/planted.ts', `export const e = { code: '28P01' }`), ['no-restricted-syntax'])
  assert.deepEqual(await ruleErrors('src/pool/planted.ts', `export const e = '53300'`), ['no-restricted-syntax'])
  assert.deepEqual(await ruleErrors('src/config/planted.ts', `export const row = { default: '60000' }`), [])
  assert.deepEqual(await ruleErrors('src/config/planted.ts', `export const e = 'EPERM'`), [])
  assert.deepEqual(await ruleErrors('src/protocol/pg-error.ts', `export const S = { InvalidPassword: '28P01' }`), [])
})
