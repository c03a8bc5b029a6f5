// The admin console as operators and their tools use it: psql and pg against the virtual
// database "pgbouncer", PgBouncer's column lists, PAUSE/RESUME around live traffic, and refusals.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { runPgbench, runPsql, waitFor } from '../harness/clients.ts'
import fs from 'node:fs'
import { join } from 'node:path'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

// PgBouncer 1.25's SHOW POOLS columns, in order (doc/usage.md).
const POOLS_COLUMNS = ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'load_balance_hosts']

function admin(t: import('node:test').TestContext, tp: TestTidepool, user = pgi.user, password = pgi.password): Promise<pg.Client> {
  return tp.connect(t, { database: 'pgbouncer', user, password })
}

test('SHOW POOLS has PgBouncer\'s columns and counts live clients and servers', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, default_pool_size: 1 } })
  const app = await tp.connect(t)
  await app.query('BEGIN')
  const waiter = await tp.connect(t)
  const pending = waiter.query('SELECT 1')
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'a waiter' })
  const a = await admin(t, tp)
  const r = await a.query('SHOW POOLS')
  assert.deepEqual(r.fields.map((f) => f.name), POOLS_COLUMNS)
  const row = r.rows.find((x) => x.database === 'app')
  assert.equal(Number(row.cl_active), 1)
  assert.equal(Number(row.cl_waiting), 1)
  assert.equal(Number(row.sv_active), 1)
  assert.equal(row.pool_mode, 'transaction')
  await app.query('COMMIT')
  await pending
  const clients = await a.query('SHOW CLIENTS')
  assert.ok(clients.rows.some((x) => x.database === 'app' && x.user === pgi.user))
  const servers = await a.query('SHOW SERVERS')
  assert.ok(servers.rows.some((x) => x.database === 'app'))
  const psql = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql: 'SHOW VERSION' })
  assert.equal(psql.code, 0, psql.stderr)
  assert.match(psql.stdout, /tidepool/)
})

test('PAUSE holds queries and RESUME lets them through', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const a = await admin(t, tp)
  await a.query('PAUSE app')
  const pending = app.query('SELECT 1 AS one')
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'the query to be held' })
  await assert.rejects(a.query('RESUME nosuchdb'), (e: any) => e.code === '08P01')
  await a.query('RESUME app')
  assert.equal((await pending).rows[0].one, 1)
})

test('PAUSE waits for the running transaction, then answers', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const app = await tp.connect(t)
  await app.query('BEGIN')
  const a = await admin(t, tp)
  let isPaused = false
  const paused = a.query('PAUSE').then(() => { isPaused = true })
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(isPaused, false, 'PAUSE does not answer while a transaction runs')
  await app.query('COMMIT')
  await paused
  await assert.rejects(a.query('PAUSE'), (e: any) => e.code === '08P01' && /already suspended\/paused/.test(e.message))
  await a.query('RESUME')
  await assert.rejects(a.query('RESUME'), (e: any) => e.code === '08P01' && /not paused/.test(e.message))
})

test('console refusals: unknown command, extended protocol, a user in neither admin_users nor stats_users', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user, stats_users: TEST_USERS.scram.user },
    // intruder is known (trust admits no other name) but no console user.
    userlist: { [pgi.user]: pgi.password, [TEST_USERS.scram.user]: TEST_USERS.scram.password, intruder: 'x' },
  })
  const a = await admin(t, tp)
  await assert.rejects(a.query('FLY TO THE MOON'), (e: any) => e.code === '08P01' && /invalid command/.test(e.message))
  assert.equal((await a.query('SHOW VERSION')).rows.length, 1, 'the session goes on after an error')
  const stats = await admin(t, tp, TEST_USERS.scram.user, TEST_USERS.scram.password)
  assert.ok((await stats.query('SHOW POOLS')).rows.length >= 1, 'stats_users may SHOW')
  await assert.rejects(stats.query('PAUSE'), (e: any) => /admin access needed/.test(e.message))
  const nobody = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'pgbouncer', user: 'intruder', password: 'x' })
  await assert.rejects(nobody.connect(), (e: any) => e.message === 'not allowed')
  const ext = await admin(t, tp)
  await assert.rejects(ext.query('SHOW POOLS WHERE $1', [1]), (e: any) => /extended query protocol not supported/.test(e.message))
})

