// Timeouts and limits, each with PgBouncer's error text, and the state left behind.
import { test, before, type TestContext } from 'node:test'
import net from 'node:net'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const fast = { janitor_interval_ms: 100 }

/** A listener that accepts and never answers: the connect succeeds, the login never finishes. Its port. */
async function silentServer(t: TestContext): Promise<number> {
  const sink = net.createServer(() => {})
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()))
  t.after(() => sink.close())
  return (sink.address() as net.AddressInfo).port
}

test("query_wait_timeout answers the waiting client with PgBouncer's error", { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, query_wait_timeout: 1 }, tidepool: fast })
  const holder = await tp.connect(t)
  await holder.query('BEGIN')
  const waiter = await tp.connect(t)
  const started = Date.now()
  await assert.rejects(waiter.query('SELECT 1'), (e: any) => e.code === '08P01' && e.message === 'query_wait_timeout')
  assert.ok(Date.now() - started >= 900, 'not before the timeout')
  await holder.query('COMMIT')
  assert.equal(tp.poolCounts('app', pgi.user).cl_waiting, 0)
})

test('client_idle_timeout closes clients idle between transactions', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { client_idle_timeout: 1 }, tidepool: fast })
  const c = await tp.connect(t)
  let err: any = null
  c.on('error', (e) => { err ??= e })
  await c.query('SELECT 1')
  await waitFor(() => err !== null, { timeoutMs: 5_000, what: 'client_idle_timeout' })
  assert.equal(err.message, 'client_idle_timeout')
})

test('idle_transaction_timeout closes a client idle inside a transaction and its server', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { idle_transaction_timeout: 1, default_pool_size: 1 }, tidepool: fast })
  const c = await tp.connect(t)
  let err: any = null
  c.on('error', (e) => { err ??= e })
  await c.query('BEGIN')
  await waitFor(() => err !== null, { timeoutMs: 5_000, what: 'idle transaction timeout' })
  assert.equal(err.message, 'idle transaction timeout')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'server gone' })
  const d = await tp.connect(t)
  assert.equal((await d.query(`SELECT now() = statement_timestamp() AS autocommit`)).rows[0].autocommit, true)
})

test('query_timeout ends a query that runs too long', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { query_timeout: 1, default_pool_size: 1 }, tidepool: fast })
  const c = await tp.connect(t)
  await assert.rejects(c.query('SELECT pg_sleep(10)'), (e: any) => e.message === 'query timeout')
  await waitFor(async () => (await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND state = 'active'`))[0].n === 0, { timeoutMs: 5_000, what: 'the server query to end' })
})

test('max_client_conn refuses the client over the limit', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { max_client_conn: 2 } })
  await tp.connect(t)
  await tp.connect(t)
  const third = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password })
  await assert.rejects(third.connect(), (e: any) => e.code === '08P01' && e.message === 'no more connections allowed (max_client_conn)')
})

test('max_db_connections caps servers across pools of one database', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { max_db_connections: 1, default_pool_size: 5, auth_type: 'trust' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { postgres: pgi.password, app_scram: 'scram-pw' },
  })
  const a = await tp.connect(t, { user: pgi.user })
  const b = await tp.connect(t, { user: 'app_scram', password: 'scram-pw' })
  await a.query('BEGIN')
  const pending = b.query('SELECT 1 AS one')
  await waitFor(() => tp.poolCounts('app', 'app_scram').cl_waiting === 1, { timeoutMs: 5_000, what: 'b to wait' })
  await a.query('COMMIT')
  // a's server is idle in a's pool: tidepool closes it so b's pool can open one within the limit.
  assert.equal((await pending).rows[0].one, 1)
  assert.ok(tp.logs.some((l) => l.includes('max_db_connections')))
  const n = await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'`)
  assert.ok(n[0].n <= 1, `at most one server for app, saw ${n[0].n}`)
})

