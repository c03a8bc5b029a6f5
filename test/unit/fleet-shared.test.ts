// What a fleet node accepts from etcd as the shared config (src/config/shared-record.ts) and as a
// command (src/ha/fleet/commands.ts), which settings are fleet-wide (config/fleet-scope.ts), and how a node's own ini and the shared config
// merge into one Config (config/load.ts loadConfigWithShared).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { configKey } from '../../src/ha/fleet/shared-config.ts'
import { parseSharedConfig, sharedConfigText } from '../../src/config/shared-record.ts'
import { commandsPrefix, parseCommand } from '../../src/ha/fleet/commands.ts'
import { isFleetWideKey } from '../../src/config/fleet-scope.ts'
import { loadConfigWithShared } from '../../src/config/load.ts'

const GOOD = { version: 3, pushed_ms: 1, pushed_by: 'ops@h', source: '/etc/tier.ini', entries: [['databases', 'app', 'host=db1'], ['pgbouncer', 'pool_mode', 'transaction']] }

test('a shared config record is accepted whole, and prints as ini text', () => {
  assert.equal(configKey('tp'), 'tp/config/current')
  const r = parseSharedConfig(JSON.stringify(GOOD))
  assert.ok(r.ok)
  assert.deepEqual(r.record, GOOD)
  assert.equal(sharedConfigText(r.record), '[databases]\napp = host=db1\n\n[pgbouncer]\npool_mode = transaction\n')
})

const BAD_CONFIG: Array<[string, unknown, RegExp]> = [
  ['not JSON', 'pool_mode=session', /not JSON/],
  ['a JSON array', [1], /not a JSON object/],
  ['version 0', { ...GOOD, version: 0 }, /field version/],
  ['a fractional version', { ...GOOD, version: 1.5 }, /field version/],
  ['no pushed_by', { ...GOOD, pushed_by: undefined }, /field pushed_by/],
  ['entries not a list', { ...GOOD, entries: {} }, /field entries/],
  ['an entry of two strings', { ...GOOD, entries: [['databases', 'app']] }, /entry 1 is not/],
  ['a section it cannot share', { ...GOOD, entries: [['peers', '1', 'host=x']] }, /section \[peers\]/],
  ['an unknown setting', { ...GOOD, entries: [['pgbouncer', 'pool_mood', 'x']] }, /unknown setting pool_mood/],
  ['a restart-only setting', { ...GOOD, entries: [['pgbouncer', 'listen_port', '1']] }, /listen_port is node-local/],
  ['a node file', { ...GOOD, entries: [['pgbouncer', 'auth_file', '/x']] }, /auth_file is node-local/],
  ['a fleet key', { ...GOOD, entries: [['tidepool', 'fleet_etcd', 'x:1']] }, /fleet_etcd is node-local/],
]
for (const [what, value, reason] of BAD_CONFIG) {
  test(`shared config refused: ${what}`, () => {
    const r = parseSharedConfig(typeof value === 'string' ? value : JSON.stringify(value))
    assert.equal(r.ok, false)
    if (!r.ok) assert.match(r.reason, reason)
  })
}

test('fleet-wide: what RELOAD applies, less the node\'s files, identity and HTTP access', () => {
  for (const k of ['pool_mode', 'default_pool_size', 'max_db_connections', 'admin_users', 'auth_type', 'fleet_command_timeout_ms']) assert.equal(isFleetWideKey(k), true, k)
  for (const k of ['listen_port', 'listen_addr', 'workers', 'fleet_etcd', 'node_name', 'auth_file', 'client_tls_key_file', 'logfile', 'peer_id', 'http_token', 'nonsense']) assert.equal(isFleetWideKey(k), false, k)
})

