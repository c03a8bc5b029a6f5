// The fleet's shared config through a real etcd: `tidepool fleet push` stores a file that validated
// whole, and three nodes (two in-process, one a child process) apply it as a RELOAD (push → applied
// is measured from each node's log line); a file with an error is refused whole and nothing is
// stored; garbage under the config key is refused with a log line and the last good config kept;
// a node started while etcd is down runs its own ini and catches up when etcd returns.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { Etcd3 } from 'etcd3'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { writeConfig } from '../harness/tidepool.ts'
import { startEtcd, type Etcd } from '../harness/etcd.ts'
import { adminQuery, runCli, spawnNode, startNode } from '../harness/fleet.ts'
import { waitFor } from '../harness/clients.ts'
import { parseIniFile } from '../../src/config/ini.ts'
import { sharedEntriesOf } from '../../src/config/load.ts'
import { configKey, pushSharedConfig } from '../../src/ha/fleet/shared-config.ts'
import { parseSharedConfig } from '../../src/config/shared-record.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const TTL_S = 2

/** A file to push: app and `shared` (PostgreSQL's postgres database), the console's admin, and whatever else is given. */
function sharedFile(t: { after(fn: () => void): void }, etcd: Etcd, fleet: string, settings: Record<string, string | number>): string {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-push-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const conn = `host=127.0.0.1 port=${pgi.port} user=${pgi.user} password=${pgi.password}`
  return writeConfig(dir, pgi, {
    databases: { app: `${conn} dbname=app`, shared: `${conn} dbname=postgres` },
    settings: { admin_users: pgi.user, ...settings },
    tidepool: { fleet_etcd: etcd.endpoint, fleet_name: fleet },
  })
}

async function configVersion(port: number): Promise<string | null> {
  return (await adminQuery(pgi, port, 'SHOW FLEET'))[0]?.config_version ?? null
}

async function databases(port: number): Promise<string[]> {
  return (await adminQuery(pgi, port, 'SHOW DATABASES')).map((r) => r.name ?? '').filter((n) => n !== 'pgbouncer').sort()
}

async function setting(port: number, key: string): Promise<string | null> {
  return (await adminQuery(pgi, port, 'SHOW CONFIG')).find((r) => r.key === key)?.value ?? null
}

/** Some line of `log` is the event's and says `text`. */
function hasLine(log: string, event: string, text: string): boolean {
  return log.split('\n').some((l) => l.includes(`[${event}]`) && l.includes(text))
}

/** "(N ms after the push)" of the node's fleet.config_applied line for `version`. */
function appliedMs(log: string, version: number): number | null {
  const line = log.split('\n').find((l) => l.includes('[fleet.config_applied]') && l.includes(`applied shared config version ${version} `))
  const m = line === undefined ? null : /\((-?\d+) ms after the push\)/.exec(line)
  return m === null ? null : Number(m[1])
}

