// One tidepool node in region eu in front of a cluster spread over two regions: the primary pg0 and
// the standby pg2 in us, the standby pg1 in eu (streaming replication, PostgreSQL 15). The us hosts
// sit behind a user-space delay proxy (10 ms each way, test/harness/fault-proxy.ts), standing in
// for the distance between regions. Under steady read and write load:
//   - reads (read-only entry) stay on pg1, the eu standby; writes go to the primary in us;
//   - pg1 killed: reads move to pg2 across the region, only transactions in flight fail;
//   - pg1 back: new server connections go home at once, the remote ones retire within
//     region_failback_ms, and every read lands on pg1 again, with no error;
//   - SHOW HOSTS, /metrics and /api/hosts.json show each host's region.
// Read latency per region is measured and printed as a diagnostic (figures for docs/deploy.md).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import type pg from 'pg'
import { runPsql, waitFor } from '../harness/clients.ts'
import { startReplicatedCluster, pgQuery, SUPERUSER } from '../harness/replication.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad } from '../harness/load.ts'
import { startFaultProxy } from '../harness/fault-proxy.ts'
import { freePort } from '../harness/ports.ts'

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Array<{ name: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>

const FAST = { janitor_interval_ms: 100, health_check_interval_ms: 200, health_check_timeout_ms: 2000, health_check_rise: 1, health_check_fall: 2, host_ban_ms: 2000 }
const ONE_WAY_DELAY_MS = 10
const FAILBACK_MS = 2000

interface Sample { port: number; ms: number; atMs: number }

function hostState(tp: TestTidepool, port: number): string {
  const h = tp.rt.backends.monitor.all().find((x) => x.port === port)
  return h === undefined ? 'none' : `${h.role}/${h.health(Date.now())}`
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!
}

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]!
}

const fmt = (x: number): string => x.toFixed(1)