test('reserve_pool_size adds servers for clients that waited reserve_pool_timeout', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, reserve_pool_size: 1, reserve_pool_timeout: 0.5 }, tidepool: fast })
  const a = await tp.connect(t)
  await a.query('BEGIN')
  const b = await tp.connect(t)
  const started = Date.now()
  assert.equal((await b.query('SELECT 1 AS one')).rows[0].one, 1)
  assert.ok(Date.now() - started >= 400, 'the reserve opens only after reserve_pool_timeout')
  await a.query('COMMIT')
})

test('server_idle_timeout closes idle servers down to min_pool_size', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { server_idle_timeout: 1, min_pool_size: 1, default_pool_size: 3 }, tidepool: fast })
  const cs = await Promise.all([tp.connect(t), tp.connect(t), tp.connect(t)])
  await Promise.all(cs.map((c) => c.query('SELECT pg_sleep(0.2)')))
  const total = () => { const k = tp.poolCounts('app', pgi.user); return k.sv_idle + k.sv_used + k.sv_active + k.sv_login + k.sv_tested }
  assert.ok(total() >= 2)
  await waitFor(() => total() === 1, { timeoutMs: 8_000, what: 'idle servers closed down to min_pool_size' })
  assert.ok(tp.logs.some((l) => l.includes('server idle timeout')))
})

test('server_lifetime retires servers once they are released', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { server_lifetime: 1, default_pool_size: 1 }, tidepool: fast })
  const c = await tp.connect(t)
  const p1 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p
  await new Promise((r) => setTimeout(r, 1500))
  await waitFor(() => tp.logs.some((l) => l.includes('server lifetime over') || l.includes('server_lifetime')), { timeoutMs: 5_000, what: 'lifetime close' })
  const p2 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p
  assert.notEqual(p1, p2)
})

test('server_connect_timeout and server_login_retry: a dead server makes clients wait, then fail with query_wait_timeout', { timeout: 30_000 }, async (t) => {
  const port = await silentServer(t)
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${port} dbname=app user=x password=y` },
    settings: { server_connect_timeout: 1, server_login_retry: 1, query_wait_timeout: 3, client_login_timeout: 2 },
    userlist: { x: 'y' },
    tidepool: fast,
  })
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'x' })
  await assert.rejects(c.connect(), (e: any) => e.message === 'client_login_timeout (server down)')
  assert.ok(tp.logs.some((l) => l.includes('connect timeout')))
})

test('query_timeout and query_wait_timeout also end a wait for the pool\'s first server login', { timeout: 30_000 }, async (t) => {
  const port = await silentServer(t)
  const slow = { server_connect_timeout: 60, client_login_timeout: 60, server_tls_sslmode: 'disable', auth_type: 'md5' }
  for (const [setting, message] of [['query_timeout', 'query_timeout'], ['query_wait_timeout', 'query_wait_timeout']] as const) {
    const tp = await startTidepool(t, pgi, {
      databases: { app: `host=127.0.0.1 port=${port} dbname=app user=x password=y` },
      settings: { ...slow, query_wait_timeout: 0, [setting]: 1 },
      userlist: { dora: 'dora-pw' },
      tidepool: fast,
    })
    const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'dora', password: 'dora-pw' })
    c.on('error', () => {})
    const started = Date.now()
    const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${setting}: no answer after 10 s`)), 10_000).unref())
    await assert.rejects(Promise.race([c.connect(), late]), (e: any) => e.code === '08P01' && e.message === message)
    assert.ok(Date.now() - started >= 900, `${setting}: not before the timeout`)
  }
})

test('a server login error reaches the client that is logging in', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=app_scram password=wrong` }, userlist: { whoever: 'x' } })
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'whoever' })
  await assert.rejects(c.connect(), (e: any) => e.code === '28P01')
  const d = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'whoever' })
  await assert.rejects(d.connect(), (e: any) => /server login has been failing/.test(e.message))
})
