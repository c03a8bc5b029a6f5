// Several hosts per database, as an operator meets them: load spread by least connections, a dead
// host left out, writes held while two hosts claim to be primary, and a Patroni leader change
// followed without a client error. Two independent PostgreSQL servers stand in for a cluster
// (both answer pg_is_in_recovery() = false); a small HTTP server plays Patroni's REST API.
// Streaming replication and a real Patroni are in test/ha.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import pg from 'pg'
import { startPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { runCommand, runPsql, waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { fakePatroni } from '../harness/fake-patroni.ts'
import { createRequire } from 'node:module'

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Array<{ name: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>

let a: PgInstance
let b: PgInstance
before(async () => {
  ;[a, b] = await Promise.all([startPostgres(), startPostgres()])
})
after(async () => {
  await Promise.all([a?.stop(), b?.stop()])
})

const fastChecks = { janitor_interval_ms: 100, health_check_interval_ms: 100, health_check_timeout_ms: 1000, health_check_rise: 1, health_check_fall: 1, host_ban_ms: 2000 }

function entry(hosts: Array<{ port: number }>, extra = ''): string {
  return `host=${hosts.map(() => '127.0.0.1').join(',')} port=${hosts.map((h) => h.port).join(',')} dbname=app user=${a.user} password=${a.password} ${extra}`
}

/** The port of the PostgreSQL that served this query. */
async function servedBy(c: pg.Client): Promise<number> {
  return (await c.query('SELECT inet_server_port() AS p')).rows[0].p
}

test('target_session_attrs=any spreads server connections over both hosts by least connections', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, a, { settings: { default_pool_size: 4 }, databases: { app: entry([a, b]) }, tidepool: fastChecks })
  const clients = await Promise.all([0, 1, 2, 3].map(() => tp.connect(t)))
  for (const c of clients) await c.query('BEGIN')
  const ports = await Promise.all(clients.map(servedBy))
  for (const c of clients) await c.query('COMMIT')
  assert.equal(ports.filter((p) => p === a.port).length, 2, `ports ${ports}`)
  assert.equal(ports.filter((p) => p === b.port).length, 2, `ports ${ports}`)
})

test('a host that refuses connections is banned and the other one serves, without a client error', { timeout: 60_000 }, async (t) => {
  const deadPort = await freePort()
  const tp = await startTidepool(t, a, { settings: { default_pool_size: 4 }, databases: { app: entry([{ port: deadPort }, a]) }, tidepool: { ...fastChecks, health_check_interval_ms: 60_000 } })
  // Checks are far apart: the first server connection may well try the dead host (passive check).
  const clients = await Promise.all([0, 1, 2].map(() => tp.connect(t)))
  for (const c of clients) assert.equal(await servedBy(c), a.port)
  await waitFor(() => tp.logs.some((l) => l.includes(`host 127.0.0.1:${deadPort}`)), { timeoutMs: 5_000, what: 'the dead host to be logged' })
})

test('two hosts both primary with read-write: no write goes anywhere, the client waits until its timeout', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, a, {
    // query_wait_timeout also bounds a login's wait (PgBouncer's order puts it first): keep it longer.
    settings: { query_wait_timeout: 5, client_login_timeout: 2 },
    databases: { app: entry([a, b], 'target_session_attrs=read-write') },
    tidepool: fastChecks,
  })
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: a.user, password: a.password })
  c.on('error', () => {})
  t.after(() => c.end().catch(() => {}))
  // The pool's first login also needs a host: the client waits in its login.
  const started = Date.now()
  await assert.rejects(c.connect().then(() => c.query('SELECT 1')), (e: any) => e.message === 'client_login_timeout (server down)')
  assert.ok(Date.now() - started >= 1900, 'it waited for a primary rather than failing at once')
  assert.equal((await a.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND application_name <> 'tidepool health check'`))[0].n, 0)
  assert.equal((await b.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND application_name <> 'tidepool health check'`))[0].n, 0)
  assert.ok(tp.logs.some((l) => l.includes('several primaries (split brain)')), 'the reason is logged')
})

