// Failures between tidepool and PostgreSQL, made by the fault proxy: a connection cut mid-result,
// a server that refuses, one that is slow, one that stalls. The affected client gets a clear
// error; the pool recovers; other clients carry on.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { startFaultProxy } from '../harness/fault-proxy.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

async function setup(t: import('node:test').TestContext, settings: Record<string, string | number> = {}) {
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: pgi.port })
  t.after(() => proxy.close())
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${proxy.port} dbname=app user=${pgi.user} password=${pgi.password}` },
    settings: { default_pool_size: 2, ...settings },
    tidepool: { janitor_interval_ms: 100 },
  })
  return { proxy, tp }
}

test('a server connection cut mid-result: that client gets an error, the pool recovers', { timeout: 30_000 }, async (t) => {
  const { proxy, tp } = await setup(t)
  const c = await tp.connect(t)
  await c.query('SELECT 1')
  proxy.set({ cutAfterBytes: 20_000 })
  await assert.rejects(c.query(`SELECT repeat('z', 100) FROM generate_series(1, 10000)`), (e: any) => /server conn crashed|Connection terminated/.test(e.message))
  proxy.set({})
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'cut server gone' })
  const d = await tp.connect(t)
  assert.equal((await d.query('SELECT 2 AS two')).rows[0].two, 2)
  assert.ok(tp.logs.some((l) => l.includes('[server.closed]')))
})

test('a refusing server: new clients wait and get in once it is back', { timeout: 30_000 }, async (t) => {
  const { proxy, tp } = await setup(t, { server_login_retry: 0.2, query_wait_timeout: 20 })
  proxy.set({ refuse: true })
  const pending = tp.connect(t)
  await waitFor(() => tp.logs.some((l) => l.includes('[server.connect_failed]')), { timeoutMs: 5_000, what: 'a failed connect' })
  proxy.set({})
  const c = await pending
  assert.equal((await c.query('SELECT 3 AS three')).rows[0].three, 3)
})

test('a slow network adds latency, not errors', { timeout: 30_000 }, async (t) => {
  const { proxy, tp } = await setup(t)
  const c = await tp.connect(t)
  proxy.set({ delayMs: 50 })
  const started = Date.now()
  for (let i = 0; i < 5; i++) assert.equal((await c.query('SELECT $1::int AS i', [i])).rows[0].i, i)
  assert.ok(Date.now() - started >= 5 * 50, 'the delay was really applied')
})

test('a stalled server trips query_timeout; the next query gets a fresh server', { timeout: 30_000 }, async (t) => {
  const { proxy, tp } = await setup(t, { query_timeout: 1 })
  const c = await tp.connect(t)
  await c.query('SELECT 1')
  proxy.set({ stall: true })
  await assert.rejects(c.query('SELECT 4'), (e: any) => e.message === 'query timeout')
  proxy.set({})
  const d = await tp.connect(t)
  assert.equal((await d.query('SELECT 5 AS five')).rows[0].five, 5)
})
