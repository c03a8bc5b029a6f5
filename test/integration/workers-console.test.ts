// One console, one set of numbers with workers: an admin connection lands on one worker but SHOW
// lists or sums every worker's rows (ids unique over them), /metrics and /api likewise; PAUSE,
// RESUME, KILL, KILL_CLIENT, RECONNECT, DISABLE/ENABLE, SET, RELOAD, SUSPEND act on every worker
// and answer once all have; a worker that stops answering fails the command, named, within 5 s.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, startPostgres, type PgInstance } from '../harness/postgres.ts'
import { fakePatroni } from '../harness/fake-patroni.ts'
import { spawnTidepool, type ChildTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { keyOwner } from '../../src/proxy/cancel.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

type KeyedClient = pg.Client & { processID: number; secretKey: number }
type Ctx = { after(fn: () => unknown): void }

async function connect(t: Ctx, port: number, database = 'app', timeoutMs = 0): Promise<KeyedClient> {
  const c = new pg.Client({ host: '127.0.0.1', port, database, user: pgi.user, password: pgi.password, connectionTimeoutMillis: timeoutMs }) as KeyedClient
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end().catch(() => {}))
  return c
}

/** Console connections until one lands on each worker. */
async function consoles(t: Ctx, port: number, workers: number): Promise<KeyedClient[]> {
  const byWorker = new Map<number, KeyedClient>()
  for (let i = 0; i < workers * 15 && byWorker.size < workers; i++) {
    const c = await connect(t, port, 'pgbouncer')
    if (!byWorker.has(keyOwner(c.processID))) byWorker.set(keyOwner(c.processID), c)
  }
  assert.equal(byWorker.size, workers, 'a console connection on every worker')
  return [...byWorker.keys()].sort().map((k) => byWorker.get(k) as KeyedClient)
}

async function rows(c: pg.Client, sql: string): Promise<Array<Record<string, unknown>>> {
  return (await c.query(sql)).rows
}

function workerPids(tp: ChildTidepool): Map<number, number> {
  const m = new Map<number, number>()
  for (const match of tp.output().matchAll(/\[(\d+)\] LOG worker (\d+) listening/g)) m.set(Number(match[2]), Number(match[1]))
  return m
}

async function start(t: Ctx, settings: Record<string, string | number> = {}, tidepool: Record<string, string | number> = {}): Promise<{ tp: ChildTidepool; port: number }> {
  const port = await freePort()
  const tp = await spawnTidepool(t as never, pgi, { port, settings: { admin_users: pgi.user, default_pool_size: 8, ...settings }, tidepool: { workers: 2, ...tidepool } })
  return { tp, port }
}

test('SHOW POOLS, CLIENTS, SERVERS, STATS and LISTS count every worker, the same from either worker\'s console', { timeout: 120_000 }, async (t) => {
  const { port } = await start(t)
  const apps: KeyedClient[] = []
  for (let i = 0; i < 40 && (apps.length < 6 || new Set(apps.map((c) => keyOwner(c.processID))).size < 2); i++) apps.push(await connect(t, port))
  const n = apps.length
  assert.deepEqual(new Set(apps.map((c) => keyOwner(c.processID))), new Set([0, 1]))
  for (const c of apps) for (let i = 0; i < 5; i++) await c.query('SELECT 1')
  // Each holds its server in an open transaction: n active servers over both workers.
  for (const c of apps) await c.query('BEGIN; SELECT 1')
  for (const admin of await consoles(t, port, 2)) {
    const pool = (await rows(admin, 'SHOW POOLS')).find((r) => r.database === 'app')
    assert.equal(pool?.cl_active, n)
    assert.equal(pool?.sv_active, n)
    const clients = (await rows(admin, 'SHOW CLIENTS')).filter((r) => r.database === 'app')
    assert.equal(clients.length, n)
    const ids = clients.map((r) => Number(r.id))
    assert.equal(new Set(ids).size, n, 'client ids unique over the workers')
    assert.deepEqual(new Set(ids.map((id) => id % 2)), new Set([0, 1]), 'rows of both workers')
    const servers = (await rows(admin, 'SHOW SERVERS')).filter((r) => r.database === 'app')
    assert.equal(servers.length, n)
    assert.equal(new Set(servers.map((r) => r.id)).size, n, 'server ids unique')
    const stats = (await rows(admin, 'SHOW STATS')).find((r) => r.database === 'app')
    assert.ok(Number(stats?.total_xact_count) >= 5 * n, `total_xact_count ${String(stats?.total_xact_count)} counts both workers' ${5 * n} transactions`)
    assert.equal(Number(stats?.total_client_login_count), n)
    const lists = Object.fromEntries((await rows(admin, 'SHOW LISTS')).map((r) => [r.list, Number(r.items)]))
    assert.ok(lists.used_clients >= n + 1, `used_clients ${lists.used_clients}: ${n} apps and this console`)
  }
  for (const c of apps) await c.query('COMMIT')
})

