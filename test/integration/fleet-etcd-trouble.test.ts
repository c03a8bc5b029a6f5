// etcd trouble under load (issue 19 item 6): three tidepool nodes (child processes) in one fleet on a
// 3-member etcd (Debian's etcd-server, test/harness/etcd.ts), node-postgres clients writing through
// all three. (a) The etcd leader is killed (SIGKILL): no transaction fails, no node leaves SHOW FLEET
// or needs a new lease, and once a new leader is elected a FLEET PAUSE/RESUME and a `fleet push`
// succeed at the first try. (b) Every etcd member is stopped: no transaction fails, each node says
// etcd is unreachable (SHOW FLEET, tidepool_fleet_etcd_up, fleet.etcd_lost) while /ready stays 200, a
// push and a fleet command are refused; the members come back: every node registers again and the
// next push applies everywhere. (c) A shared config that is JSON but does not load is refused with a
// log line and the last good version kept (the other kinds of bad data: fleet-config.test.ts).
// Times (election, recovery, catch-up) are reported as diagnostics, not asserted.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { Etcd3 } from 'etcd3'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { writeConfig, type ChildTidepool } from '../harness/tidepool.ts'
import { startEtcdCluster } from '../harness/etcd.ts'
import { adminQuery, runCli, spawnNode } from '../harness/fleet.ts'
import { waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { LOAD_TABLE_SQL, connectClient, describeLoad, startLoad } from '../harness/load.ts'
import { configKey } from '../../src/ha/fleet/shared-config.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

// Short enough that a node needing a new lease during the drill would show; long enough for an election.
const TTL_S = 3
const NAMES = ['a', 'b', 'c']

interface Node { name: string; child: ChildTidepool; httpPort: number }

async function metric(httpPort: number, name: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? null : Number(m[1])
}

async function configVersion(port: number): Promise<string | null> {
  return (await adminQuery(pgi, port, 'SHOW FLEET'))[0]?.config_version ?? null
}

/** `tidepool fleet push file` succeeds as `version`, and every node runs it. */
async function pushApplied(file: string, nodes: Node[], version: string): Promise<void> {
  const pushed = await runCli(['fleet', 'push', file])
  assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr)
  assert.match(pushed.stdout, new RegExp(`pushed as version ${version} of fleet`))
  for (const n of nodes) await waitFor(async () => (await configVersion(n.child.port)) === version, { timeoutMs: 10_000, intervalMs: 20, what: `${n.name} to run version ${version}` })
}

function hasLine(log: string, event: string, text = ''): boolean {
  return log.split('\n').some((l) => l.includes(`[${event}]`) && l.includes(text))
}

function countLines(log: string, event: string): number {
  return log.split('\n').filter((l) => l.includes(`[${event}]`)).length
}

