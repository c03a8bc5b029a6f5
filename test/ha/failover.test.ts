// tidepool in front of real streaming replication (PostgreSQL 15: a primary and hot standbys from
// pg_basebackup, test/harness/replication.ts) with a steady load of real clients: the primary
// killed and a standby promoted by hand, a planned switchover with no Patroni (the test plays the
// operator who stops the old primary and promotes), and bad inputs (an unknown or stopped
// switchover target, hosts that hang or answer garbage). Counts failed transactions and the
// longest stall (test/harness/load.ts), and prints them as diagnostics.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { runPgbench, waitFor } from '../harness/clients.ts'
import { startReplicatedCluster, pgQuery, SUPERUSER } from '../harness/replication.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad, type Load } from '../harness/load.ts'

// Checks every 200 ms; a host is down after two failed checks. Timeouts are generous: the
// machine is shared, and a check that times out on a busy CPU would take a healthy host out.
const FAST = { janitor_interval_ms: 100, health_check_interval_ms: 200, health_check_timeout_ms: 2000, health_check_rise: 1, health_check_fall: 2, host_ban_ms: 2000 }
// Queries may wait for a primary far longer than any failover here takes.
const SETTINGS = { default_pool_size: 4, query_wait_timeout: 60, client_login_timeout: 60, server_connect_timeout: 3 }

function entry(nodes: Array<{ port: number }>, extra: string): string {
  return `host=${nodes.map(() => '127.0.0.1').join(',')} port=${nodes.map((n) => n.port).join(',')} dbname=app user=${SUPERUSER.user} password=${SUPERUSER.password} ${extra}`
}

const key = (port: number): string => `127.0.0.1:${port}`

function hostState(tp: TestTidepool, port: number): { role: string; health: string; error: string | null } {
  const h = tp.rt.backends.monitor.all().find((x) => x.port === port)
  if (h === undefined) return { role: 'none', health: 'none', error: null }
  return { role: h.role, health: h.health(Date.now()), error: h.lastError }
}

async function waitRole(tp: TestTidepool, port: number, role: string, health = 'up', timeoutMs = 20_000): Promise<void> {
  await waitFor(() => {
    const s = hostState(tp, port)
    return s.role === role && s.health === health
  }, { timeoutMs, intervalMs: 50, what: `tidepool to see ${key(port)} as ${role}/${health} (now ${JSON.stringify(hostState(tp, port))})` })
}

function clientOf(tp: TestTidepool, database: string): () => Promise<pg.Client> {
  return () => connectClient(tp.port, database)
}

/** Read-only transactions: which standby answered. */
async function readTx(c: pg.Client): Promise<number> {
  await c.query('BEGIN')
  const r = await c.query('SELECT inet_server_port() AS port, count(*) AS n FROM load_tx')
  await c.query('COMMIT')
  return r.rows[0].port as number
}

async function stopAll(t: TestContext, loads: Load[]): Promise<void> {
  for (const l of loads) await l.stop()
  void t
}

async function committedRows(port: number): Promise<number> {
  return Number((await pgQuery(port, 'SELECT count(*)::int AS n FROM load_tx WHERE client >= 0', [], 'app'))[0].n)
}

