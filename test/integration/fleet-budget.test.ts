// The fleet's connection budget (fleet_budget = on) with a real etcd, a real PostgreSQL and three
// tidepool nodes as child processes: pool_size 20 is the fleet's total. pgbench drives 10, 10 and
// 100 clients through nodes a, b and c while the test samples pg_stat_activity every 100 ms: the
// server connections of the three nodes together never exceed 20, and the busy node ends with most
// of the budget. Then: a SIGKILLed node's share comes free when its lease expires and the others
// take it; etcd crashed and restarted: never over; etcd stopped under load: the total still never
// exceeds 20 (the nodes fence themselves); etcd back: the shares move again. With
// fleet_budget_floor, fenced nodes keep their floors and serve on. Figures go to the test's diagnostics.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startEtcd } from '../harness/etcd.ts'
import { adminQuery, spawnNode } from '../harness/fleet.ts'
import { hasBinary, runPgbench, waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const TTL_S = 3
const BUDGET = 20

/** Server connections to database app (only the nodes' pools use it), sampled every 100 ms. */
async function startSampler(): Promise<{ max(): number; last(): number; stop(): Promise<void>; samples(): number; reset(): void }> {
  const c = new pg.Client({ host: '127.0.0.1', port: pgi.port, user: pgi.user, password: pgi.password, database: 'postgres' })
  c.on('error', () => {})
  await c.connect()
  let max = 0
  let last = 0
  let n = 0
  let isStopped = false
  const loop = (async () => {
    while (!isStopped) {
      const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'")
      last = r.rows[0].n as number
      if (last > max) max = last
      n++
      await new Promise((res) => setTimeout(res, 100))
    }
  })()
  return {
    max: () => max,
    last: () => last,
    samples: () => n,
    reset: () => { max = 0 },
    async stop() {
      isStopped = true
      await loop
      await c.end().catch(() => {})
    },
  }
}

/** Budget shares by node as node `port` last read them (SHOW FLEET's budget_share). */
async function shares(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const r of await adminQuery(pgi, port, 'SHOW FLEET')) out[r.name ?? ''] = Number(r.budget_share ?? 0)
  return out
}

function pgbench(port: number, clients: number, seconds: number, script: string) {
  return runPgbench({ port, user: pgi.user, password: pgi.password, db: 'app', timeoutMs: (seconds + 60) * 1000,
    args: ['-n', '-c', String(clients), '-j', '2', '-T', String(seconds), '-f', script] })
}

