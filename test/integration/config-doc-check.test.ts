// The generator's --check mode (what CI runs) tells a stale docs/config.md from a fresh one by its
// exit code; it runs as a child process, so it lives here rather than in test/unit.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderConfigDoc } from '../../scripts/gen-config-doc.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const script = join(root, 'scripts', 'gen-config-doc.ts')

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
