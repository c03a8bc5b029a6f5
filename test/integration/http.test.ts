// The HTTP endpoints a load balancer, keepalived or Prometheus uses: /health, /ready flipping
// during PAUSE, /metrics parsed by a Prometheus text-format parser, and bad requests.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import { createRequire } from 'node:module'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { freePort } from '../harness/ports.ts'

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Array<{ name: string; type: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method })
  return { status: r.status, body: await r.text() }
}

test('/health, /ready during PAUSE, and /metrics with pool and traffic figures', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { http_listen_port: httpPort } })
  assert.deepEqual(await get(httpPort, '/health'), { status: 200, body: 'ok\n' })
  assert.equal((await get(httpPort, '/ready')).status, 200)
  const app = await tp.connect(t)
  for (let i = 0; i < 3; i++) await app.query('SELECT 1')
  const admin = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
  admin.on('error', () => {})
  await admin.connect()
  t.after(() => admin.end().catch(() => {}))
  await admin.query('PAUSE')
  const paused = await get(httpPort, '/ready')
  assert.deepEqual(paused, { status: 503, body: 'paused\n' })
  await admin.query('RESUME')
  assert.equal((await get(httpPort, '/ready')).status, 200)

  const m = await get(httpPort, '/metrics')
  assert.equal(m.status, 200)
  const families = parsePrometheus(m.body)
  const byName = new Map(families.map((f) => [f.name, f]))
  const xacts = byName.get('tidepool_stats_sql_transactions_pooled_total')
  assert.equal(xacts?.type, 'COUNTER')
  assert.equal(Number(xacts?.metrics.find((x) => x.labels?.database === 'app')?.value), 3)
  await assert.rejects(app.query('SELECT 1/0'))
  await assert.rejects(app.query('SELEC broken'))
  const m2 = parsePrometheus((await get(httpPort, '/metrics')).body)
  const errors = m2.find((f) => f.name === 'tidepool_errors_total')?.metrics ?? []
  const count = (code: string) => Number(errors.find((x) => x.labels?.database === 'app' && x.labels?.source === 'server' && x.labels?.sqlstate === code)?.value ?? 0)
  assert.equal(count('22012'), 1, 'division_by_zero counted')
  assert.equal(count('42601'), 1, 'syntax_error counted')
  // The parser keeps a histogram's type and buckets but drops labels and _sum/_count of labelled
  // series, so the values are read from the text itself.
  for (const name of ['tidepool_query_duration_seconds', 'tidepool_transaction_duration_seconds', 'tidepool_client_wait_duration_seconds']) {
    assert.equal(byName.get(name)?.type, 'HISTOGRAM', name)
    const inf = new RegExp(`^${name}_bucket\\{database="app",le="\\+Inf"\\} (\\d+)$`, 'm').exec(m.body)?.[1]
    const count = new RegExp(`^${name}_count\\{database="app"\\} (\\d+)$`, 'm').exec(m.body)?.[1]
    assert.ok(inf !== undefined && inf === count, `${name}: +Inf bucket (${inf}) equals count (${count})`)
  }
  assert.match(m.body, /^tidepool_query_duration_seconds_count\{database="app"\} 3$/m, 'three queries observed')
  assert.match(m.body, /^tidepool_transaction_duration_seconds_count\{database="app"\} 3$/m, 'three transactions observed')
  const active = byName.get('tidepool_pools_client_active_connections')
  assert.equal(Number(active?.metrics.find((x) => x.labels?.database === 'app' && x.labels?.user === pgi.user)?.value), 1)
  for (const f of families) {
    assert.match(f.name, /^(tidepool|process|nodejs)_[a-z_]+$/, 'names in snake case with a prefix')
    if (f.type === 'COUNTER') assert.match(f.name, /_total$/, `${f.name}: counters end in _total`)
  }
})