test('budget 20 over three nodes with 10/10/100 clients: never more than 20 servers; the busy node gets most; a dead node\'s share is freed; etcd loss never exceeds it', { timeout: 240_000 }, async (t) => {
  if (!hasBinary('pgbench')) {
    t.skip('pgbench is not installed')
    return
  }
  const etcd = await startEtcd(t)
  const fleet = `b-${randomBytes(3).toString('hex')}`
  const extra = { fleet_budget: 1 }
  const settings = { max_client_conn: 300, default_pool_size: BUDGET }
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-budget-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = join(dir, 'tx.sql')
  fs.writeFileSync(script, 'SELECT pg_sleep(0.01);\n')
  const httpPort = await freePort()
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((name) => spawnNode(t, pgi, etcd, fleet, name, TTL_S, name === 'a' ? { ...extra, http_listen_port: httpPort } : extra, settings)))
  for (const n of [a, b, c]) n.proc.stdout?.on('data', () => {})
  const sampler = await startSampler()
  t.after(() => sampler.stop())
  await waitFor(async () => Object.keys(await shares(a.port)).length === 3, { timeoutMs: 20_000, intervalMs: 200, what: 'three nodes in SHOW FLEET' })

  // Phase 1: uneven load.
  const t0 = Date.now()
  const loadA = pgbench(a.port, 10, 60, script)
  const loadB = pgbench(b.port, 10, 60, script)
  const loadC = pgbench(c.port, 100, 60, script)
  let mostMs = -1
  await waitFor(async () => {
    // Over budget is the answer too: the assertion below says so.
    if (sampler.max() > BUDGET) return true
    const s = await shares(a.port)
    if ((s.c ?? 0) > BUDGET / 2) {
      mostMs = Date.now() - t0
      return true
    }
    return false
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'node c (100 clients) to hold most of the budget' })
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers, saw ${sampler.max()}`)
  await new Promise((res) => setTimeout(res, 3_000))
  const settled = await shares(a.port)
  t.diagnostic(`busy node held most of the budget ${mostMs} ms after the load started; shares then: ${JSON.stringify(settled)}; max servers seen ${sampler.max()} over ${sampler.samples()} samples`)
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers, saw ${sampler.max()}`)
  assert.ok(settled.c > BUDGET / 2, `c keeps most: ${JSON.stringify(settled)}`)
  assert.ok(settled.a >= 1 && settled.b >= 1, `a and b keep a share: ${JSON.stringify(settled)}`)
  assert.ok(settled.a + settled.b + settled.c <= BUDGET, `shares add up to at most ${BUDGET}: ${JSON.stringify(settled)}`)
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const own = /^tidepool_fleet_budget_share\{scope="pool",database="app",user="postgres"\} (\d+)$/m.exec(metrics)
  assert.ok(own !== null && Number(own[1]) >= 1 && Number(own[1]) < BUDGET / 2, `node a's share in /metrics: ${own?.[0]}`)
  assert.match(metrics, /^tidepool_fleet_budget_fenced 0$/m)

  // Phase 2: node c dies; its share comes free when its lease expires, and a and b take it.
  const killedAt = Date.now()
  c.proc.kill('SIGKILL')
  await c.waitExit(5_000)
  await loadC.catch(() => null)
  let freedMs = -1
  await waitFor(async () => {
    const s = await shares(a.port)
    if (s.c === undefined && (s.a ?? 0) + (s.b ?? 0) >= 15) {
      freedMs = Date.now() - killedAt
      return true
    }
    return false
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'a and b to take the dead node\'s share' })
  t.diagnostic(`dead node's share taken by the others ${freedMs} ms after SIGKILL (lease ttl ${TTL_S} s): ${JSON.stringify(await shares(a.port))}; max servers ${sampler.max()}`)
  assert.ok(freedMs >= (TTL_S - 1) * 1000 * 0.5, `not before the lease could expire: ${freedMs} ms`)
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers, saw ${sampler.max()}`)

  // Phase 3: etcd crashes (its only member, the leader) and comes back: leases survive; never over budget.
  etcd.kill()
  const crashedAt = Date.now()
  await etcd.start()
  t.diagnostic(`etcd crashed and back in ${Date.now() - crashedAt} ms; max servers ${sampler.max()}`)
  await waitFor(async () => {
    const s = await shares(a.port)
    return (s.a ?? 0) + (s.b ?? 0) >= 15
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'shares held again after the etcd crash' })
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers across the etcd crash, saw ${sampler.max()}`)

  // Phase 4: etcd gone under load: the nodes fence themselves; the total never exceeds the budget.
  await etcd.stop()
  const stoppedAt = Date.now()
  await new Promise((res) => setTimeout(res, TTL_S * 1000 * 2))
  const duringLoss = sampler.last()
  t.diagnostic(`etcd down ${Date.now() - stoppedAt} ms: servers now ${duringLoss}, max ${sampler.max()}`)
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers with etcd gone, saw ${sampler.max()}`)
  assert.equal(duringLoss, 0, 'fenced nodes hold no server once the lease could have expired')
  await etcd.start()
  const backAt = Date.now()
  await waitFor(async () => {
    const s = await shares(a.port)
    return (s.a ?? 0) + (s.b ?? 0) >= 15
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'shares to move again after etcd came back' })
  t.diagnostic(`after etcd came back, a and b held their shares again within ${Date.now() - backAt} ms: ${JSON.stringify(await shares(a.port))}; max servers overall ${sampler.max()}`)
  await waitFor(() => sampler.last() > 0, { timeoutMs: 10_000, intervalMs: 100, what: 'servers open again' })
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers overall, saw ${sampler.max()}`)
  const [ra, rb] = await Promise.all([loadA, loadB])
  t.diagnostic(`pgbench a: ${ra.tps} tps, b: ${rb.tps} tps`)
  assert.equal(ra.code, 0, ra.stderr)
  assert.equal(rb.code, 0, rb.stderr)
})