test('with Patroni as a second role source, writes follow the leader; a leader change moves new transactions with no client error', { timeout: 60_000 }, async (t) => {
  let leader: 'a' | 'b' = 'a'
  const pa = await fakePatroni(() => leader === 'a')
  const pb = await fakePatroni(() => leader === 'b')
  t.after(() => Promise.all([pa.close(), pb.close()]))
  const tp = await startTidepool(t, a, {
    settings: { default_pool_size: 2 },
    databases: { app: entry([a, b], `target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`) },
    tidepool: fastChecks,
  })
  const c = await tp.connect(t)
  const other = await tp.connect(t)
  assert.equal(await servedBy(c), a.port)
  await other.query('BEGIN')
  assert.equal(await servedBy(other), a.port)

  leader = 'b'
  // A new transaction runs on b once a check saw the change; the client sees no error meanwhile.
  await waitFor(async () => (await servedBy(c)) === b.port, { timeoutMs: 10_000, intervalMs: 50, what: 'transactions to move to the new leader' })
  // The transaction in flight finished where it began, and its server left a afterwards.
  assert.equal(await servedBy(other), a.port)
  await other.query('COMMIT')
  assert.equal(await servedBy(other), b.port)
  await waitFor(async () => (await a.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND application_name <> 'tidepool health check'`))[0].n === 0,
    { timeoutMs: 5_000, what: 'no pooled server left on the old leader' })
  assert.ok(tp.logs.some((l) => l.includes(`host 127.0.0.1:${a.port}: role unknown`)), tp.logs.join('\n'))
})

test('a host that dies is left out while the other serves; at most the transaction on it fails', { timeout: 60_000 }, async (t) => {
  const c1 = await startPostgres()
  let stopped = false
  t.after(() => (stopped ? undefined : c1.stop()))
  const tp = await startTidepool(t, a, { settings: { default_pool_size: 2 }, databases: { app: entry([c1, a]) }, tidepool: fastChecks })
  const client = await tp.connect(t)
  await client.query('SELECT 1')
  await c1.stop()
  stopped = true
  // Every transaction from now on runs on a; at most the one that was on c1 when it died may fail.
  let failures = 0
  for (let i = 0; i < 20; i++) {
    try {
      assert.equal(await servedBy(client), a.port)
    } catch (err) {
      failures++
      if (failures > 1) throw err
    }
  }
})

test('SWITCHOVER through Patroni under load: held transactions move to the new primary with no client error', { timeout: 60_000 }, async (t) => {
  let leader: 'a' | 'b' = 'a'
  const requests: unknown[] = []
  const onSwitchover = async (body: { leader: string; candidate?: string }) => {
    requests.push(body)
    if (body.leader !== 'pg-a' || body.candidate !== 'pg-b') return 412
    await new Promise((r) => setTimeout(r, 300)) // Patroni demotes, then promotes
    leader = 'b'
    return 200
  }
  const pa = await fakePatroni(() => leader === 'a', 'pg-a', onSwitchover)
  const pb = await fakePatroni(() => leader === 'b', 'pg-b', onSwitchover)
  t.after(() => Promise.all([pa.close(), pb.close()]))
  const httpPort = await freePort()
  const tp = await startTidepool(t, a, {
    settings: { default_pool_size: 3 },
    databases: { app: entry([a, b], `target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`) },
    tidepool: { ...fastChecks, http_listen_port: httpPort },
  })
  const clients = await Promise.all([0, 1, 2, 3, 4, 5].map(() => tp.connect(t)))
  let running = true
  let errors = 0
  let maxMs = 0
  const served = new Set<number>()
  const loops = clients.map(async (c) => {
    while (running) {
      const t0 = Date.now()
      try {
        await c.query('BEGIN')
        served.add(await servedBy(c))
        await c.query('SELECT pg_sleep(0.01)')
        await c.query('COMMIT')
      } catch {
        errors++
      }
      maxMs = Math.max(maxMs, Date.now() - t0)
    }
  })
  await new Promise((r) => setTimeout(r, 300))
  const report = await tp.rt.switchover('app', 'pg-b', 10_000)
  await new Promise((r) => setTimeout(r, 300))
  running = false
  await Promise.all(loops)
  assert.equal(report.ok, true, report.error ?? '')
  assert.equal(report.to, `127.0.0.1:${b.port}`)
  assert.equal(report.from, `127.0.0.1:${a.port}`)
  assert.deepEqual(report.phases.map((p) => p.name), ['hold', 'drain', 'promote', 'retarget', 'resume'])
  assert.deepEqual(requests, [{ leader: 'pg-a', candidate: 'pg-b' }])
  assert.equal(errors, 0)
  assert.ok(served.has(a.port) && served.has(b.port))
  assert.ok(maxMs < 3_000, `longest transaction ${maxMs} ms`)
  for (const c of clients) assert.equal(await servedBy(c), b.port)
  const metrics = parsePrometheus(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text())
  const sample = (name: string, labels: Record<string, string>) => metrics.find((f) => f.name === name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value
  assert.equal(sample('tidepool_host_role', { host: `127.0.0.1:${b.port}`, role: 'primary' }), '1')
  assert.equal(sample('tidepool_host_up', { host: `127.0.0.1:${a.port}` }), '1')
  assert.equal(sample('tidepool_switchovers_total', { database: 'app', result: 'ok' }), '1')
  assert.ok(Number(sample('tidepool_switchover_phase_duration_seconds', { database: 'app', phase: 'promote' })) > 0.2)
  t.diagnostic(`switchover ${report.totalMs} ms, longest client transaction ${maxMs} ms, phases ${report.phases.map((p) => `${p.name}=${p.ms}`).join(' ')}`)
})

test('SWITCHOVER that cannot finish releases traffic at its deadline and says why', { timeout: 60_000 }, async (t) => {
  const pa = await fakePatroni(() => true, 'pg-a', async () => 503)
  const pb = await fakePatroni(() => false, 'pg-b', async () => 503)
  t.after(() => Promise.all([pa.close(), pb.close()]))
  const tp = await startTidepool(t, a, {
    databases: { app: entry([a, b], `target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`) },
    tidepool: fastChecks,
  })
  const c = await tp.connect(t)
  await c.query('SELECT 1')
  // The current primary as the target is refused up front; an unknown name too.
  const refused = await tp.rt.switchover('app', 'pg-a', 2_000)
  assert.equal(refused.ok, false)
  assert.match(refused.error ?? '', /is already the primary/)
  const unknown = await tp.rt.switchover('app', 'nosuch', 2_000)
  assert.match(unknown.error ?? '', /no host "nosuch"/)
  // Without a target, Patroni is asked and refuses: traffic is released and the client goes on.
  const failed = await tp.rt.switchover('app', null, 2_000)
  assert.equal(failed.ok, false)
  assert.match(failed.error ?? '', /Patroni refused the switchover: HTTP 503/)
  assert.equal(await servedBy(c), a.port)
  await assert.rejects(tp.rt.switchover('postgres', null, 1_000), /no several hosts/)
})

test('backend=cockroachdb: a draining node (health 503) leaves rotation before it stops, and comes back when ready', { timeout: 60_000 }, async (t) => {
  let isDraining = false
  const health = (isReady: () => boolean) => new Promise<{ url: string; close(): Promise<void> }>((resolve) => {
    const srv = http.createServer((req, res) => {
      res.statusCode = req.url === '/health?ready=1' && isReady() ? 200 : 503
      res.end()
    })
    srv.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/health?ready=1`,
      close: () => new Promise<void>((r) => {
        srv.closeAllConnections()
        srv.close(() => r())
      }),
    }))
  })
  const ha = await health(() => !isDraining)
  const hb = await health(() => true)
  t.after(() => Promise.all([ha.close(), hb.close()]))
  // Two PostgreSQL servers stand in for CockroachDB nodes: all equal, all take writes.
  const tp = await startTidepool(t, a, {
    settings: { default_pool_size: 4, server_lifetime: 1 },
    databases: { app: entry([a, b], `backend=cockroachdb target_session_attrs=read-write health_urls=${ha.url},${hb.url}`) },
    tidepool: fastChecks,
  })
  const clients = await Promise.all([0, 1, 2, 3].map(() => tp.connect(t)))
  const spread = async () => {
    for (const c of clients) await c.query('BEGIN')
    const ports = await Promise.all(clients.map(servedBy))
    for (const c of clients) await c.query('COMMIT')
    return ports
  }
  await waitFor(async () => new Set(await spread()).size === 2, { timeoutMs: 5_000, what: 'both nodes in use' })
  isDraining = true
  await waitFor(async () => (await spread()).every((p) => p === b.port), { timeoutMs: 5_000, intervalMs: 50, what: 'the draining node to leave rotation' })
  isDraining = false
  // server_lifetime retires connections, so new ones spread over the returning node again.
  await waitFor(async () => new Set(await spread()).size === 2, { timeoutMs: 10_000, intervalMs: 100, what: 'the node to come back into rotation' })
})

