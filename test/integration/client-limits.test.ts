// PgBouncer 1.24/1.25 client-side settings, each as an operator story with PgBouncer's texts:
// max_db/user_client_connections, transaction_timeout, query_wait_notify, disable_pqexec,
// application_name_add_host, server_fast_close and unix_socket_group.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { groupId } from '../../src/net/listener.ts'
import type { TestContext } from 'node:test'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const fast = { janitor_interval_ms: 100 }

/** Connects without the harness's bookkeeping, for logins expected to fail. */
async function tryConnect(tp: TestTidepool, t: TestContext, opts: { database?: string; user?: string; password?: string } = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: opts.database ?? 'app', user: opts.user ?? pgi.user, password: opts.password ?? pgi.password })
  c.on('error', () => {})
  t.after(() => c.end().catch(() => {}))
  await c.connect()
  return c
}

test('max_db_client_connections refuses the client over the limit of its database, and admits one after a leave', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { max_db_client_connections: 2 } })
  const a = await tp.connect(t)
  await tp.connect(t)
  await assert.rejects(tryConnect(tp, t), (e: any) => e.code === '08P01' && e.message === 'client connections exceeded (max_db_client_connections)')
  // Another database is counted on its own.
  const other = await tp.connect(t, { database: 'postgres' })
  assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1)
  await a.end()
  await waitFor(async () => {
    try {
      await (await tryConnect(tp, t)).query('SELECT 1')
      return true
    } catch {
      return false
    }
  }, { timeoutMs: 5_000, what: 'a free client slot after a client left' })
})

test('the admin console counts in max_db_client_connections and max_user_client_connections for a stats user; admin_users are never refused', { timeout: 30_000 }, async (t) => {
  const stats = TEST_USERS.scram
  const console = (tp: TestTidepool, user: string, password: string) => {
    const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'pgbouncer', user, password })
    c.on('error', () => {})
    t.after(() => c.end().catch(() => {}))
    return c.connect().then(() => c)
  }
  const exceeded = (limit: string) => (e: any) => e.code === '08P01' && e.message === `client connections exceeded (${limit})`
  const byDb = await startTidepool(t, pgi, {
    settings: { max_db_client_connections: 1, admin_users: pgi.user, stats_users: stats.user },
    userlist: { [pgi.user]: pgi.password, [stats.user]: stats.password },
  })
  const first = await console(byDb, stats.user, stats.password)
  await assert.rejects(console(byDb, stats.user, stats.password), exceeded('max_db_client_connections'))
  const admins = [await console(byDb, pgi.user, pgi.password), await console(byDb, pgi.user, pgi.password)]
  for (const a of admins) await a.query('SHOW VERSION')
  assert.equal((await first.query('SHOW DATABASES')).rows.find((r) => r.name === 'pgbouncer').current_client_connections, 3, 'admins are counted too')
  for (const c of [first, ...admins]) await c.end()
  await waitFor(() => console(byDb, stats.user, stats.password).then(() => true, () => false), { timeoutMs: 5_000, what: 'the slot of the console clients that left' })

  const byUser = await startTidepool(t, pgi, {
    settings: { max_user_client_connections: 1, admin_users: pgi.user, stats_users: stats.user },
    userlist: { [pgi.user]: pgi.password, [stats.user]: stats.password },
  })
  await console(byUser, stats.user, stats.password)
  await assert.rejects(console(byUser, stats.user, stats.password), exceeded('max_user_client_connections'))
  // One count per user across the console and the pools, as in PgBouncer.
  await assert.rejects(tryConnect(byUser, t, { user: stats.user, password: stats.password }), exceeded('max_user_client_connections'))
  for (let i = 0; i < 2; i++) await (await console(byUser, pgi.user, pgi.password)).query('SHOW VERSION')
})