test('fleet_budget_floor: cut off from etcd, each node keeps its floor and serves on; never over budget; a clean stop gives its floor back', { timeout: 120_000 }, async (t) => {
  if (!hasBinary('pgbench')) {
    t.skip('pgbench is not installed')
    return
  }
  const FLOOR = 2
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-budget-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = join(dir, 'tx.sql')
  fs.writeFileSync(script, 'SELECT pg_sleep(0.01);\n')
  const settings = { max_client_conn: 300, default_pool_size: BUDGET }
  const [a, b] = await Promise.all(['a', 'b'].map((name) => spawnNode(t, pgi, etcd, fleet, name, TTL_S, { fleet_budget: 1, fleet_budget_floor: FLOOR }, settings)))
  const sampler = await startSampler()
  t.after(() => sampler.stop())
  await waitFor(async () => Object.keys(await shares(a.port)).length === 2, { timeoutMs: 20_000, intervalMs: 200, what: 'two nodes in SHOW FLEET' })
  const loadA = pgbench(a.port, 10, 30, script)
  const loadB = pgbench(b.port, 40, 30, script)
  await waitFor(async () => {
    const s = await shares(a.port)
    return (s.a ?? 0) + (s.b ?? 0) === BUDGET && (s.b ?? 0) > (s.a ?? 0)
  }, { timeoutMs: 20_000, intervalMs: 100, what: 'the budget shared out, b (40 clients) above a (10)' })
  t.diagnostic(`shares with floors of ${FLOOR}: ${JSON.stringify(await shares(a.port))}`)
  await etcd.stop()
  await new Promise((res) => setTimeout(res, TTL_S * 1000 * 1.5))
  assert.ok(sampler.max() <= BUDGET, `at most ${BUDGET} servers, saw ${sampler.max()}`)
  // Fenced by now (¾ TTL and 0.9 TTL passed): each node holds its floor at most, and still serves.
  sampler.reset()
  await new Promise((res) => setTimeout(res, 1_000))
  const c = new pg.Client({ host: '127.0.0.1', port: a.port, user: pgi.user, password: pgi.password, database: 'app' })
  c.on('error', () => {})
  await c.connect()
  const startedMs = Date.now()
  await c.query('SELECT 1')
  const queryMs = Date.now() - startedMs
  await c.end()
  t.diagnostic(`etcd down: servers at most ${sampler.max()} (floors ${2 * FLOOR}), last ${sampler.last()}; a query through a took ${queryMs} ms`)
  assert.ok(sampler.max() <= 2 * FLOOR, `fenced nodes keep their floors only: saw ${sampler.max()}`)
  assert.ok(sampler.last() > 0, 'the floors keep serving')
  await etcd.start()
  const [ra, rb] = await Promise.all([loadA, loadB])
  assert.equal(ra.code, 0, ra.stderr)
  assert.equal(rb.code, 0, rb.stderr)
  // The floors are keys without a lease: b's stays while it runs, and a clean stop deletes it.
  b.proc.kill('SIGTERM')
  await b.waitExit(15_000)
  await waitFor(async () => {
    const rows = await adminQuery(pgi, a.port, 'SHOW FLEET')
    return rows.length === 1
  }, { timeoutMs: 10_000, intervalMs: 100, what: 'b to leave' })
  const { Etcd3 } = await import('etcd3')
  const client = new Etcd3({ hosts: `http://${etcd.endpoint}` })
  try {
    const floors = await client.getAll().prefix(`${fleet}/budget/floor/`).keys()
    assert.deepEqual(floors.map(String).map((k) => k.slice(k.lastIndexOf('/') + 1)), ['a'], `only a's floor is left: ${floors.join(',')}`)
  } finally {
    client.close()
  }
})

test('max_db_connections and max_user_connections are fleet-wide too: pool_size 50, max_db_connections 6 over two nodes', { timeout: 120_000 }, async (t) => {
  if (!hasBinary('pgbench')) {
    t.skip('pgbench is not installed')
    return
  }
  const DB_LIMIT = 6
  const etcd = await startEtcd(t)
  const fleet = `d-${randomBytes(3).toString('hex')}`
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-budget-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const script = join(dir, 'tx.sql')
  fs.writeFileSync(script, 'SELECT pg_sleep(0.01);\n')
  const httpPort = await freePort()
  const settings = { max_client_conn: 300, default_pool_size: 50, max_db_connections: DB_LIMIT, max_user_connections: 8 }
  const [a, b] = await Promise.all(['a', 'b'].map((name) => spawnNode(t, pgi, etcd, fleet, name, TTL_S, name === 'a' ? { fleet_budget: 1, http_listen_port: httpPort } : { fleet_budget: 1 }, settings)))
  const sampler = await startSampler()
  t.after(() => sampler.stop())
  await waitFor(async () => Object.keys(await shares(a.port)).length === 2, { timeoutMs: 20_000, intervalMs: 200, what: 'two nodes in SHOW FLEET' })
  const loads = [pgbench(a.port, 10, 8, script), pgbench(b.port, 20, 8, script)]
  await new Promise((res) => setTimeout(res, 5_000))
  // Under load: b, with twice a's clients, holds more of the database's budget (fairShares: a 2, b 4).
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const results = await Promise.all(loads)
  const dbShare = /^tidepool_fleet_budget_share\{scope="db",database="app"\} (\d+)$/m.exec(metrics)
  t.diagnostic(`max servers ${sampler.max()} over ${sampler.samples()} samples (max_db_connections ${DB_LIMIT}); a's db share ${dbShare?.[1]}; tps a ${results[0].tps}, b ${results[1].tps}`)
  for (const r of results) assert.equal(r.code, 0, r.stderr)
  assert.ok(sampler.max() <= DB_LIMIT, `at most ${DB_LIMIT} servers to database app over the fleet, saw ${sampler.max()}`)
  assert.ok(sampler.max() >= DB_LIMIT - 1, `the budget is used: ${sampler.max()}`)
  assert.ok(dbShare !== null && Number(dbShare[1]) >= 1 && Number(dbShare[1]) <= DB_LIMIT / 2, `a (10 clients) holds at most half the database's budget: ${dbShare?.[0]}`)
  assert.match(metrics, /^tidepool_fleet_budget_limit\{scope="user",user="postgres"\} 8$/m)
})