test('etcd trouble under load: leader killed, then every member stopped; no transaction fails, nodes stay, catch up; a config that does not load is refused', { timeout: 240_000 }, async (t) => {
  const cluster = await startEtcdCluster(t, 3)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const nodes: Node[] = []
  for (const name of NAMES) {
    const httpPort = await freePort()
    nodes.push({ name, httpPort, child: await spawnNode(t, pgi, cluster, fleet, name, TTL_S, { http_listen_port: httpPort }) })
  }
  for (const n of nodes) {
    await waitFor(async () => (await adminQuery(pgi, n.child.port, 'SHOW FLEET')).filter((r) => r.state === 'up').length === 3, { timeoutMs: 30_000, intervalMs: 100, what: `${n.name} to list 3 nodes up` })
  }

  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-trouble-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  /** A file to push: the nodes' own databases, and the given pool size. */
  const pushFile = (poolSize: number): string => {
    const d = fs.mkdtempSync(join(dir, 'push-'))
    return writeConfig(d, pgi, { settings: { admin_users: pgi.user, default_pool_size: poolSize }, tidepool: { fleet_etcd: cluster.endpoint, fleet_name: fleet } })
  }

  const direct = new pg.Client({ host: '127.0.0.1', port: pgi.port, database: 'app', user: pgi.user, password: pgi.password })
  await direct.connect()
  t.after(() => direct.end().catch(() => {}))
  await direct.query(LOAD_TABLE_SQL)
  const load = startLoad({
    clients: 6,
    thinkMs: 5,
    // The superuser of the test PostgreSQL, which pgi.user is.
    connect: (i) => connectClient(nodes[i % 3]!.child.port),
  })
  let isLoadStopped = false
  t.after(async () => { if (!isLoadStopped) await load.stop() })
  await load.progress(5, 20_000)

  // Through both drills: every node lists all three nodes (up, or last seen while cut off), never fewer.
  const missing: string[] = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      for (const n of nodes) {
        const names = (await adminQuery(pgi, n.child.port, 'SHOW FLEET').catch(() => [])).map((r) => r.name).sort().join(',')
        if (names !== '' && names !== 'a,b,c' && missing.length < 20) missing.push(`${new Date().toISOString()} ${n.name} lists ${names}`)
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  })()
  t.after(async () => { sampling = false; await sampler })

  // (a) The leader dies.
  const leader = await cluster.leader()
  assert.ok(leader !== null, 'the cluster has a leader')
  const killedAt = Date.now()
  cluster.members[leader].kill()
  await waitFor(async () => { const l = await cluster.leader(); return l !== null && l !== leader }, { timeoutMs: 20_000, intervalMs: 20, what: 'a new etcd leader' })
  const electedMs = Date.now() - killedAt
  const paused = await adminQuery(pgi, nodes[0]!.child.port, 'FLEET PAUSE app')
  assert.deepEqual(paused.map((r) => [r.node, r.outcome]), [['a', 'ok'], ['b', 'ok'], ['c', 'ok']])
  const resumed = await adminQuery(pgi, nodes[1]!.child.port, 'FLEET RESUME app')
  assert.deepEqual(resumed.map((r) => r.outcome), ['ok', 'ok', 'ok'])
  const commandsMs = Date.now() - killedAt
  await pushApplied(pushFile(6), nodes, '1')
  const pushedMs = Date.now() - killedAt
  await load.progress(5, 20_000)
  for (const n of nodes) {
    assert.ok(!hasLine(n.child.output(), 'fleet.lease_renewed'), `${n.name} kept its lease through the election`)
    assert.ok(!hasLine(n.child.output(), 'fleet.etcd_restored', 'under a new lease'), `${n.name} needed no new lease`)
  }
  // A heartbeat that falls in the election may fail (reported, not asserted): the lines say which call.
  const lostInA = nodes.map((n) => `${n.name} ${countLines(n.child.output(), 'fleet.etcd_lost')}`).join(', ') +
    nodes.flatMap((n) => n.child.output().split('\n').filter((l) => l.includes('[fleet.etcd_lost]')).map((l) => `\n  ${n.name}: ${l}`)).join('')
  assert.equal(load.stats.failed, 0, describeLoad(load.stats))
  t.diagnostic(`leader ${cluster.members[leader].name} killed: new leader after ${electedMs} ms; FLEET PAUSE+RESUME done ${commandsMs} ms after the kill; push applied on all 3 ${pushedMs} ms after; fleet.etcd_lost lines per node: ${lostInA}; load: ${describeLoad(load.stats)}`)
  await cluster.members[leader].start()
  await waitFor(async () => (await cluster.leader()) !== null, { timeoutMs: 20_000, intervalMs: 50, what: 'the cluster whole again' })

  // (b) Every member goes.
  const okBefore = load.stats.ok
  const stopStartedAt = Date.now()
  await cluster.stopAll()
  const stoppedAt = Date.now()
  for (const n of nodes) {
    await waitFor(async () => (await adminQuery(pgi, n.child.port, 'SHOW FLEET'))[0]?.state === 'etcd unreachable', { timeoutMs: 20_000, intervalMs: 50, what: `${n.name} to report etcd unreachable` })
  }
  const detectedMs = Date.now() - stoppedAt
  for (const n of nodes) {
    const rows = await adminQuery(pgi, n.child.port, 'SHOW FLEET')
    assert.deepEqual(rows.map((r) => r.state), ['etcd unreachable', 'unknown', 'unknown'], `${n.name}: itself cut off, the others as last seen`)
    assert.equal(await metric(n.httpPort, 'tidepool_fleet_etcd_up'), 0)
    assert.ok(hasLine(n.child.output(), 'fleet.etcd_lost', 'etcd unreachable'), `${n.name} logs the loss`)
    assert.equal((await fetch(`http://127.0.0.1:${n.httpPort}/ready`)).status, 200, `${n.name}: /ready stays 200`)
    assert.equal(await configVersion(n.child.port), '1', `${n.name} keeps its last config`)
  }
  const refusedPush = await runCli(['fleet', 'push', pushFile(7)])
  assert.notEqual(refusedPush.code, 0, 'no push without etcd: ' + refusedPush.stdout + refusedPush.stderr)
  await assert.rejects(adminQuery(pgi, nodes[2]!.child.port, 'FLEET PAUSE app'), /etcd unreachable/)
  await load.progress(10, 20_000)
  const outageOk = load.stats.ok - okBefore

  const startedAt = Date.now()
  await cluster.startAll()
  const quorumMs = Date.now() - startedAt
  for (const n of nodes) {
    await waitFor(async () => (await adminQuery(pgi, n.child.port, 'SHOW FLEET')).filter((r) => r.state === 'up').length === 3, { timeoutMs: 30_000, intervalMs: 50, what: `${n.name} to list 3 nodes up again` })
    assert.ok(hasLine(n.child.output(), 'fleet.etcd_restored'), `${n.name} logs the return`)
    assert.equal(await metric(n.httpPort, 'tidepool_fleet_etcd_up'), 1)
  }
  const rejoinedMs = Date.now() - startedAt
  const pushStartMs = Date.now()
  await pushApplied(pushFile(8), nodes, '2')
  const appliedMs = Date.now() - pushStartMs
  await load.progress(5, 20_000)
  t.diagnostic(`every etcd member stopped (SIGTERM; gone after ${stoppedAt - stopStartedAt} ms): all 3 nodes said so ${detectedMs} ms after; ${outageOk} transactions committed meanwhile; members started: quorum after ${quorumMs} ms, all 3 nodes up again ${rejoinedMs} ms after the start; next push applied on all 3 in ${appliedMs} ms`)

  // (c) JSON that is a record but whose config does not load: refused by each node, version 2 kept.
  const client = new Etcd3({ hosts: cluster.clientUrls })
  t.after(() => client.close())
  await client.put(configKey(fleet)).value(JSON.stringify({ version: 50, pushed_ms: Date.now(), pushed_by: 'someone', source: 'x.ini', entries: [['pgbouncer', 'default_pool_size', 'lots']] }))
  for (const n of nodes) {
    await waitFor(() => hasLine(n.child.output(), 'fleet.config_refused', 'default_pool_size'), { timeoutMs: 10_000, intervalMs: 50, what: `${n.name} to refuse the unloadable config` })
    assert.equal(await configVersion(n.child.port), '2', `${n.name} keeps version 2`)
  }

  const stats = await load.stop()
  isLoadStopped = true
  sampling = false
  await sampler
  assert.deepEqual(missing, [], 'no node ever listed fewer than all three')
  assert.equal(stats.failed, 0, describeLoad(stats))
  assert.ok(stats.servedBy.size >= 1 && stats.ok > 0)
  t.diagnostic(`load over the whole test: ${describeLoad(stats)}`)
})
