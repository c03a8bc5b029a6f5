// The settings in force for a pool, a database and a user: [users] over [databases] over global,
// and PgBouncer's rule that a per-entry limit of 0 means "use the global one", not "no limit".

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { loadConfigFromText } from '../../src/config/load.ts'
import { dbClientLimit, dbServerLimit, entryFor, poolSettings, userClientLimit, userServerLimit } from '../../src/config/effective.ts'
import type { Config } from '../../src/config/types.ts'

async function configOf(t: { after(fn: () => void): void }, text: string): Promise<Config> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-effective-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const r = await loadConfigFromText(text, join(dir, 'tidepool.ini'))
  assert.ok(r.ok, JSON.stringify(r))
  return r.config
}

const INI = `[databases]
zero = host=127.0.0.1 max_db_connections=0 max_db_client_connections=0
own = host=127.0.0.1 max_db_connections=3 pool_size=7 pool_mode=session
* = host=127.0.0.1
[users]
alice = pool_size=2 pool_mode=statement max_user_connections=0 max_user_client_connections=0 query_timeout=9
bob = max_user_connections=4 max_user_client_connections=6
[pgbouncer]
max_db_connections = 11
max_user_connections = 12
max_db_client_connections = 13
max_user_client_connections = 14
default_pool_size = 20
`

test('a per-entry limit of 0 falls back to the global limit, in pools and in SHOW alike', async (t) => {
  const cfg = await configOf(t, INI)
  const zero = entryFor(cfg, 'zero')!
  assert.equal(dbServerLimit(cfg, zero), 11)
  assert.equal(dbClientLimit(cfg, zero), 13)
  assert.equal(poolSettings(cfg, zero, 'nobody').max_db_connections, 11)
  assert.equal(userServerLimit(cfg, 'alice'), 12)
  assert.equal(userClientLimit(cfg, 'alice'), 14)
  assert.equal(poolSettings(cfg, zero, 'alice').max_user_connections, 12)
})

test('[users] values win over [databases] values, which win over the global ones', async (t) => {
  const cfg = await configOf(t, INI)
  const own = entryFor(cfg, 'own')!
  assert.equal(dbServerLimit(cfg, own), 3)
  assert.equal(userServerLimit(cfg, 'bob'), 4)
  assert.equal(userClientLimit(cfg, 'bob'), 6)
  const forAlice = poolSettings(cfg, own, 'alice')
  assert.equal(forAlice.pool_size, 2)
  assert.equal(forAlice.pool_mode, 'statement')
  assert.equal(forAlice.query_timeout, 9)
  const forBob = poolSettings(cfg, own, 'bob')
  assert.equal(forBob.pool_size, 7)
  assert.equal(forBob.pool_mode, 'session')
  assert.equal(forBob.max_user_connections, 4)
  const dbOnly = poolSettings(cfg, own, null)
  assert.equal(dbOnly.pool_size, 7)
  assert.equal(dbOnly.max_user_connections, 12)
})

test("an unknown database resolves to the '*' entry, and without one to nothing", async (t) => {
  const cfg = await configOf(t, INI)
  assert.equal(entryFor(cfg, 'anything')?.name, '*')
  assert.equal(poolSettings(cfg, entryFor(cfg, 'anything')!, null).pool_size, 20)
  const bare = await configOf(t, '[databases]\nonly = host=127.0.0.1\n[pgbouncer]\nauth_type = trust\n')
  assert.equal(entryFor(bare, 'anything'), undefined)
})
