// The HA harness against its real parts, before any of tidepool is involved: streaming replication
// from Debian's PostgreSQL 15 (test/harness/replication.ts) and Patroni + etcd
// (test/harness/patroni.ts). If these fail, tidepool's HA tests would fail for reasons not its own.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../harness/clients.ts'
import { startReplicatedCluster, waitStreaming, type ReplNode } from '../harness/replication.ts'
import { startPatroniCluster } from '../harness/patroni.ts'

async function values(n: ReplNode): Promise<string[]> {
  return (await n.query('SELECT v FROM t ORDER BY v')).map((r) => r.v)
}

async function hasRow(n: ReplNode, v: string): Promise<void> {
  await waitFor(async () => (await values(n)).includes(v), { timeoutMs: 10_000, intervalMs: 50, what: `row '${v}' on ${n.name}` })
}

test('streaming replication: rows reach the standbys; kill, promote, follow, stop and start', { timeout: 120_000 }, async (t) => {
  const { primary, replicas: [r1, r2] } = await startReplicatedCluster(t, { replicas: 2 })
  assert.ok(r1 && r2)
  assert.equal(await primary.isInRecovery(), false)
  assert.equal(await r1.isInRecovery(), true)
  await primary.query('CREATE TABLE t (v text)')
  await primary.query(`INSERT INTO t VALUES ('one')`)
  await Promise.all([hasRow(r1, 'one'), hasRow(r2, 'one')])
  await assert.rejects(r1.query(`INSERT INTO t VALUES ('no')`), /read-only transaction/)

  primary.kill()
  assert.equal(primary.isRunning(), false)
  await assert.rejects(primary.query('SELECT 1'))

  await r1.promote()
  assert.equal(await r1.isInRecovery(), false)
  await r1.query(`INSERT INTO t VALUES ('two')`)

  // A standby of the dead primary follows the new one; the dead primary comes back as a standby.
  await r2.follow(r1)
  await hasRow(r2, 'two')
  await primary.follow(r1)
  assert.equal(await primary.isInRecovery(), true)
  await hasRow(primary, 'two')

  await r2.stop()
  assert.equal(r2.isRunning(), false)
  await r2.start()
  await waitStreaming(r1.port, [r2.name, primary.name])
  await r1.query(`INSERT INTO t VALUES ('three')`)
  await Promise.all([hasRow(r2, 'three'), hasRow(primary, 'three')])
})

test('follow: a standby that replayed past the new timeline\'s fork is rebuilt', { timeout: 60_000 }, async (t) => {
  const { primary, replicas: [r1, r2] } = await startReplicatedCluster(t, { replicas: 2 })
  assert.ok(r1 && r2)
  await primary.query('CREATE TABLE t (v text)')
  await primary.query(`INSERT INTO t VALUES ('both')`)
  await Promise.all([hasRow(r1, 'both'), hasRow(r2, 'both')])
  await r1.stop()
  await primary.query(`INSERT INTO t VALUES ('only r2')`)
  await hasRow(r2, 'only r2')
  primary.kill()
  await r1.start()
  await r1.promote()
  await r1.query(`INSERT INTO t VALUES ('after')`)
  await r2.follow(r1)
  assert.match(r2.log(), /forked off current database system timeline|not in this server's history/)
  await hasRow(r2, 'after')
  assert.deepEqual(await values(r2), ['after', 'both'])
})

test('Patroni: one leader, switchover through REST, failover after kill -9, rejoin', { timeout: 150_000 }, async (t) => {
  const cluster = await startPatroniCluster(t, { nodes: 2 })
  const first = await cluster.leader()
  const other = cluster.nodes.find((n) => n !== first)!
  assert.equal(await other.isLeader(), false)
  assert.equal(await other.isReplica(), true)
  assert.equal((await first.query('SELECT pg_is_in_recovery() AS r'))[0].r, false)

  let started = Date.now()
  assert.equal(await cluster.switchover(other.name), other)
  t.diagnostic(`switchover: ${Date.now() - started} ms`)
  assert.equal((await other.query('SELECT pg_is_in_recovery() AS r'))[0].r, false)
  // The old leader must stream again before it can take over.
  await waitFor(() => first.isReplica(), { timeoutMs: 30_000, intervalMs: 100, what: `${first.name} to run as a replica` })
  await waitStreaming(other.pgPort, [first.name])

  started = Date.now()
  other.kill()
  assert.equal(other.isRunning(), false)
  assert.equal(await cluster.leader(30_000), first)
  const failoverMs = Date.now() - started
  t.diagnostic(`failover after kill -9: ${failoverMs} ms`)
  assert.ok(failoverMs < 25_000, `failover took ${failoverMs} ms`)
  assert.equal((await first.query('SELECT pg_is_in_recovery() AS r'))[0].r, false)

  // It died as leader ahead of the fork point: Patroni must rewind it before it can stream.
  started = Date.now()
  await other.start()
  await waitStreaming(first.pgPort, [other.name], 60_000)
  t.diagnostic(`rejoin: ${Date.now() - started} ms`)
  assert.equal(await cluster.leader(), first)
})

test('Patroni with 3 members: both replicas stream; a switchover to any replica moves the leader', { timeout: 90_000 }, async (t) => {
  const cluster = await startPatroniCluster(t, { nodes: 3 })
  const first = await cluster.leader()
  const next = await cluster.switchover()
  assert.notEqual(next, first)
  await waitFor(() => first.isReplica(), { timeoutMs: 30_000, intervalMs: 100, what: `${first.name} to run as a replica` })
  await waitStreaming(next.pgPort, cluster.nodes.filter((n) => n !== next).map((n) => n.name))
})
