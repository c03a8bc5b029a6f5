// A cancel request stops only the query of the client whose key it carries (issue 16, item 3).
// A fault proxy between tidepool and PostgreSQL holds the cancel connection on its way, as a slow
// network or a busy postmaster would, while client A's query ends by itself and client B asks for
// the one server: B must not be the one the late cancel stops. tidepool holds the server back
// (PgBouncer's being_canceled) until PostgreSQL has closed the cancel connection, and retires it
// when that never happens in time.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { startFaultProxy, type FaultProxy } from '../harness/fault-proxy.ts'
import { waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

async function behindProxy(t: TestContext, settings: Record<string, string | number>): Promise<{ tp: TestTidepool; proxy: FaultProxy }> {
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: pgi.port })
  t.after(() => proxy.close())
  const tp = await startTidepool(t, pgi, {
    settings: { default_pool_size: 1, admin_users: pgi.user, ...settings },
    databases: { app: `host=127.0.0.1 port=${proxy.port} dbname=app user=${pgi.user} password=${pgi.password}` },
  })
  return { tp, proxy }
}

/** What libpq does for PQcancel: the client's key on a connection of its own to the pooler. */
async function cancelThrough(port: number, c: pg.Client): Promise<void> {
  const key = c as unknown as { processID: number; secretKey: number }
  const s = net.connect({ host: '127.0.0.1', port })
  s.on('error', () => {})
  await new Promise<void>((resolve) => s.once('connect', () => resolve()))
  s.end(build.cancelRequest(key.processID, key.secretKey))
}

async function isRunning(sql: string): Promise<boolean> {
  const r = await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1 AND state = 'active'`, [sql])
  return r[0].n === 1
}

/**
 * Client `a` runs `sql` while the proxy holds new connections; a cancel for it goes out and is held
 * on its way (the proxy then has `links` connections). Resolves with A's result: its query ended by
 * itself, the cancel never arrived.
 */
async function runWithHeldCancel(tp: TestTidepool, proxy: FaultProxy, a: pg.Client, sql: string, links: number): Promise<pg.QueryResult> {
  proxy.set({ holdNew: true })
  const done = settle(a.query(sql))
  await waitFor(() => isRunning(sql), { timeoutMs: 10_000, what: 'A\'s query running' })
  await cancelThrough(tp.port, a)
  await waitFor(() => proxy.connections() === links, { timeoutMs: 10_000, what: 'the cancel connection open and held' })
  const r = await done
  assert.ok(!(r instanceof Error), `A's query ended by itself, the cancel never arrived: ${String(r)}`)
  return r
}

/** Settles to the result or the error, so a rejection is asserted on rather than left unhandled. */
function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.then((r) => r, (e: unknown) => e as Error)
}

test('a cancel held on its way for client A never stops client B\'s query on the same server', { timeout: 60_000 }, async (t) => {
  const { tp, proxy } = await behindProxy(t, {})
  const a = await tp.connect(t)
  const b = await tp.connect(t)
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  await a.query('SELECT 1') // the pool's one server is logged in before the hold
  await runWithHeldCancel(tp, proxy, a, 'SELECT pg_sleep(1) AS a_slept', 2)

  const bSql = 'SELECT pg_sleep(2) AS b_slept'
  const bDone = settle(b.query(bSql))
  // B either runs on the server A left (and the late cancel would stop it) or waits for it.
  await waitFor(async () => tp.poolCounts('app', pgi.user).cl_waiting === 1 || await isRunning(bSql), { timeoutMs: 10_000, what: 'B running or waiting' })
  const servers = (await admin.query('SHOW SERVERS')).rows.filter((r) => r.database === 'app')
  const pools = (await admin.query('SHOW POOLS')).rows.filter((r) => r.database === 'app')
  proxy.set({})
  const bResult = await bDone
  assert.ok(!(bResult instanceof Error), `B's query was stopped by A's cancel: ${String(bResult)}`)

  assert.deepEqual(servers.map((r) => r.state), ['being_canceled'], 'SHOW SERVERS names the held server as PgBouncer does')
  assert.equal(Number(pools[0].sv_being_canceled), 1)
  assert.equal(Number(pools[0].cl_waiting), 1, 'B waited for the server')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_idle === 1, { timeoutMs: 10_000, what: 'the server back in the pool' })
  assert.equal(tp.poolCounts('app', pgi.user).sv_being_canceled, 0)
  assert.equal((await a.query('SELECT 3 AS three')).rows[0].three, 3, 'A goes on')
})

test('a server whose cancel was never confirmed is closed, not handed to the next client', { timeout: 60_000 }, async (t) => {
  // cancel_wait_timeout bounds a cancel's connection: after it the cancel's fate is unknown.
  const { tp, proxy } = await behindProxy(t, { cancel_wait_timeout: 1, default_pool_size: 2 })
  const a = await tp.connect(t)
  const b = await tp.connect(t)
  // Two servers logged in before the hold (which would hold a new one's login too).
  await a.query('BEGIN')
  await b.query('BEGIN')
  await b.query('COMMIT')
  await a.query('COMMIT')
  const aResult = await runWithHeldCancel(tp, proxy, a, 'SELECT pg_sleep(0.3), pg_backend_pid() AS pid', 3)
  // Released while its cancel is held, the server waits; once the cancel times out it would be the
  // idle server a LIFO pool hands out first.
  assert.equal(tp.poolCounts('app', pgi.user).sv_being_canceled, 1, 'held back while its cancel is on the way')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_being_canceled === 0, { timeoutMs: 10_000, what: 'the cancel connection to time out' })

  const bSql = 'SELECT pg_sleep(1), pg_backend_pid() AS pid'
  const bDone = settle(b.query(bSql))
  await waitFor(() => isRunning(bSql), { timeoutMs: 10_000, what: 'B running' })
  proxy.set({}) // the held cancel now reaches PostgreSQL, with the key of A's server
  const bResult = await bDone
  assert.ok(!(bResult instanceof Error), `B's query was stopped by A's cancel: ${String(bResult)}`)
  assert.notEqual(bResult.rows[0].pid, aResult.rows[0].pid, 'B runs on another server')
  assert.ok(tp.logs.some((l) => l.includes('closing because: a cancel request for it was not confirmed')), 'the log names why A\'s server closed')
  assert.equal(tp.poolCounts('app', pgi.user).sv_idle + tp.poolCounts('app', pgi.user).sv_active, 1, 'A\'s server is gone')
})
