// docs/config.md is generated from the settings table; this fails while it is stale, and checks
// that the generator's --check mode tells stale from fresh by its exit code.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DOC_PATH, renderConfigDoc } from '../../scripts/gen-config-doc.ts'
import { SETTINGS } from '../../src/config/settings.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const script = join(root, 'scripts', 'gen-config-doc.ts')

test('docs/config.md matches the settings table (regenerate: npx tsx scripts/gen-config-doc.ts)', () => {
  assert.equal(fs.readFileSync(DOC_PATH, 'utf8'), renderConfigDoc())
})

test('docs/config.md has one row per setting, with its default and how it applies', () => {
  const doc = renderConfigDoc()
  for (const row of SETTINGS) {
    const line = doc.split('\n').find((l) => l.startsWith(`| \`${row.name}\` |`))
    assert.ok(line !== undefined, `${row.name} missing`)
    assert.ok(line.includes(` | ${row.section} | `), `${row.name}: section`)
    assert.ok(line.includes(` | ${row.apply} | `), `${row.name}: apply`)
    if (row.default !== '') assert.ok(line.includes(`\`${row.default.replace(/\|/g, '\\|')}\``), `${row.name}: default`)
  }
})

test('gen-config-doc --check: exit 0 when fresh, 1 when stale, and it writes nothing', { timeout: 60_000 }, (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-doc-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'config.md')
  const run = () => spawnSync(process.execPath, ['--import', 'tsx', script, '--check', path], { cwd: root, encoding: 'utf8' })

  fs.writeFileSync(path, renderConfigDoc())
  assert.equal(run().status, 0)

  const stale = renderConfigDoc().replace('| `listen_port` | pgbouncer | int | `6432` |', '| `listen_port` | pgbouncer | int | `5432` |')
  fs.writeFileSync(path, stale)
  const r = run()
  assert.equal(r.status, 1)
  assert.match(r.stderr, /is stale/)
  assert.equal(fs.readFileSync(path, 'utf8'), stale)
})
