// tidepool in front of a real Patroni cluster (Patroni 3.0 + etcd from Debian, two members on
// PostgreSQL 15; test/harness/patroni.ts) with patroni_urls set, under a steady load of real
// clients: a switchover run by tidepool through Patroni's REST API, a kill -9 of the leader that
// Patroni fails over (~10 s with the harness's ttl), and a split brain (a replica promoted by hand
// while Patroni is paused) in which no write may reach the member Patroni does not call leader.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import pg from 'pg'
import { waitFor } from '../harness/clients.ts'
import { asInstance, FRONT_SETTINGS, FRONT_TIDEPOOL, frontDatabase, startPatroniCluster, type PatroniCluster, type PatroniNode } from '../harness/patroni.ts'
import { PG_BIN, pgQuery, runAsPostgres, SUPERUSER, waitStreaming } from '../harness/replication.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad } from '../harness/load.ts'

async function startFront(t: Parameters<typeof startTidepool>[0], cluster: PatroniCluster): Promise<TestTidepool> {
  return startTidepool(t, asInstance(cluster.nodes[0]!), { settings: FRONT_SETTINGS, databases: { app: frontDatabase(cluster) }, tidepool: FRONT_TIDEPOOL })
}

function roleOf(tp: TestTidepool, n: PatroniNode): string {
  const h = tp.rt.backends.monitor.get(n.host, n.pgPort)
  return h === undefined ? 'none' : `${h.role}/${h.health(Date.now())}`
}

async function waitRole(tp: TestTidepool, n: PatroniNode, role: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(() => roleOf(tp, n) === role, { timeoutMs, intervalMs: 50, what: `tidepool to see ${n.name} as ${role} (now ${roleOf(tp, n)})` })
}

function clientOf(tp: TestTidepool): () => Promise<pg.Client> {
  return () => connectClient(tp.port)
}

test('Patroni: SWITCHOVER through its REST API with no failed transaction, then kill -9 of the leader: only transactions in flight fail', { timeout: 175_000 }, async (t) => {
  const cluster = await startPatroniCluster(t, { nodes: 2 })
  const first = await cluster.leader()
  const second = cluster.nodes.find((n) => n !== first)!
  await pgQuery(first.pgPort, LOAD_TABLE_SQL, [], 'app')
  const tp = await startFront(t, cluster)
  await Promise.all([waitRole(tp, first, 'primary/up'), waitRole(tp, second, 'replica/up')])

  const load = startLoad({ clients: 6, connect: clientOf(tp) })
  t.after(() => load.stop())
  await load.progress(10, 30_000)
  await new Promise((r) => setTimeout(r, 1_000))

  // --- planned switchover ---
  const failedAtStart = load.stats.failed
  // The operator's way: the admin console's SWITCHOVER, naming the Patroni member.
  const admin = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'pgbouncer', user: SUPERUSER.user, password: SUPERUSER.password })
  await admin.connect()
  const answer = await admin.query(`SWITCHOVER app TO ${second.name} TIMEOUT 30`).finally(() => admin.end())
  assert.deepEqual(answer.rows.map((r: { phase: string }) => r.phase), ['hold', 'drain', 'promote', 'retarget', 'resume'])
  const report = tp.rt.switchovers.get('app')!
  const phases = Object.fromEntries(report.phases.map((p) => [p.name, p.ms]))
  await load.progress(10, 30_000)
  const stallSwitchover = load.stats.longestStallMs
  t.diagnostic(`switchover ${report.ok ? 'ok' : report.error}: held ${report.totalMs} ms (${report.phases.map((p) => `${p.name}=${p.ms}`).join(' ')}); ${describeLoad(load.stats)}`)
  assert.equal(report.ok, true, report.error ?? '')
  assert.equal(report.to, `${second.host}:${second.pgPort}`)
  assert.equal(report.cancelled, 0)
  assert.equal(load.stats.failed, failedAtStart, JSON.stringify(load.stats.failures.slice(0, 5)))
  assert.equal(load.stats.reconnects, 0)
  assert.equal(await second.isLeader(), true)
  // Patroni's own demote-and-promote is the promote phase; tidepool adds the drain and retarget.
  assert.ok(phases.drain! + phases.retarget! + phases.resume! < 1_000, `tidepool's part: ${JSON.stringify(phases)}`)
  assert.ok(stallSwitchover < report.totalMs + 1_000, `stall ${stallSwitchover} ms, hold ${report.totalMs} ms`)

  // --- kill -9 of the new leader, once the old one streams from it again ---
  await waitFor(() => first.isReplica(), { timeoutMs: 60_000, intervalMs: 100, what: `${first.name} to run as a replica` })
  await waitStreaming(second.pgPort, [first.name], 60_000)
  await waitRole(tp, first, 'replica/up')
  await load.progress(5, 30_000)
  const failedBefore = load.stats.failed
  const reconnectsBefore = load.stats.reconnects
  load.stats.longestStallMs = 0
  const killAt = Date.now()
  second.kill()
  assert.equal(await cluster.leader(40_000), first)
  const failoverMs = Date.now() - killAt
  await waitRole(tp, first, 'primary/up')
  await load.progress(10, 60_000)
  const s = await load.stop()
  const killed = s.failures.slice(failedBefore)
  t.diagnostic(`kill -9: Patroni failed over in ${failoverMs} ms; ${s.failed - failedBefore} failed, ${s.reconnects - reconnectsBefore} reconnects, longest stall ${s.longestStallMs} ms; ${killed.map((f) => `${f.error} (begun ${f.startedMs - killAt} ms after the kill)`).join('; ')}`)
  assert.ok(killed.length <= 6, `${killed.length} failed`)
  for (const f of killed) assert.ok(f.startedMs <= killAt + 200, `a transaction begun ${f.startedMs - killAt} ms after the kill failed: ${f.error}`)
  // Each failed client reconnects once; a client between transactions never notices. (A dying
  // backend's FATAL that came in the same read as a released server's ReadyForQuery used to reach
  // the client that had just finished: it closed its connection, one reconnect too many.)
  assert.ok(s.reconnects - reconnectsBefore <= killed.length, `${s.reconnects - reconnectsBefore} reconnects for ${killed.length} failures`)
  // Queries that came meanwhile waited for the new leader and went on: the stall is the failover.
  assert.ok(s.longestStallMs <= failoverMs + 3_000, `stall ${s.longestStallMs} ms, failover ${failoverMs} ms`)
  assert.ok(s.servedBy.get(first.pgPort)!.lastMs > killAt + failoverMs - 1_000)
})