test('PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, SET and RELOAD reach every worker before they answer', { timeout: 120_000 }, async (t) => {
  const { tp, port } = await start(t)
  const apps: KeyedClient[] = []
  for (let i = 0; i < 4; i++) apps.push(await connect(t, port))
  for (const c of apps) await c.query('SELECT 1')
  const [admin, other] = await consoles(t, port, 2)
  await admin.query('PAUSE')
  // From the other worker's console the pooler is paused too, and queries on both workers wait.
  assert.equal((await rows(other, 'SHOW STATE')).find((r) => r.key === 'paused')?.value, 'yes')
  const held = apps.map((c) => c.query('SELECT 2 AS two'))
  await waitFor(async () => (await rows(other, 'SHOW POOLS')).find((r) => r.database === 'app')?.cl_waiting === 4, { timeoutMs: 10_000, what: '4 waiting over both workers' })
  await assert.rejects(other.query('PAUSE'), /already suspended\/paused/)
  await other.query('RESUME')
  for (const r of await Promise.all(held)) assert.equal(r.rows[0].two, 2)
  await admin.query('DISABLE app')
  for (let i = 0; i < 4; i++) await assert.rejects(connect(t, port), /database does not allow connections: app/, `attempt ${i}`)
  await other.query('ENABLE app')
  for (let i = 0; i < 4; i++) await (await connect(t, port)).query('SELECT 1')
  const pids = [...workerPids(tp).values()]
  await admin.query('SET server_lifetime = 1234')
  await waitFor(() => pids.every((p) => new RegExp(`\\[${p}\\] LOG SET server_lifetime=1234`).test(tp.output())), { timeoutMs: 5_000, what: 'SET in both workers' })
  const before = (await rows(admin, 'SHOW SERVERS')).map((r) => r.id)
  assert.ok(before.length >= 2)
  await admin.query('RECONNECT app')
  await waitFor(async () => {
    for (const c of apps) await c.query('SELECT 1')
    const now = (await rows(other, 'SHOW SERVERS')).map((r) => r.id)
    return now.every((id) => !before.includes(id))
  }, { timeoutMs: 10_000, what: 'every worker\'s old servers to go' })
  await admin.query('RELOAD')
  await waitFor(() => pids.every((p) => new RegExp(`\\[${p}\\] LOG configuration reloaded`).test(tp.output())), { timeoutMs: 5_000, what: 'RELOAD in both workers' })
})