test('SHOW STATS counts transactions, queries, bytes and server assignments of real traffic', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, stats_period: 1 } })
  const app = await tp.connect(t)
  for (let i = 0; i < 4; i++) await app.query('SELECT 1')
  await app.query('BEGIN')
  for (let i = 0; i < 3; i++) await app.query('SELECT pg_sleep(0.01)')
  await app.query('COMMIT')
  const a = await admin(t, tp)
  const row = (await a.query('SHOW STATS')).rows.find((x) => x.database === 'app')
  assert.equal(Number(row.total_xact_count), 5, '4 autocommit queries + 1 transaction')
  assert.equal(Number(row.total_query_count), 9, '4 + BEGIN, 3 SELECT, COMMIT')
  assert.equal(Number(row.total_server_assignment_count), 5)
  assert.ok(Number(row.total_received) > 0 && Number(row.total_sent) > Number(row.total_received))
  assert.ok(Number(row.total_xact_time) >= 30_000, `the transaction took ≥30 ms: ${row.total_xact_time} µs`)
  assert.ok(Number(row.total_query_time) >= 30_000)
  await waitFor(async () => Number((await a.query('SHOW STATS_AVERAGES')).rows.find((x) => x.database === 'app')?.xact_count ?? 0) > 0 ||
    Number((await a.query('SHOW STATS')).rows.find((x) => x.database === 'app')?.avg_xact_time ?? 0) > 0, { timeoutMs: 5_000, what: 'averages after one stats_period' })
})

test('SHOW STATS counts client Parses, server Parses and Binds of named prepared statements', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, default_pool_size: 1 } })
  const [c1, c2] = [await tp.connect(t), await tp.connect(t)]
  // node-postgres parses a name once per connection and binds it at every use.
  for (let i = 0; i < 3; i++) {
    await c1.query({ name: 'one', text: 'SELECT $1::int AS v', values: [i] })
    await c2.query({ name: 'two', text: 'SELECT $1::int AS v', values: [i] })
  }
  const a = await admin(t, tp)
  const row = (await a.query('SHOW STATS')).rows.find((x) => x.database === 'app')
  assert.equal(Number(row.total_client_parse_count), 2, 'one Parse per client and name')
  assert.equal(Number(row.total_bind_count), 6)
  // Both names are one statement text: the pool's one server is sent a single Parse for it.
  assert.equal(Number(row.total_server_parse_count), 1)
})

test('pgbench -M prepared: parse and bind counts in SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS; none in session mode', { timeout: 60_000 }, async (t) => {
  // Issue 16 reported these as staying 0; they count (this test passed before any change), and
  // only where PgBouncer counts them: transaction and statement mode with max_prepared_statements > 0.
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user, default_pool_size: 2, stats_period: 1 },
    databases: {
      app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}`,
      sess: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password} pool_mode=session`,
    },
  })
  const script = join(tp.dir, 'select.sql')
  fs.writeFileSync(script, 'SELECT 1;\n')
  const bench = (db: string, args: string[]) => runPgbench({ port: tp.port, user: pgi.user, db, args: ['-n', '-M', 'prepared', '-c', '2', '-f', script, ...args] })
  const a = await admin(t, tp)
  let r = await bench('app', ['-T', '3'])
  assert.equal(r.code, 0, r.stderr)
  const row = async (sql: string, db: string) => (await a.query(sql)).rows.find((x) => x.database === db)
  const stats = await row('SHOW STATS', 'app')
  const xacts = Number(stats.total_xact_count)
  assert.ok(xacts > 20, `pgbench ran: ${xacts} transactions`)
  assert.equal(Number(stats.total_client_parse_count), 2, 'pgbench parses its statement once per connection')
  assert.ok([1, 2].includes(Number(stats.total_server_parse_count)), `one Parse per server that needed it: ${stats.total_server_parse_count}`)
  // Each connection's Parse + Sync (libpq's PQprepare) is a transaction of its own with no Bind.
  assert.equal(Number(stats.total_bind_count), xacts - 2, 'one Bind per pgbench transaction')
  assert.ok(Number(stats.avg_bind_count) > 0, `binds per second over the last stats_period: ${stats.avg_bind_count}`)
  const totals = await row('SHOW STATS_TOTALS', 'app')
  assert.deepEqual([totals.client_parse_count, totals.server_parse_count, totals.bind_count],
    [stats.total_client_parse_count, stats.total_server_parse_count, stats.total_bind_count])
  assert.ok(Number((await row('SHOW STATS_AVERAGES', 'app')).avg_bind_count) > 0)
  const sum = new Map((await a.query('SHOW TOTALS')).rows.map((x) => [x.name as string, Number(x.value)]))
  assert.equal(sum.get('total_ps_client_parse_count'), 2)
  assert.equal(sum.get('total_ps_bind_count'), xacts - 2)
  // Session mode passes statement names through: nothing is counted, as in PgBouncer.
  r = await bench('sess', ['-t', '20'])
  assert.equal(r.code, 0, r.stderr)
  const sess = await row('SHOW STATS', 'sess')
  assert.equal(Number(sess.total_xact_count), 42)
  assert.deepEqual([sess.total_client_parse_count, sess.total_server_parse_count, sess.total_bind_count], ['0', '0', '0'])
})