test('regions: reads stay in the node\'s region, cross over while its standby is down, and come home when it is back', { timeout: 150_000 }, async (t) => {
  const { primary, replicas: [eu, us] } = await startReplicatedCluster(t, { replicas: 2 })
  assert.ok(eu && us)
  await pgQuery(primary.port, LOAD_TABLE_SQL, [], 'app')
  // The us hosts are reached through the delay; the eu standby directly.
  const [toPrimary, toUs] = await Promise.all([startFaultProxy({ host: '127.0.0.1', port: primary.port }), startFaultProxy({ host: '127.0.0.1', port: us.port })])
  t.after(() => Promise.all([toPrimary.close(), toUs.close()]))
  toPrimary.set({ delayMs: ONE_WAY_DELAY_MS })
  toUs.set({ delayMs: ONE_WAY_DELAY_MS })
  const ports = [toPrimary.port, eu.port, toUs.port]
  const entry = (attrs: string) => `host=127.0.0.1,127.0.0.1,127.0.0.1 port=${ports.join(',')} host_regions=us,eu,us dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password} target_session_attrs=${attrs}`
  const httpPort = await freePort()
  const tp = await startTidepool(t, primary, {
    settings: { default_pool_size: 4, query_wait_timeout: 30, server_connect_timeout: 3, admin_users: SUPERUSER.user },
    databases: { app: entry('read-write'), app_ro: entry('read-only') },
    tidepool: { ...FAST, node_region: 'eu', region_failback_ms: FAILBACK_MS, http_listen_port: httpPort },
  })
  await waitFor(() => hostState(tp, toPrimary.port) === 'primary/up' && hostState(tp, eu.port) === 'replica/up' && hostState(tp, toUs.port) === 'replica/up',
    { timeoutMs: 20_000, intervalMs: 50, what: 'every host checked' })

  const reads: Sample[] = []
  const writes: Sample[] = []
  const ro = startLoad({
    clients: 4,
    connect: () => connectClient(tp.port, 'app_ro'),
    tx: async (c: pg.Client) => {
      const t0 = performance.now()
      const r = await c.query('SELECT inet_server_port() AS port, count(*) AS n FROM load_tx')
      const port = r.rows[0].port as number
      reads.push({ port, ms: performance.now() - t0, atMs: Date.now() })
      return port
    },
  })
  const rw = startLoad({
    clients: 2,
    connect: () => connectClient(tp.port, 'app'),
    tx: async (c: pg.Client, client: number, seq: number) => {
      const t0 = performance.now()
      const r = await c.query('INSERT INTO load_tx (client, seq, port) VALUES ($1, $2, inet_server_port()) RETURNING port', [client, seq])
      const port = r.rows[0].port as number
      writes.push({ port, ms: performance.now() - t0, atMs: Date.now() })
      return port
    },
    thinkMs: 20,
  })
  t.after(async () => {
    await Promise.all([ro.stop(), rw.stop()])
  })
  t.after(() => t.diagnostic(`reads: ${describeLoad(ro.stats)}\nwrites: ${describeLoad(rw.stats)}`))

  // 1. Home: every read on the eu standby, every write on the primary in us.
  await Promise.all([ro.progress(30, 30_000), rw.progress(5, 30_000)])
  const home = reads.slice()
  assert.deepEqual([...new Set(home.map((s) => s.port))], [eu.port], 'reads stay in eu')
  assert.deepEqual([...new Set(writes.map((s) => s.port))], [primary.port], 'writes go to the primary in us')
  assert.equal(ro.stats.failed + rw.stats.failed, 0)

  // 2. The eu standby dies: reads cross to us; at most the reads in flight at the kill fail.
  const killedAt = Date.now()
  eu.kill()
  await waitFor(() => reads.filter((s) => s.atMs > killedAt && s.port === us.port).length >= 40, { timeoutMs: 30_000, intervalMs: 20, what: 'reads to move to the us standby' })
  const crossedAt = reads.find((s) => s.atMs > killedAt && s.port === us.port)!.atMs
  const failedAtKill = ro.stats.failed
  assert.ok(failedAtKill <= 4, `only reads in flight at the kill fail (4 clients): ${ro.stats.failures.map((f) => f.error).join('; ')}`)
  const away = reads.filter((s) => s.atMs > crossedAt)
  assert.deepEqual([...new Set(away.map((s) => s.port))], [us.port], 'once across, every read runs in us')

  // 3. The eu standby is back: new connections go home at once, the remote ones retire within
  //    region_failback_ms, and reads come home without an error.
  await eu.start()
  await waitFor(() => hostState(tp, eu.port) === 'replica/up', { timeoutMs: 20_000, intervalMs: 20, what: 'tidepool to see pg1 up again' })
  const upAt = Date.now()
  await waitFor(() => {
    const after = reads.filter((s) => s.atMs > upAt)
    const last = after.slice(-40)
    return last.length === 40 && last.every((s) => s.port === eu.port)
  }, { timeoutMs: FAILBACK_MS + 15_000, intervalMs: 20, what: 'reads to come home to pg1' })
  const lastRemote = reads.filter((s) => s.atMs > upAt && s.port === us.port).at(-1)?.atMs ?? upAt
  const firstHome = reads.find((s) => s.atMs > upAt && s.port === eu.port)?.atMs ?? NaN
  assert.ok(lastRemote - upAt <= FAILBACK_MS + 3_000, `the last remote read came ${lastRemote - upAt} ms after pg1 was up (region_failback_ms ${FAILBACK_MS})`)
  assert.equal(ro.stats.failed, failedAtKill, 'coming home fails no read')
  assert.equal(rw.stats.failed, 0, 'writes never failed')
  assert.ok(tp.logs.some((l) => l.includes('pool.region_failback') && l.includes(`outside region eu retire within ${FAILBACK_MS} ms`)), 'the move home is logged')
  await waitFor(async () => Number((await pgQuery(us.port, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND application_name <> 'tidepool health check'`))[0].n) === 0,
    { timeoutMs: 10_000, intervalMs: 100, what: 'no pooled server connection left on the us standby' })
  assert.deepEqual([...new Set(writes.map((s) => s.port))], [primary.port])

  // 4. The region of each host, in SHOW HOSTS (last column), /metrics and /api/hosts.json.
  const shown = await runPsql({ port: tp.port, user: SUPERUSER.user, password: SUPERUSER.password, db: 'pgbouncer', sql: 'SHOW HOSTS' })
  assert.equal(shown.code, 0, shown.stderr)
  assert.match(shown.stdout, new RegExp(`^127\\.0\\.0\\.1\\|${eu.port}\\|postgresql\\|replica\\|up\\|yes\\|.*\\|eu$`, 'm'))
  assert.match(shown.stdout, new RegExp(`^127\\.0\\.0\\.1\\|${toPrimary.port}\\|postgresql\\|primary\\|up\\|yes\\|.*\\|us$`, 'm'))
  const metrics = parsePrometheus(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text())
  const up = metrics.find((f) => f.name === 'tidepool_host_up')?.metrics ?? []
  assert.deepEqual(up.map((m) => `${m.labels?.host} ${m.labels?.region}`).sort(), [`127.0.0.1:${toPrimary.port} us`, `127.0.0.1:${eu.port} eu`, `127.0.0.1:${toUs.port} us`].sort())
  const json = await (await fetch(`http://127.0.0.1:${httpPort}/api/hosts.json`)).json() as Array<{ port: number; region: string | null }>
  assert.deepEqual(json.map((h) => `${h.port} ${h.region}`).sort(), [`${toPrimary.port} us`, `${eu.port} eu`, `${toUs.port} us`].sort())

  // Figures: read latency by where the read ran (the us host includes 2 × 10 ms of delay).
  const latency = (xs: Sample[]) => `n=${xs.length} median ${fmt(median(xs.map((s) => s.ms)))} ms, p95 ${fmt(p95(xs.map((s) => s.ms)))} ms`
  const homeMs = median(home.map((s) => s.ms))
  const awayMs = median(away.map((s) => s.ms))
  const figures = [
    `reads at home (eu standby): ${latency(home)}`,
    `reads across (us standby, pg1 down): ${latency(away)}`,
    `reads home again: ${latency(reads.filter((s) => s.atMs > lastRemote))}`,
    `writes (primary in us): ${latency(writes)}`,
    `kill → first read in us: ${crossedAt - killedAt} ms; reads failed at the kill: ${failedAtKill}`,
    `pg1 up → first read home: ${firstHome - upAt} ms; → last read in us: ${lastRemote - upAt} ms (region_failback_ms ${FAILBACK_MS})`,
  ].join('\n')
  t.diagnostic(`[figures]\n${figures}`)
  if (process.env.TIDEPOOL_TEST_LOG === '1') process.stderr.write(`${figures}\n`)
  assert.ok(awayMs >= 2 * ONE_WAY_DELAY_MS, `a read in us pays the delay both ways: ${awayMs} ms`)
  assert.ok(homeMs < awayMs, `reads at home are faster: ${homeMs} ms vs ${awayMs} ms`)
})