test('fleet push: every node applies the new version as a RELOAD; a bad file is refused whole; garbage in etcd is refused and the last good config kept', { timeout: 120_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const a = await startNode(t, pgi, etcd, fleet, 'a', TTL_S)
  const b = await startNode(t, pgi, etcd, fleet, 'b', TTL_S)
  const c = await spawnNode(t, pgi, etcd, fleet, 'c', TTL_S)
  const ports = [a.port, b.port, c.port]
  for (const port of ports) {
    await waitFor(async () => (await adminQuery(pgi, port, 'SHOW FLEET')).filter((r) => r.state === 'up').length === 3, { timeoutMs: 20_000, intervalMs: 100, what: `node on ${port} to list 3 nodes up` })
    assert.deepEqual(await databases(port), ['app', 'postgres'])
    assert.match(await configVersion(port) ?? '', /^[0-9a-f]{12}$/, 'no shared config yet: a digest of the own ini')
  }

  // listen_port is node-local: stored nowhere, every node keeps its own.
  const file = sharedFile(t, etcd, fleet, { default_pool_size: 7, listen_port: 1 })
  const pushed = await runCli(['fleet', 'push', file])
  assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr)
  assert.match(pushed.stdout, /pushed as version 1 of fleet/)
  assert.match(pushed.stdout, /node-local, not pushed[^\n]*listen_port/)
  for (const port of ports) {
    await waitFor(async () => (await configVersion(port)) === '1', { timeoutMs: 10_000, intervalMs: 20, what: `node on ${port} to run version 1` })
    assert.deepEqual(await databases(port), ['app', 'shared'])
    assert.equal(await setting(port, 'default_pool_size'), '7')
  }
  const took = { a: appliedMs(a.logs.join('\n'), 1), b: appliedMs(b.logs.join('\n'), 1), c: appliedMs(c.output(), 1) }
  t.diagnostic(`push → applied (each node's clock minus the push's): a ${took.a} ms, b ${took.b} ms, c ${took.c} ms (goal ≤ 1000 ms)`)
  for (const [n, ms] of Object.entries(took)) assert.ok(ms !== null, `node ${n} logs when it applied version 1`)
  // Through the child node, a database only the pushed file has.
  const viaC = new pg.Client({ host: '127.0.0.1', port: c.port, database: 'shared', user: pgi.user, password: pgi.password })
  viaC.on('error', () => {})
  await viaC.connect()
  t.after(() => viaC.end().catch(() => {}))
  assert.equal((await viaC.query('SELECT current_database() AS db')).rows[0].db, 'postgres')
  // RELOAD re-reads the node's own ini with the shared config still in force.
  await adminQuery(pgi, a.port, 'RELOAD')
  assert.deepEqual(await databases(a.port), ['app', 'shared'])
  assert.equal(await configVersion(a.port), '1')

  // Every node's record says version 1, and `fleet show` prints the stored file and who runs what.
  await waitFor(async () => (await adminQuery(pgi, a.port, 'SHOW FLEET')).every((r) => r.config_version === '1'), { timeoutMs: 10_000, intervalMs: 100, what: 'every record to say version 1' })
  const shown = await runCli(['fleet', 'show', '--etcd', etcd.endpoint, '--fleet', fleet])
  assert.equal(shown.code, 0, shown.stdout + shown.stderr)
  assert.match(shown.stdout, /shared config version 1, pushed .* from .*tidepool\.ini/)
  assert.match(shown.stdout, /^default_pool_size = 7$/m)
  assert.doesNotMatch(shown.stdout, /^listen_port/m)
  for (const n of ['a', 'b', 'c']) assert.match(shown.stdout, new RegExp(`^node=${n} .*config_version=1  current=true`, 'm'))

  // A file with one bad value: refused whole (its new database too), nothing stored.
  const bad = sharedFile(t, etcd, fleet, { default_pool_size: 'lots' })
  fs.appendFileSync(bad, '[databases]\nother = host=127.0.0.1 dbname=other\n')
  const refused = await runCli(['fleet', 'push', bad])
  assert.equal(refused.code, 2, refused.stdout + refused.stderr)
  assert.match(refused.stdout, /error: .*tidepool\.ini:\d+: default_pool_size/)
  assert.match(refused.stdout, /nothing was pushed/)
  const client = new Etcd3({ hosts: etcd.clientUrl })
  t.after(() => client.close())
  const stored = parseSharedConfig(await client.get(configKey(fleet)).string() ?? '')
  assert.ok(stored.ok && stored.record.version === 1, 'etcd still holds version 1')

  // Garbage where the config lives, a key of nobody's, a record setting a node-local key: each refused with a log line.
  await client.put(configKey(fleet)).value('not json {')
  await client.put(`${fleet}/config/extra`).value('x')
  await client.put(configKey(fleet)).value(JSON.stringify({ version: 9, pushed_ms: Date.now(), pushed_by: 'someone', source: 'x.ini', entries: [['pgbouncer', 'listen_port', '1']] }))
  for (const [name, logs] of [['a', () => a.logs.join('\n')], ['b', () => b.logs.join('\n')], ['c', () => c.output()]] as const) {
    await waitFor(() => hasLine(logs(), 'fleet.config_refused', 'listen_port is node-local'), { timeoutMs: 10_000, intervalMs: 50, what: `${name} to refuse the node-local record` })
    assert.ok(hasLine(logs(), 'fleet.config_refused', 'not JSON'), `${name} refuses the value that is not JSON`)
    assert.ok(hasLine(logs(), 'fleet.config_refused', `${fleet}/config/extra`), `${name} names the foreign key`)
  }
  for (const port of ports) {
    assert.equal(await configVersion(port), '1', 'the last good version stays in force')
    assert.deepEqual(await databases(port), ['app', 'shared'])
  }

  // The next good push is applied everywhere; its version is past every one written before.
  const next = sharedFile(t, etcd, fleet, { default_pool_size: 9 })
  const version = await pushSharedConfig(client, fleet, { pushed_ms: Date.now(), pushed_by: 'test', source: next, entries: sharedEntriesOf(await parseIniFile(next)) })
  assert.ok(version > 1, `version ${version}`)
  for (const port of ports) {
    await waitFor(async () => (await configVersion(port)) === String(version), { timeoutMs: 10_000, intervalMs: 20, what: `node on ${port} to run version ${version}` })
    assert.equal(await setting(port, 'default_pool_size'), '9')
  }
})

test('a node started while etcd is down serves its own ini, then catches up with the shared config', { timeout: 90_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const file = sharedFile(t, etcd, fleet, { default_pool_size: 5 })
  const client = new Etcd3({ hosts: etcd.clientUrl })
  t.after(() => client.close())
  assert.equal(await pushSharedConfig(client, fleet, { pushed_ms: Date.now(), pushed_by: 'test', source: file, entries: sharedEntriesOf(await parseIniFile(file)) }), 1)
  client.close()

  await etcd.stop()
  const d = await startNode(t, pgi, etcd, fleet, 'd', TTL_S)
  await waitFor(async () => (await adminQuery(pgi, d.port, 'SHOW FLEET'))[0].state === 'etcd unreachable', { timeoutMs: 20_000, intervalMs: 100, what: 'd to report etcd unreachable' })
  assert.deepEqual(await databases(d.port), ['app', 'postgres'], 'its own ini')
  assert.match(await configVersion(d.port) ?? '', /^[0-9a-f]{12}$/)
  const app = await d.connect(t)
  assert.equal((await app.query('SELECT 1 AS one')).rows[0].one, 1)

  await etcd.start()
  await waitFor(async () => (await configVersion(d.port)) === '1', { timeoutMs: 30_000, intervalMs: 50, what: 'd to catch up with version 1' })
  assert.deepEqual(await databases(d.port), ['app', 'shared'])
  assert.equal(await setting(d.port, 'default_pool_size'), '5')
  assert.equal((await app.query('SELECT 2 AS two')).rows[0].two, 2, 'the client logged in before carries on')
})