test('PAUSE never hangs: after pause_timeout_ms it names the busy pool, and RESUME still works', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { pause_timeout_ms: 500 } })
  const app = await tp.connect(t)
  await app.query('BEGIN')
  const a = await admin(t, tp)
  const started = Date.now()
  await assert.rejects(a.query('PAUSE'), (e: any) => e.code === '57014' && new RegExp(`timed out after 500 ms \\(pause_timeout_ms\\) waiting for app/${pgi.user} \\(1 active\\)`).test(e.message))
  assert.ok(Date.now() - started < 5_000)
  assert.ok(tp.logs.some((l) => l.includes('[pause.timed_out]')))
  await a.query('RESUME')
  await app.query('COMMIT')
  assert.equal((await app.query('SELECT 1 AS one')).rows[0].one, 1)
})

test('RECONNECT, DISABLE/ENABLE, KILL and KILL_CLIENT act on live connections', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { janitor_interval_ms: 100 } })
  const a = await admin(t, tp)
  const app = await tp.connect(t)
  const pid1 = (await app.query('SELECT pg_backend_pid() AS p')).rows[0].p
  await a.query('RECONNECT app')
  await a.query('WAIT_CLOSE app')
  const pid2 = (await app.query('SELECT pg_backend_pid() AS p')).rows[0].p
  assert.notEqual(pid1, pid2, 'RECONNECT replaced the server')

  await a.query('DISABLE app')
  const refused = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password })
  await assert.rejects(refused.connect(), (e: any) => e.message === 'database does not allow connections: app')
  assert.equal((await a.query('SHOW DATABASES')).rows.find((r) => r.name === 'app').disabled, 1)
  assert.equal((await app.query('SELECT 1 AS one')).rows[0].one, 1, 'connected clients keep working')
  await a.query('ENABLE app')
  const back = await tp.connect(t)
  assert.equal((await back.query('SELECT 1 AS one')).rows[0].one, 1)

  const id = Number((await a.query('SHOW CLIENTS')).rows.find((r) => r.database === 'app').id)
  await a.query(`KILL_CLIENT ${id}`)
  await waitFor(() => tp.rt.clients.size === 2, { timeoutMs: 5_000, what: 'one app client killed' })

  await a.query('KILL app')
  await waitFor(() => [...tp.rt.clients].every((c) => c.database !== 'app'), { timeoutMs: 5_000, what: 'every app client dropped' })
  const held = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password })
  held.on('error', () => {})
  await held.connect()
  t.after(() => held.end().catch(() => {}))
  const pending = held.query('SELECT 5 AS five')
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'a new client waits after KILL' })
  await a.query('RESUME app')
  assert.equal((await pending).rows[0].five, 5)
})

test('KILL with no database (PgBouncer 1.25) drops every pool; each database waits for RESUME db', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const a = await admin(t, tp)
  const app = await tp.connect(t)
  const other = await tp.connect(t, { database: 'postgres' })
  await app.query('BEGIN')
  await other.query('SELECT 1')
  assert.equal((await a.query('KILL')).command, 'KILL')
  await waitFor(() => [...tp.rt.clients].every((c) => c.database === 'pgbouncer'), { timeoutMs: 5_000, what: 'every client but the console dropped' })
  assert.equal(tp.poolCounts('app', pgi.user).sv_active + tp.poolCounts('postgres', pgi.user).sv_idle, 0, 'their servers closed')
  assert.equal((await a.query('SHOW STATE')).rows.find((r) => r.key === 'paused').value, 'no', 'the pooler itself is not paused')
  const held = await tp.connect(t)
  const pending = held.query('SELECT 6 AS six')
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'a new client waits after KILL' })
  await a.query('RESUME app')
  assert.equal((await pending).rows[0].six, 6)
  assert.equal(Number((await a.query('SHOW DATABASES')).rows.find((r) => r.name === 'postgres').paused), 1, 'postgres waits for its own RESUME')
})

test('a console session holds its cancel key: closing it never drops another client\'s key', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const before = tp.rt.cancels.size
  const a = await admin(t, tp)
  assert.equal(tp.rt.cancels.size, before + 1, 'the console key is registered, so it cannot be issued twice')
  const app = await tp.connect(t)
  assert.equal(tp.rt.cancels.size, before + 2)
  await a.end()
  await waitFor(() => tp.rt.cancels.size === before + 1, { timeoutMs: 5_000, what: 'the console key released' })
  const key = app as unknown as { processID: number }
  assert.notEqual(key.processID, undefined)
  assert.equal((await app.query('SELECT 1 AS one')).rows[0].one, 1)
})