test('a per-database max_db_client_connections overrides the global one', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { max_db_client_connections: 5 },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password} max_db_client_connections=1` },
  })
  await tp.connect(t)
  await assert.rejects(tryConnect(tp, t), (e: any) => e.message === 'client connections exceeded (max_db_client_connections)')
})

test('max_user_client_connections from [users] caps one login user across databases', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { users: { [pgi.user]: 'max_user_client_connections=2' } })
  await tp.connect(t, { database: 'app' })
  await tp.connect(t, { database: 'postgres' })
  await assert.rejects(tryConnect(tp, t), (e: any) => e.code === '08P01' && e.message === 'client connections exceeded (max_user_client_connections)')
})

test('transaction_timeout ends a transaction open too long, even while it keeps sending queries', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { transaction_timeout: 1, default_pool_size: 1 }, tidepool: fast })
  const c = await tp.connect(t)
  let err: any = null
  c.on('error', (e) => { err ??= e })
  await c.query('SELECT 1') // outside a transaction: never timed
  await c.query('BEGIN')
  const started = Date.now()
  // Short queries keep it from being idle in the transaction; only its age counts.
  while (err === null && Date.now() - started < 5_000) {
    await c.query('SELECT pg_sleep(0.1)').catch((e) => { err ??= e })
  }
  assert.equal(err?.message, 'transaction timeout')
  assert.ok(Date.now() - started >= 900, 'not before the timeout')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the server to be let go' })
  const d = await tp.connect(t)
  assert.equal((await d.query('SELECT now() = statement_timestamp() AS autocommit')).rows[0].autocommit, true)
})

test('query_wait_notify tells a queued client once that it waits, and the query then runs', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, query_wait_notify: 1 }, tidepool: fast })
  const holder = await tp.connect(t)
  await holder.query('BEGIN')
  const waiter = await tp.connect(t)
  const notices: any[] = []
  waiter.on('notice', (n) => notices.push(n))
  const pending = waiter.query('SELECT 42 AS answer')
  await waitFor(() => notices.length > 0, { timeoutMs: 5_000, what: 'the queue notice' })
  await new Promise((r) => setTimeout(r, 400)) // several more janitor sweeps
  await holder.query('COMMIT')
  assert.equal((await pending).rows[0].answer, 42)
  assert.equal(notices.length, 1)
  assert.equal(notices[0].message, 'No server connection available in postgres backend, client being queued')
  assert.equal(notices[0].severity, 'NOTICE')
  assert.equal(notices[0].code, '00000')
})

test('disable_pqexec refuses the simple query protocol and serves the extended one', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { disable_pqexec: 1 } })
  const ext = await tp.connect(t)
  assert.equal((await ext.query({ text: 'SELECT $1::int + 1 AS n', values: [41] })).rows[0].n, 42)
  const simple = await tp.connect(t)
  simple.on('error', () => {})
  await assert.rejects(simple.query('SELECT 1; SELECT 2'), (e: any) => e.code === '08P01' && e.message === 'PQexec disallowed')
  assert.ok(tp.logs.some((l) => l.includes('client used "Query" packet type')))
  // The other client and the pool are unaffected.
  assert.equal((await ext.query({ text: 'SELECT $1::text AS s', values: ['ok'] })).rows[0].s, 'ok')
})

test('application_name_add_host appends the client address, as PgBouncer writes it', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { application_name_add_host: 1 } })
  const named = await tp.connect(t, { application_name: 'billing' })
  const port = (named as any).connection.stream.localPort as number
  assert.equal((await named.query(`SELECT current_setting('application_name') AS a`)).rows[0].a, `billing - 127.0.0.1:${port}`)
  const unnamed = await tp.connect(t)
  const port2 = (unnamed as any).connection.stream.localPort as number
  assert.equal((await unnamed.query(`SELECT current_setting('application_name') AS a`)).rows[0].a, `app - 127.0.0.1:${port2}`)
})

test('server_fast_close disconnects a session client between transactions once RECONNECT marks its server', { timeout: 30_000 }, async (t) => {
  for (const fastClose of [0, 1]) {
    const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'session', server_fast_close: fastClose }, tidepool: fast })
    const c = await tp.connect(t)
    let err: any = null
    c.on('error', (e) => { err ??= e })
    await c.query('SELECT 1')
    tp.rt.admin.reconnect(null)
    if (fastClose === 1) {
      await waitFor(() => err !== null, { timeoutMs: 5_000, what: 'the fast close' })
      assert.equal(err.message, 'database configuration changed')
    } else {
      await new Promise((r) => setTimeout(r, 500))
      assert.equal(err, null)
      assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2)
    }
  }
})

test('unix_socket_group gives the listening socket file to that group', { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-sock-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const group = fs.readFileSync('/etc/group', 'utf8').includes('\ndaemon:') ? 'daemon' : 'root'
  const tp = await startTidepool(t, pgi, { settings: { unix_socket_dir: dir, unix_socket_group: group } })
  const sock = join(dir, `.s.PGSQL.${tp.port}`)
  assert.equal(fs.statSync(sock).gid, groupId(group))
  assert.throws(() => groupId('no-such-group-here'), /no such group/)
})