async function patroniPaused(n: PatroniNode): Promise<boolean> {
  const res = await fetch(`${n.restUrl}/patroni`, { signal: AbortSignal.timeout(3_000) })
  return (await res.json() as { pause?: boolean }).pause === true
}

test('Patroni split brain: a replica promoted by hand while Patroni is paused gets no write', { timeout: 150_000 }, async (t) => {
  const cluster = await startPatroniCluster(t, { nodes: 2 })
  const leader = await cluster.leader()
  const rogue = cluster.nodes.find((n) => n !== leader)!
  await pgQuery(leader.pgPort, LOAD_TABLE_SQL, [], 'app')
  const tp = await startFront(t, cluster)
  await Promise.all([waitRole(tp, leader, 'primary/up'), waitRole(tp, rogue, 'replica/up')])
  const load = startLoad({ clients: 4, connect: clientOf(tp) })
  t.after(() => load.stop())
  await load.progress(10, 30_000)

  // Maintenance mode: Patroni leaves postgres alone, so nothing undoes the hand promotion.
  const res = await fetch(`${leader.restUrl}/config`, { method: 'PATCH', body: JSON.stringify({ pause: true }), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5_000) })
  assert.equal(res.status, 200, await res.text())
  await waitFor(async () => (await patroniPaused(leader)) && (await patroniPaused(rogue)), { timeoutMs: 20_000, intervalMs: 200, what: 'both members to be paused' })
  await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['promote', '-D', rogue.dataDir, '-w', '-t', '30'], 40_000)
  const promotedAt = Date.now()
  assert.equal((await rogue.query('SELECT pg_is_in_recovery() AS r'))[0].r, false, 'both members now take writes')
  assert.equal(await rogue.isLeader(), false, 'Patroni still names the old leader')
  // tidepool hears "primary" from the rogue's backend and "not the leader" from its Patroni.
  await waitFor(() => tp.logs.some((l) => l.includes(`host ${rogue.host}:${rogue.pgPort}`) && l.includes('role sources disagree')),
    { timeoutMs: 10_000, intervalMs: 50, what: 'the disagreement to be logged' })
  assert.equal(roleOf(tp, rogue), 'unknown/up')
  await load.progress(30, 30_000)
  // Fresh connections too (a pool whose servers all closed would pick again).
  for (const srv of tp.pool('app', SUPERUSER.user)!.lists.allServers()) srv.closeOnRelease = true
  await load.progress(30, 30_000)
  const s = await load.stop()
  t.diagnostic(`split brain: ${describeLoad(s)}`)

  assert.equal(s.failed, 0, JSON.stringify(s.failures.slice(0, 5)))
  assert.deepEqual([...s.servedBy.keys()], [leader.pgPort])
  // Each row carries the port of the server that wrote it: none was written on the rogue.
  const [onRogue] = await pgQuery(rogue.pgPort, 'SELECT count(*)::int AS n FROM load_tx WHERE port = $1', [rogue.pgPort], 'app')
  assert.equal(onRogue.n, 0)
  const [lastOnLeader] = await pgQuery(leader.pgPort, 'SELECT max(at) AS at FROM load_tx', [], 'app')
  assert.ok(new Date(lastOnLeader.at).getTime() > promotedAt, 'writes went on at the leader after the split')
  const [app] = await pgQuery(rogue.pgPort, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend' AND application_name <> 'tidepool health check' AND pid <> pg_backend_pid()`)
  assert.equal(app.n, 0, 'no pooled connection on the rogue')
})