test('KILL drops the database\'s clients on every worker; KILL_CLIENT finds a client on another worker', { timeout: 120_000 }, async (t) => {
  const { port } = await start(t)
  const [admin] = await consoles(t, port, 2)
  const apps: KeyedClient[] = []
  for (let i = 0; i < 40 && (apps.length < 4 || !apps.some((c) => keyOwner(c.processID) !== keyOwner(admin.processID))); i++) apps.push(await connect(t, port))
  const elsewhere = apps.find((c) => keyOwner(c.processID) !== keyOwner(admin.processID)) as KeyedClient
  const row = (await rows(admin, 'SHOW CLIENTS')).find((r) => r.database === 'app' && Number(r.port) === (elsewhere as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort)
  assert.ok(row !== undefined)
  await admin.query(`KILL_CLIENT ${String(row.id)}`)
  await assert.rejects(elsewhere.query('SELECT 1'))
  await assert.rejects(admin.query('KILL_CLIENT 999999'), /client 999999 not found/)
  await admin.query('KILL app')
  const results = await Promise.all(apps.filter((c) => c !== elsewhere).map((c) => c.query('SELECT 1').then(() => 'ran', () => 'killed')))
  assert.deepEqual(results, results.map(() => 'killed'))
  await admin.query('RESUME app')
  await (await connect(t, port)).query('SELECT 1')
})

test('SUSPEND holds every worker; the workers resume when the console that suspended them leaves', { timeout: 120_000 }, async (t) => {
  const { port } = await start(t)
  const apps: KeyedClient[] = []
  for (let i = 0; i < 4; i++) apps.push(await connect(t, port))
  for (const c of apps) await c.query('SELECT 1')
  const admin = await connect(t, port, 'pgbouncer')
  await admin.query('SUSPEND')
  let done = 0
  const held = apps.map((c) => c.query('SELECT 3 AS three').then((r) => { done++; return r }))
  await new Promise((r) => setTimeout(r, 1000))
  assert.equal(done, 0, 'no worker served a query while suspended')
  await admin.end()
  for (const r of await Promise.all(held)) assert.equal(r.rows[0].three, 3)
})

test('a worker that stops answering: the console says which one within 5 s; SIGCONT and all is well', { timeout: 120_000 }, async (t) => {
  const { tp, port } = await start(t)
  const pids = workerPids(tp)
  const [admin0] = await consoles(t, port, 2)
  const stopped = keyOwner(admin0.processID) === 0 ? 1 : 0
  process.kill(pids.get(stopped) as number, 'SIGSTOP')
  t.after(() => { try { process.kill(pids.get(stopped) as number, 'SIGCONT') } catch { /* gone */ } })
  const startedAt = Date.now()
  await assert.rejects(admin0.query('SHOW POOLS'), new RegExp(`worker ${stopped} \\(pid ${pids.get(stopped)}\\) did not answer within 5 s`))
  await assert.rejects(admin0.query('PAUSE'), new RegExp(`worker ${stopped} \\(pid \\d+\\) did not answer`))
  const took = Date.now() - startedAt
  assert.ok(took < 15_000, `both answered in ${took} ms`)
  process.kill(pids.get(stopped) as number, 'SIGCONT')
  // The gathering before the command failed, so nothing was paused; now every worker answers again.
  await waitFor(async () => (await rows(admin0, 'SHOW STATE')).find((r) => r.key === 'paused')?.value === 'no', { timeoutMs: 10_000, what: 'the console to answer again' })
  await admin0.query('PAUSE')
  assert.equal((await rows(admin0, 'SHOW STATE')).find((r) => r.key === 'paused')?.value, 'yes')
  await admin0.query('RESUME')
  assert.equal((await rows(admin0, 'SHOW STATE')).find((r) => r.key === 'paused')?.value, 'no')
})

test('SIGUSR1 and SIGUSR2 to the primary pause and resume every worker', { timeout: 120_000 }, async (t) => {
  const { tp, port } = await start(t)
  const apps: KeyedClient[] = []
  for (let i = 0; i < 4; i++) apps.push(await connect(t, port))
  const admin = await connect(t, port, 'pgbouncer')
  tp.proc.kill('SIGUSR1')
  await waitFor(async () => (await rows(admin, 'SHOW STATE')).find((r) => r.key === 'paused')?.value === 'yes', { timeoutMs: 10_000, what: 'paused' })
  const held = apps.map((c) => c.query('SELECT 4 AS four'))
  await waitFor(async () => (await rows(admin, 'SHOW POOLS')).find((r) => r.database === 'app')?.cl_waiting === 4, { timeoutMs: 10_000, what: 'queries held on both workers' })
  tp.proc.kill('SIGUSR2')
  for (const r of await Promise.all(held)) assert.equal(r.rows[0].four, 4)
  assert.ok(!/signal\.refused/.test(tp.output()), 'each worker paused and resumed once')
})

test('/metrics and /api count every worker', { timeout: 120_000 }, async (t) => {
  const httpPort = await freePort()
  const { port } = await start(t, {}, { http_listen_port: httpPort })
  const apps: KeyedClient[] = []
  for (let i = 0; i < 6; i++) apps.push(await connect(t, port))
  for (const c of apps) await c.query('BEGIN; SELECT 1')
  for (let i = 0; i < 4; i++) {
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
    assert.match(metrics, /^tidepool_pools_server_active_connections\{database="app",user="[^"]+"\} 6$/m, `scrape ${i}`)
    assert.match(metrics, /^tidepool_client_connections 6$/m)
    const pools = await (await fetch(`http://127.0.0.1:${httpPort}/api/pools.json`)).json() as Array<Record<string, unknown>>
    assert.equal(pools.find((p) => p.database === 'app')?.cl_active, 6)
    const clients = await (await fetch(`http://127.0.0.1:${httpPort}/api/clients.json`)).json() as unknown[]
    assert.equal(clients.length, 6)
    const dash = await (await fetch(`http://127.0.0.1:${httpPort}/api/dashboard.json`)).json() as { clients: number; pools: Array<Record<string, unknown>> }
    assert.equal(dash.clients, 6)
    assert.equal(dash.pools.find((p) => p.database === 'app')?.sv_active, 6)
  }
  for (const c of apps) await c.query('COMMIT')
})

test('a replacement worker takes on the DISABLE and PAUSE the console set', { timeout: 120_000 }, async (t) => {
  const { tp, port } = await start(t)
  const admin = await connect(t, port, 'pgbouncer')
  await admin.query('DISABLE app')
  await admin.query('PAUSE postgres')
  const victim = keyOwner(admin.processID) === 0 ? 1 : 0
  process.kill(workerPids(tp).get(victim) as number, 'SIGKILL')
  await waitFor(() => new RegExp(`worker ${victim} took on PAUSE postgres, DISABLE app`).test(tp.output()), { timeoutMs: 30_000, what: 'the replacement to inherit' })
  for (let i = 0; i < 4; i++) await assert.rejects(connect(t, port), /database does not allow connections: app/, `attempt ${i}`)
  const states = await rows(admin, 'SHOW DATABASES')
  assert.ok(states.length > 0)
  await admin.query('ENABLE app')
  await admin.query('RESUME postgres')
  for (let i = 0; i < 4; i++) await (await connect(t, port)).query('SELECT 1')
})

test('SWITCHOVER from one worker\'s console holds and drains every worker\'s pools; clients of both move with no error', { timeout: 120_000 }, async (t) => {
  const b = await startPostgres()
  t.after(() => b.stop())
  let leader: 'a' | 'b' = 'a'
  const requests: unknown[] = []
  let watcher: pg.Client | null = null
  let waitingDuringPromote = -1
  const onSwitchover = async (body: { leader: string; candidate?: string }) => {
    requests.push(body)
    // Held means held in every worker: all clients, of both workers, wait while Patroni promotes.
    await new Promise((r) => setTimeout(r, 200))
    waitingDuringPromote = Number((await rows(watcher as pg.Client, 'SHOW POOLS')).find((r) => r.database === 'app')?.cl_waiting)
    leader = 'b'
    return 200
  }
  const pa = await fakePatroni(() => leader === 'a', 'pg-a', onSwitchover)
  const pb = await fakePatroni(() => leader === 'b', 'pg-b', onSwitchover)
  t.after(() => Promise.all([pa.close(), pb.close()]))
  const port = await freePort()
  const app = `host=127.0.0.1,127.0.0.1 port=${pgi.port},${b.port} dbname=app user=${pgi.user} password=${pgi.password} target_session_attrs=read-write patroni_urls=${pa.url},${pb.url}`
  await spawnTidepool(t as never, pgi, {
    port,
    databases: { app },
    settings: { admin_users: pgi.user, default_pool_size: 4 },
    tidepool: { workers: 2, janitor_interval_ms: 100, health_check_interval_ms: 100, health_check_timeout_ms: 1000, health_check_rise: 1, health_check_fall: 1 },
  })
  const clients: KeyedClient[] = []
  for (let i = 0; i < 40 && (clients.length < 6 || new Set(clients.map((c) => keyOwner(c.processID))).size < 2); i++) clients.push(await connect(t, port))
  const servedBy = async (c: pg.Client): Promise<number> => (await c.query('SELECT inet_server_port() AS p')).rows[0].p
  for (const c of clients) assert.equal(await servedBy(c), pgi.port)
  let running = true
  let errors = 0
  const loops = clients.map(async (c) => {
    while (running) {
      try {
        await c.query('BEGIN')
        await c.query('SELECT pg_sleep(0.01)')
        await c.query('COMMIT')
      } catch {
        errors++
      }
    }
  })
  const admin = await connect(t, port, 'pgbouncer')
  watcher = await connect(t, port, 'pgbouncer')
  const phases = await rows(admin, `SWITCHOVER app TO 'pg-b' TIMEOUT 10`)
  running = false
  await Promise.all(loops)
  assert.deepEqual(phases.map((p) => p.phase ?? p.name), ['hold', 'drain', 'promote', 'retarget', 'resume'])
  assert.deepEqual(requests, [{ leader: 'pg-a', candidate: 'pg-b' }], 'one switchover, from one worker')
  assert.equal(errors, 0, 'no client of either worker saw an error')
  assert.equal(waitingDuringPromote, clients.length, 'every client of both workers was held during the promotion')
  await waitFor(async () => (await Promise.all(clients.map(servedBy))).every((p) => p === b.port), { timeoutMs: 10_000, what: 'every client on the new primary' })
})
