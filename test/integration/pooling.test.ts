// Pooling modes as an operator sees them: many clients share few servers in transaction mode,
// session mode keeps a server per client, statement mode refuses transaction blocks, and tracked
// parameters never leak from one client to another.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import postgres from 'postgres'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('transaction mode: 20 clients share a pool of 2 servers and all queries succeed', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const clients = await Promise.all(Array.from({ length: 20 }, () => tp.connect(t)))
  const results = await Promise.all(clients.map(async (c, i) => {
    let sum = 0
    for (let k = 0; k < 10; k++) {
      await c.query('BEGIN')
      const r = await c.query('SELECT $1::int + $2::int AS v', [i, k])
      await c.query('COMMIT')
      sum += r.rows[0].v
    }
    return sum
  }))
  results.forEach((sum, i) => assert.equal(sum, 10 * i + 45))
  const serverPids = await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'`)
  assert.ok(serverPids[0].n <= 2, `at most 2 server connections, saw ${serverPids[0].n}`)
  const counts = tp.poolCounts('app', pgi.user)
  assert.equal(counts.sv_active, 0, 'every server is back in the pool')
  assert.equal(counts.cl_waiting, 0)
})

test('transaction mode: a client in a transaction keeps its server until COMMIT', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const a = await tp.connect(t)
  const b = await tp.connect(t)
  await a.query('BEGIN')
  const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p
  const pending = b.query('SELECT pg_backend_pid() AS p')
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'b to wait for the only server' })
  assert.equal((await a.query('SELECT pg_backend_pid() AS p')).rows[0].p, pidA, 'same server inside the transaction')
  await a.query('COMMIT')
  assert.equal((await pending).rows[0].p, pidA, 'b gets the server after COMMIT')
})

test('session mode: each client keeps one server for its whole session', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'session', default_pool_size: 5 } })
  const a = await tp.connect(t)
  const b = await tp.connect(t)
  const pa1 = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p
  const pb1 = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p
  const pa2 = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p
  assert.equal(pa1, pa2)
  assert.notEqual(pa1, pb1)
  await a.query(`SET statement_timeout = '12345'`)
  await a.end()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 1, { timeoutMs: 5_000, what: "a's server to be released" })
  // The next client reuses a's server after server_reset_query (DISCARD ALL): no leaked SET.
  const c = await tp.connect(t)
  const r = await c.query(`SELECT pg_backend_pid() AS p, current_setting('statement_timeout') AS st`)
  assert.equal(r.rows[0].p, pa1)
  assert.equal(r.rows[0].st, '0')
})

test('statement mode: a transaction block is refused with PgBouncer\'s error', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'statement' } })
  const c = await tp.connect(t)
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
  await assert.rejects(c.query('BEGIN'), (e: any) => e.code === '08P01' && e.message === 'transaction blocks not allowed in statement pooling mode')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the server to be closed' })
  const other = await tp.connect(t)
  const r = await other.query(`SELECT now() = statement_timestamp() AS autocommit`)
  assert.equal(r.rows[0].autocommit, true, 'the next client does not inherit an open transaction')
})

test('tracked parameters follow each client across servers and never leak', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const zones = ['UTC', 'Europe/Paris', 'Asia/Tokyo', 'America/New_York', 'Australia/Sydney', 'Africa/Cairo']
  const clients = await Promise.all(zones.map(() => tp.connect(t)))
  await Promise.all(clients.map((c, i) => c.query(`SET TimeZone = '${zones[i]}'`)))
  await Promise.all(clients.map((c, i) => c.query(`SET application_name = 'client-${i}'`)))
  for (let round = 0; round < 5; round++) {
    const rows = await Promise.all(clients.map((c) => c.query(`SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app`)))
    rows.forEach((r, i) => {
      assert.equal(r.rows[0].tz, zones[i], `round ${round} client ${i} TimeZone`)
      assert.equal(r.rows[0].app, `client-${i}`, `round ${round} client ${i} application_name`)
    })
  }
  // A client that never set TimeZone sees the server default, not another client's value.
  const fresh = await tp.connect(t)
  const def = await pgi.query(`SELECT setting FROM pg_settings WHERE name = 'TimeZone'`)
  assert.equal((await fresh.query(`SELECT current_setting('TimeZone') AS tz`)).rows[0].tz, def[0].setting)
})

test('application_name from the startup packet reaches the server', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await tp.connect(t, { application_name: 'billing-worker' })
  const r = await c.query(`SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`)
  assert.equal(r.rows[0].application_name, 'billing-worker')
})

test('postgres.js with prepared statements off works in transaction mode', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const sql = postgres({ host: '127.0.0.1', port: tp.port, database: 'app', username: pgi.user, password: pgi.password, prepare: false, max: 5 })
  t.after(() => sql.end({ timeout: 1 }))
  const rows = await Promise.all(Array.from({ length: 30 }, (_, i) => sql`SELECT ${i}::int AS i`))
  rows.forEach((r, i) => assert.equal(r[0].i, i))
  const tx = await sql.begin(async (s) => {
    await s`CREATE TEMP TABLE IF NOT EXISTS tx_probe (x int) ON COMMIT DROP`
    await s`INSERT INTO tx_probe VALUES (1), (2)`
    return s`SELECT sum(x)::int AS total FROM tx_probe`
  })
  assert.equal(tx[0].total, 3)
})

test('unknown database gets PgBouncer\'s error', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'nope', user: pgi.user, password: pgi.password })
  await assert.rejects(c.connect(), (e: any) => e.code === '3D000' && e.message === 'no such database: nope')
})

test('the * entry serves databases that are not listed', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { databases: { '*': `host=127.0.0.1 port=${pgi.port} user=${pgi.user} password=${pgi.password}` } })
  const c = await tp.connect(t, { database: 'app' })
  assert.equal((await c.query('SELECT current_database() AS d')).rows[0].d, 'app')
  const d = await tp.connect(t, { database: 'postgres' })
  assert.equal((await d.query('SELECT current_database() AS d')).rows[0].d, 'postgres')
})