test('own ini + shared config: databases, users and fleet-wide settings from the store, the rest from the node', async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-unit-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'node.ini')
  fs.writeFileSync(file, '[databases]\nown = host=h1\n[users]\nbob = pool_mode=session\n[pgbouncer]\nlisten_port = 7000\nauth_type = trust\ndefault_pool_size = 3\n[tidepool]\nnode_name = n1\n')
  const r = await loadConfigWithShared(file, { source: 'etcd:tp/config version 2', entries: [['databases', 'shared', 'host=h2'], ['pgbouncer', 'pool_mode', 'transaction']] })
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'))
  const c = r.config
  assert.deepEqual([...c.databases.keys()], ['shared'])
  assert.deepEqual([...c.users.keys()], [], 'the store has no [users]: none')
  assert.equal(c.settings.listen_port, 7000)
  assert.equal(c.settings.node_name, 'n1')
  assert.equal(c.settings.auth_type, 'md5', 'fleet-wide and not in the store: its default, not the node\'s')
  assert.equal(c.settings.default_pool_size, 20)
  assert.equal(c.settings.pool_mode, 'transaction')

  const bad = await loadConfigWithShared(file, { source: 'etcd:tp/config version 3', entries: [['databases', 'shared', 'host=h2'], ['pgbouncer', 'default_pool_size', 'lots']] })
  assert.equal(bad.ok, false)
  if (!bad.ok) assert.match(bad.errors.join('\n'), /^etcd:tp\/config version 3:2: default_pool_size/m)
})

const CMD = { id: 'x1', op: 'pause', database: 'app', from: 'a', issued_ms: 1, deadline_ms: 2, lease: '7' }
const SWITCHOVER_CMD = { ...CMD, op: 'switchover', switchover: { to: 'node1', stage: 'promoted', primary: '10.0.0.2:5432', why: null } }
const BAD_COMMAND: Array<[string, string, string, RegExp]> = [
  ['a deeper key', 'tp/commands/x1/y', JSON.stringify(CMD), /not a command key/],
  ['not JSON', 'tp/commands/x1', 'PAUSE app', /not JSON/],
  ['an id not its key\'s', 'tp/commands/x2', JSON.stringify(CMD), /id does not match/],
  ['an unknown op', 'tp/commands/x1', JSON.stringify({ ...CMD, op: 'shutdown' }), /op is not a fleet command/],
  ['a numeric database', 'tp/commands/x1', JSON.stringify({ ...CMD, database: 5 }), /database/],
  ['no deadline', 'tp/commands/x1', JSON.stringify({ ...CMD, deadline_ms: undefined }), /deadline_ms/],
  ['a switchover without its state', 'tp/commands/x1', JSON.stringify({ ...CMD, op: 'switchover' }), /switchover has no stage/],
  ['a switchover of no database', 'tp/commands/x1', JSON.stringify({ ...SWITCHOVER_CMD, database: null }), /names no database/],
  ['a switchover in an unknown stage', 'tp/commands/x1', JSON.stringify({ ...SWITCHOVER_CMD, switchover: { ...SWITCHOVER_CMD.switchover, stage: 'done' } }), /no stage/],
  ['a switchover primary not a string', 'tp/commands/x1', JSON.stringify({ ...SWITCHOVER_CMD, switchover: { ...SWITCHOVER_CMD.switchover, primary: 5 } }), /switchover.primary/],
]
test('a command under its own key is accepted', () => {
  assert.deepEqual(parseCommand(commandsPrefix('tp'), 'tp/commands/x1', JSON.stringify(CMD)), { ok: true, record: CMD })
  assert.deepEqual(parseCommand(commandsPrefix('tp'), 'tp/commands/x1', JSON.stringify(SWITCHOVER_CMD)), { ok: true, record: SWITCHOVER_CMD })
})
for (const [what, key, value, reason] of BAD_COMMAND) {
  test(`command refused: ${what}`, () => {
    const r = parseCommand(commandsPrefix('tp'), key, value)
    assert.equal(r.ok, false)
    if (!r.ok) assert.match(r.reason, reason)
  })
}