test('primary killed, a standby promoted: only transactions in flight fail; writes move on, reads never stop', { timeout: 170_000 }, async (t) => {
  const { primary, replicas: [r1, r2] } = await startReplicatedCluster(t, { replicas: 2 })
  assert.ok(r1 && r2)
  await pgQuery(primary.port, LOAD_TABLE_SQL, [], 'app')
  const nodes = [primary, r1, r2]
  const tp = await startTidepool(t, primary, {
    settings: SETTINGS,
    databases: { app: entry(nodes, 'target_session_attrs=read-write'), app_ro: entry(nodes, 'target_session_attrs=read-only') },
    tidepool: FAST,
  })
  await Promise.all([waitRole(tp, primary.port, 'primary'), waitRole(tp, r1.port, 'replica'), waitRole(tp, r2.port, 'replica')])

  const rw = startLoad({ clients: 6, connect: clientOf(tp, 'app') })
  const ro = startLoad({ clients: 3, connect: clientOf(tp, 'app_ro'), tx: readTx })
  t.after(() => stopAll(t, [rw, ro]))
  await Promise.all([rw.progress(10, 30_000), ro.progress(10, 30_000)])

  const killAt = Date.now()
  primary.kill()
  // Whoever promotes (repmgr, an operator) takes a moment to decide.
  await new Promise((r) => setTimeout(r, 1_000))
  await r1.promote()
  const promotedAt = Date.now()
  await waitRole(tp, primary.port, 'unknown', 'down')
  await rw.progress(20, 60_000)
  await ro.progress(20, 60_000)
  const after = Date.now()
  const [w, r] = [await rw.stop(), await ro.stop()]
  t.diagnostic(`writes: ${describeLoad(w)}; promotion took ${promotedAt - killAt} ms after the kill`)
  t.diagnostic(`reads: ${describeLoad(r)}`)

  // In flight at the kill: at most one transaction per client, each begun before the kill (the
  // margin covers a client whose BEGIN reached an idle server whose close was not read yet).
  assert.ok(w.failed <= 6, `${w.failed} failed: ${JSON.stringify(w.failures.slice(0, 8))}`)
  for (const f of w.failures) assert.ok(f.startedMs <= killAt + 200, `a transaction begun ${f.startedMs - killAt} ms after the kill failed: ${f.error}`)
  assert.ok(new Set(w.failures.map((f) => f.client)).size === w.failed, 'no client failed twice')
  // Only a client whose transaction failed lost its connection (tidepool closes it, as PgBouncer).
  assert.ok(w.reconnects <= w.failed, `${w.reconnects} reconnects for ${w.failed} failures`)
  // The stall is the promotion itself plus noticing it; nothing waits on a check interval for long.
  assert.ok(w.longestStallMs <= promotedAt - killAt + 3_000, `longest stall ${w.longestStallMs} ms, promotion ${promotedAt - killAt} ms`)
  const onNew = w.servedBy.get(r1.port)
  assert.ok(onNew !== undefined && onNew.lastMs > promotedAt, 'writes go to the new primary')
  assert.ok(w.servedBy.get(primary.port)!.lastMs < killAt + 500, 'no write on the dead primary after the kill')

  // Reads went on from the standbys throughout, and end on the one that stayed a standby.
  assert.equal(r.failed, 0, JSON.stringify(r.failures.slice(0, 5)))
  assert.ok(r.longestStallMs < 3_000, `reads stalled ${r.longestStallMs} ms`)
  assert.ok(r.servedBy.get(r2.port)!.lastMs >= after - 2_000, 'reads on the remaining standby at the end')
  // app_ro's server connections left r1 once it became primary.
  for (const srv of tp.pool('app_ro', SUPERUSER.user)!.lists.allServers()) assert.equal((srv as unknown as { target: { port: number } }).target.port, r2.port)
})

test('planned switchover without Patroni, under node-postgres and pgbench load: no failed transaction', { timeout: 170_000 }, async (t) => {
  const { primary, replicas: [standby] } = await startReplicatedCluster(t, { replicas: 1 })
  assert.ok(standby)
  await pgQuery(primary.port, LOAD_TABLE_SQL, [], 'app')
  const tp = await startTidepool(t, primary, {
    settings: { ...SETTINGS, default_pool_size: 6, max_client_conn: 100 },
    databases: { app: entry([primary, standby], 'target_session_attrs=read-write') },
    tidepool: FAST,
  })
  await Promise.all([waitRole(tp, primary.port, 'primary'), waitRole(tp, standby.port, 'replica')])

  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pgbench-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tx.sql'), '\\set n random(1, 1000000)\nBEGIN;\nINSERT INTO load_tx (client, seq, port) VALUES (-1, :n, inet_server_port());\nEND;\n')
  const bench = runPgbench({
    port: tp.port, user: SUPERUSER.user, password: SUPERUSER.password, db: 'app',
    args: ['-n', '-f', join(dir, 'tx.sql'), '-c', '4', '-j', '1', '-T', '14', '-l', `--log-prefix=${join(dir, 'pgb')}`],
    timeoutMs: 90_000,
  })
  const load = startLoad({ clients: 6, connect: clientOf(tp, 'app') })
  t.after(() => load.stop())
  await load.progress(10, 30_000)
  await new Promise((r) => setTimeout(r, 1_500))

  // The operator's part, once tidepool holds new transactions: stop the old primary (a fast
  // shutdown sends its last WAL to the standby first), then promote the standby.
  let promotedAt = 0
  const operator = (async () => {
    await waitFor(() => tp.logs.some((l) => l.includes('switchover app: drain took')), { timeoutMs: 20_000, intervalMs: 10, what: 'the hold and drain' })
    await primary.stop('fast')
    await standby.promote()
    promotedAt = Date.now()
  })()
  const report = await tp.rt.switchover('app', key(standby.port), 30_000)
  await operator
  const resumedAt = report.startedAtMs + report.totalMs
  // The old primary comes back as a standby of the new one, under load.
  await primary.follow(standby)
  await waitRole(tp, primary.port, 'replica')
  await load.progress(10, 30_000)
  const s = await load.stop()
  const b = await bench
  const latencies = readdirSync(dir).filter((f) => f.startsWith('pgb')).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .filter((l) => l !== '').map((l) => Number(l.split(' ')[2]) / 1000)
  // Not Math.max(...latencies): a fast run logs more transactions than a call has room for arguments.
  const pgbMaxMs = Math.round(latencies.reduce((m, v) => Math.max(m, v), 0))
  const phases = report.phases.map((p) => `${p.name}=${p.ms}`).join(' ')
  t.diagnostic(`switchover ${report.ok ? 'ok' : report.error}: ${report.totalMs} ms held (${phases}); released ${resumedAt - promotedAt} ms after the test saw the promotion (negative: tidepool's checks saw it first)`)
  t.diagnostic(`node-postgres: ${describeLoad(s)}`)
  t.diagnostic(`pgbench: exit ${b.code}, tps ${b.tps}, ${latencies.length} transactions, longest ${pgbMaxMs} ms; ${b.stderr.trim().split('\n').slice(-3).join(' | ')}`)

  assert.equal(report.ok, true, report.error ?? '')
  assert.equal(report.from, key(primary.port))
  assert.equal(report.to, key(standby.port))
  assert.equal(report.cancelled, 0)
  assert.equal(s.failed, 0, JSON.stringify(s.failures.slice(0, 5)))
  assert.equal(s.reconnects, 0)
  assert.equal(b.code, 0, b.stderr)
  assert.doesNotMatch(b.stderr, /aborted/)
  // The hold covers the operator's stop and promote; what tidepool adds after the promotion is
  // one round of checks.
  assert.ok(resumedAt - promotedAt < 1_000, `tidepool released ${resumedAt - promotedAt} ms after the promotion`)
  assert.ok(s.longestStallMs < report.totalMs + 1_000, `stall ${s.longestStallMs} ms, hold ${report.totalMs} ms`)
  // Nothing committed was lost: every commit a node-postgres client saw is on the new primary.
  assert.equal(await committedRows(standby.port), s.ok)
  assert.ok(s.servedBy.get(standby.port)!.count > 0)
})

