// docs/config.md is generated from the settings table; this fails while it is stale. The generator's
// --check mode runs as a child process, so its test is test/integration/config-doc-check.test.ts.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { DOC_PATH, renderConfigDoc } from '../../scripts/gen-config-doc.ts'
import { SETTINGS } from '../../src/config/settings.ts'

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