test('SWITCHOVER from psql, the tidepool switchover CLI and POST /api/switchover; SHOW HOSTS and SHOW SWITCHOVER', { timeout: 60_000 }, async (t) => {
  let leader: 'a' | 'b' = 'a'
  const flip = async (body: { leader: string; candidate?: string }) => {
    leader = body.candidate === 'pg-b' ? 'b' : 'a'
    return 200
  }
  const pa = await fakePatroni(() => leader === 'a', 'pg-a', flip)
  const pb = await fakePatroni(() => leader === 'b', 'pg-b', flip)
  t.after(() => Promise.all([pa.close(), pb.close()]))
  const httpPort = await freePort()
  const tp = await startTidepool(t, a, {
    settings: { admin_users: a.user },
    databases: { app: entry([a, b], `target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`) },
    tidepool: { ...fastChecks, http_listen_port: httpPort, http_token: 'sekret' },
  })
  const c = await tp.connect(t)
  assert.equal(await servedBy(c), a.port)

  const hosts = await runPsql({ port: tp.port, user: a.user, password: a.password, db: 'pgbouncer', sql: 'SHOW HOSTS' })
  assert.match(hosts.stdout, new RegExp(`127\\.0\\.0\\.1\\|${a.port}\\|postgresql\\|primary\\|up\\|yes\\|`))

  const viaPsql = await runPsql({ port: tp.port, user: a.user, password: a.password, db: 'pgbouncer', sql: `SWITCHOVER app TO 'pg-b' TIMEOUT 10` })
  assert.equal(viaPsql.code, 0, viaPsql.stderr)
  assert.match(viaPsql.stdout, /^promote\|\d+\|through Patroni$/m)
  assert.equal(await servedBy(c), b.port)

  const cli = await runCommand(process.execPath, ['--import', 'tsx', 'src/main.ts', 'switchover', 'app', '--to', `127.0.0.1:${a.port}`, '--timeout', '10', '-h', '127.0.0.1', '-p', String(tp.port), '-U', a.user], { ...process.env, PGPASSWORD: a.password }, 30_000)
  assert.equal(cli.code, 0, cli.stderr)
  assert.match(cli.stdout, /phase=retarget {2}ms=\d+ {2}note=new primary 127\.0\.0\.1:\d+/)
  assert.equal(await servedBy(c), a.port)

  const unauthorized = await fetch(`http://127.0.0.1:${httpPort}/api/switchover?db=app&to=pg-b`, { method: 'POST' })
  assert.equal(unauthorized.status, 401)
  const viaHttp = await fetch(`http://127.0.0.1:${httpPort}/api/switchover?db=app&to=pg-b&timeout=10`, { method: 'POST', headers: { authorization: 'Bearer sekret' } })
  const body = await viaHttp.json() as { ok: boolean; rows: Array<{ name: string }> }
  assert.equal(viaHttp.status, 200)
  assert.deepEqual(body.rows.map((p) => p.name), ['hold', 'drain', 'promote', 'retarget', 'resume'])
  assert.equal(await servedBy(c), b.port)
  const bad = await fetch(`http://127.0.0.1:${httpPort}/api/switchover?db=app&to=nosuch`, { method: 'POST', headers: { authorization: 'Bearer sekret' } })
  assert.equal(bad.status, 409)
  assert.match(((await bad.json()) as { error: string }).error, /no host "nosuch"/)

  const history = await runPsql({ port: tp.port, user: a.user, password: a.password, db: 'pgbouncer', sql: 'SHOW SWITCHOVER' })
  assert.match(history.stdout, /^app\|127\.0\.0\.1:\d+\|\|failed\|no host "nosuch"/m)
  const json = await (await fetch(`http://127.0.0.1:${httpPort}/api/hosts.json`, { headers: { authorization: 'Bearer sekret' } })).json() as Array<{ host: string; role: string }>
  assert.deepEqual(json.map((h) => h.role).sort(), ['primary', 'unknown'])
})