test('bad HTTP requests: unknown path 404, POST 405, garbage closes cleanly', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort } })
  assert.equal((await get(httpPort, '/nope')).status, 404)
  assert.equal((await get(httpPort, '/metrics', 'POST')).status, 405)
  const sock = net.connect({ host: '127.0.0.1', port: httpPort })
  sock.on('error', () => {})
  await new Promise<void>((r) => sock.once('connect', () => r()))
  let got = ''
  sock.on('data', (d) => { got += String(d) })
  sock.write('\u0000\u0001garbage that is not HTTP\r\n\r\n')
  await new Promise<void>((r) => sock.once('close', () => r()))
  assert.match(got, /^HTTP\/1\.1 400/, 'a 400 and a close')
  assert.equal((await get(httpPort, '/health')).status, 200, 'the endpoint still answers')
  const c = await tp.connect(t)
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
})

async function post(port: number, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers, body })
  return { status: r.status, json: await r.json() }
}

test('/api/*.json shows what SHOW shows; POST actions need the bearer token', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort, http_token: 's3cret-token' } })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  // With a token set, reads need it too.
  assert.equal((await get(httpPort, '/api/pools.json')).status, 401)
  const read = { headers: { Authorization: 'Bearer s3cret-token' } }
  const pools = await fetch(`http://127.0.0.1:${httpPort}/api/pools.json`, read).then((r) => r.json()) as any[]
  assert.ok(pools.some((p: any) => p.database === 'app' && p.user === pgi.user && p.cl_active === 1))
  const stats = await fetch(`http://127.0.0.1:${httpPort}/api/stats.json`, read).then((r) => r.json()) as any[]
  assert.equal(stats.find((s: any) => s.database === 'app').total_xact_count, 1)
  assert.equal((await fetch(`http://127.0.0.1:${httpPort}/api/nope.json`, read)).status, 404)

  assert.equal((await post(httpPort, '/api/pause')).status, 401, 'no token')
  assert.equal((await post(httpPort, '/api/pause', { Authorization: 'Bearer wrong' })).status, 401, 'wrong token')
  assert.equal((await post(httpPort, '/api/pause', { Authorization: 'Bearer s3cret-token' }, 'x'.repeat(5000))).status, 413, 'a body is refused')
  const auth = { Authorization: 'Bearer s3cret-token' }
  assert.deepEqual(await post(httpPort, '/api/pause', auth), { status: 200, json: { ok: true } })
  assert.equal((await get(httpPort, '/ready')).status, 503)
  assert.deepEqual(await post(httpPort, '/api/pause', auth), { status: 409, json: { error: 'already suspended/paused' } })
  assert.equal((await post(httpPort, '/api/resume', auth)).status, 200)
  assert.equal((await get(httpPort, '/ready')).status, 200)
  assert.deepEqual(await post(httpPort, '/api/reconnect?db=nosuch', auth), { status: 409, json: { error: 'no such database: nosuch' } })
  assert.equal((await post(httpPort, '/api/reload', auth)).status, 200)
  assert.equal((await app.query('SELECT 2 AS two')).rows[0].two, 2)
})

test('with http_token empty, HTTP actions are off', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  await startTidepool(t, pgi, { tidepool: { http_listen_port: httpPort } })
  assert.equal((await post(httpPort, '/api/pause', { Authorization: 'Bearer ' })).status, 403)
  assert.equal((await get(httpPort, '/ready')).status, 200, 'nothing was paused')
})

test('/ready says "no usable backend" while every server login fails', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const dead = await freePort()
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${dead} dbname=app user=x password=y` },
    settings: { server_login_retry: 5, query_wait_timeout: 1, client_login_timeout: 2 },
    userlist: { x: 'y' },
    tidepool: { http_listen_port: httpPort, janitor_interval_ms: 100 },
  })
  assert.equal((await get(httpPort, '/ready')).status, 200, 'nothing tried yet')
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'x', password: 'y' })
  c.on('error', () => {})
  const attempt = c.connect().catch(() => {})
  let r = await get(httpPort, '/ready')
  for (let i = 0; i < 50 && r.status === 200; i++) {
    await new Promise((res) => setTimeout(res, 50))
    r = await get(httpPort, '/ready')
  }
  assert.deepEqual(r, { status: 503, body: 'no usable backend\n' })
  await attempt
})