/** A TCP port that accepts connections and never says a word. */
async function silentListener(t: TestContext, answer: Buffer | null): Promise<number> {
  const socks = new Set<net.Socket>()
  const srv = net.createServer((s) => {
    socks.add(s)
    s.on('error', () => {})
    s.on('close', () => socks.delete(s))
    if (answer !== null) s.once('data', () => s.end(answer))
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => {
    for (const s of socks) s.destroy()
    srv.close(() => r())
  }))
  return (srv.address() as net.AddressInfo).port
}

test('bad inputs: unknown and stopped switchover targets, a switchover nobody completes, hosts that hang or answer garbage', { timeout: 170_000 }, async (t) => {
  const { primary, replicas: [standby] } = await startReplicatedCluster(t, { replicas: 1 })
  assert.ok(standby)
  await pgQuery(primary.port, LOAD_TABLE_SQL, [], 'app')
  const hang = await silentListener(t, null)
  const garbage = await silentListener(t, Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))
  const tp = await startTidepool(t, primary, {
    settings: SETTINGS,
    databases: {
      app: entry([primary, standby, { port: hang }], 'target_session_attrs=read-write'),
      // Every host fits `any`: the two bad ones must be found out and left out.
      app_any: entry([{ port: hang }, { port: garbage }, primary], ''),
    },
    tidepool: FAST,
  })
  const load = startLoad({ clients: 4, connect: clientOf(tp, 'app') })
  const anyLoad = startLoad({ clients: 4, connect: clientOf(tp, 'app_any') })
  t.after(() => stopAll(t, [load, anyLoad]))
  await waitRole(tp, hang, 'unknown', 'down')
  await waitRole(tp, garbage, 'unknown', 'down')
  assert.match(hostState(tp, hang).error ?? '', /timeout|no answer|timed out/i)
  await Promise.all([load.progress(5, 30_000), anyLoad.progress(5, 30_000)])

  const unknown = await tp.rt.switchover('app', '127.0.0.1:1', 5_000)
  assert.equal(unknown.ok, false)
  assert.match(unknown.error ?? '', /no host "127\.0\.0\.1:1"/)
  assert.deepEqual(unknown.phases, [], 'nothing was held')

  // Nobody promotes: the hold ends at the deadline and held transactions go on where they were.
  const unfinished = await tp.rt.switchover('app', key(standby.port), 3_000)
  assert.equal(unfinished.ok, false)
  assert.match(unfinished.error ?? '', /no promotion seen within 3000 ms/)
  assert.ok(unfinished.totalMs < 4_000, `${unfinished.totalMs} ms`)
  await load.progress(5, 10_000)

  await standby.stop('fast')
  await waitRole(tp, standby.port, 'unknown', 'down')
  const stopped = await tp.rt.switchover('app', key(standby.port), 5_000)
  assert.equal(stopped.ok, false)
  assert.match(stopped.error ?? '', /is not a running standby/)
  assert.deepEqual(stopped.phases, [])
  await load.progress(5, 10_000)

  const [w, a] = [await load.stop(), await anyLoad.stop()]
  t.diagnostic(`app: ${describeLoad(w)}`)
  t.diagnostic(`app_any: ${describeLoad(a)}`)
  assert.equal(w.failed, 0, JSON.stringify(w.failures.slice(0, 5)))
  assert.deepEqual([...w.servedBy.keys()], [primary.port])
  // The held transactions waited out the deadline, no more.
  assert.ok(w.longestStallMs < 5_000, `stall ${w.longestStallMs} ms`)
  assert.equal(a.failed, 0, JSON.stringify(a.failures.slice(0, 5)))
  assert.deepEqual([...a.servedBy.keys()], [primary.port])
})