test('a health endpoint that never answers times out: its host leaves rotation, the other serves', { timeout: 60_000 }, async (t) => {
  const sockets = new Set<Socket>()
  const hanging = http.createServer(() => { /* never answers */ })
  hanging.on('connection', (s) => { sockets.add(s) })
  const ok = http.createServer((_req, res) => res.end())
  await Promise.all([hanging, ok].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))))
  t.after(() => {
    for (const s of sockets) s.destroy()
    hanging.close()
    ok.closeAllConnections()
    ok.close()
  })
  const url = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/health?ready=1`
  const tp = await startTidepool(t, a, {
    settings: { default_pool_size: 4 },
    databases: { app: entry([a, b], `backend=cockroachdb health_urls=${url(hanging)},${url(ok)}`) },
    tidepool: { ...fastChecks, health_check_timeout_ms: 300 },
  })
  await waitFor(() => tp.rt.backends.monitor.get('127.0.0.1', a.port)?.health(Date.now()) === 'down', { timeoutMs: 5_000, what: 'the host behind the hanging endpoint to go down' })
  assert.match(tp.rt.backends.monitor.get('127.0.0.1', a.port)?.lastError ?? '', /health endpoint: no answer within 300 ms/)
  const clients = await Promise.all([0, 1, 2, 3].map(() => tp.connect(t)))
  for (const c of clients) assert.equal(await servedBy(c), b.port)
})
