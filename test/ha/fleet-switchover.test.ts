// FLEET SWITCHOVER on the Patroni lab (test/harness/patroni.ts: Patroni 3.0, etcd, two PostgreSQL
// 15 members) with three tidepool nodes in one fleet on the lab's etcd (two in this process, one a
// child that can be killed), each under its own load of node-postgres clients and pgbench in
// transaction mode.
// A switchover from the console: every node holds, the initiator promotes through Patroni, every
// node retargets; no transaction fails, every node's writes go to the new primary, and the stall
// (the longest any node held) is reported beside Patroni's own promote time. The CLI switches back;
// HTTP refuses a bad target. A node record that never answers aborts the switchover with an error
// naming it; an initiator killed mid-hold leaves the others holding only until the deadline; a
// second switchover of the same database while one runs loses the election.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Etcd3 } from 'etcd3'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runPgbench, waitFor } from '../harness/clients.ts'
import { asInstance, FRONT_SETTINGS, FRONT_TIDEPOOL, frontDatabase, startPatroniCluster, type PatroniNode } from '../harness/patroni.ts'
import { pgQuery, SUPERUSER, waitStreaming } from '../harness/replication.ts'
import { spawnTidepool, startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { connectClient, describeLoad, LOAD_TABLE_SQL, startLoad, type Load } from '../harness/load.ts'
import { adminQuery, fleetKeys, runCli } from '../harness/fleet.ts'
import { freePort } from '../harness/ports.ts'
import type { PgInstance } from '../harness/postgres.ts'

async function consoleError(pgi: PgInstance, port: number, sql: string): Promise<string> {
  try {
    await adminQuery(pgi, port, sql)
  } catch (err) {
    return (err as Error).message
  }
  return '(no error)'
}

/** host:port of the member each node's checks call primary, from SHOW HOSTS. */
async function primaryOf(pgi: PgInstance, port: number): Promise<string | null> {
  const rows = await adminQuery(pgi, port, 'SHOW HOSTS')
  const p = rows.find((r) => r.role === 'primary' && r.health === 'up')
  return p === undefined ? null : `${p.host}:${p.port}`
}

test('FLEET SWITCHOVER: 3 tidepool nodes in front of Patroni under load, 0 failed; a node that does not answer, a killed initiator and a second initiator', { timeout: 240_000 }, async (t) => {
  const cluster = await startPatroniCluster(t, { nodes: 2 })
  const first = await cluster.leader()
  const second = cluster.nodes.find((n) => n !== first)!
  await pgQuery(first.pgPort, LOAD_TABLE_SQL, [], 'app')
  const pgi = asInstance(first)
  const app = frontDatabase(cluster)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const node = (name: string, extra: Record<string, string | number> = {}) => ({ settings: FRONT_SETTINGS, databases: { app }, tidepool: { ...FRONT_TIDEPOOL, ...fleetKeys(cluster.etcd, fleet, name, 10), ...extra } })
  const httpPort = await freePort()
  const a = await startTidepool(t, pgi, node('a', { http_listen_port: httpPort, http_token: 'tok' }))
  const b = await startTidepool(t, pgi, node('b'))
  const c = await spawnTidepool(t, pgi, { port: await freePort(), ...node('c') })
  const ports = { a: a.port, b: b.port, c: c.port }
  const key = (n: PatroniNode) => `${n.host}:${n.pgPort}`
  for (const port of Object.values(ports)) {
    await waitFor(async () => (await adminQuery(pgi, port, 'SHOW FLEET')).filter((r) => r.state === 'up').length === 3, { timeoutMs: 20_000, intervalMs: 100, what: `node on ${port} to list 3 nodes up` })
    await waitFor(async () => (await primaryOf(pgi, port)) === key(first), { timeoutMs: 20_000, intervalMs: 100, what: `node on ${port} to see ${first.name} primary` })
  }

  const loads = new Map<string, Load>()
  for (const [name, port] of Object.entries(ports)) {
    const load = startLoad({ clients: 2, connect: () => connectClient(port) })
    t.after(() => load.stop())
    loads.set(name, load)
  }
  const progress = (n: number, names = [...loads.keys()]) => Promise.all(names.map((x) => loads.get(x)!.progress(n, 30_000)))
  await progress(10)

  // --- the switchover, from a's console, with pgbench beside the node-postgres clients on every node ---
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pgbench-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tx.sql'), '\\set n random(1, 1000000)\nBEGIN;\nINSERT INTO load_tx (client, seq, port) VALUES (-1, :n, inet_server_port());\nEND;\n')
  const benches = Object.entries(ports).map(([name, port]) => runPgbench({
    port, user: SUPERUSER.user, password: SUPERUSER.password, db: 'app',
    args: ['-n', '-f', join(dir, 'tx.sql'), '-c', '2', '-j', '1', '-T', '8', '-l', `--log-prefix=${join(dir, `pgb-${name}`)}`],
    timeoutMs: 60_000,
  }))
  await new Promise((r) => setTimeout(r, 2_000))
  const before = Date.now()
  const rows = await adminQuery(pgi, a.port, `FLEET SWITCHOVER app TO ${second.name} TIMEOUT 30`)
  const after = Date.now()
  await progress(10)
  const benched = await Promise.all(benches)
  for (const [i, name] of Object.keys(ports).entries()) {
    const b = benched[i]!
    const latencies = readdirSync(dir).filter((f) => f.startsWith(`pgb-${name}`)).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
      .filter((l) => l !== '').map((l) => Number(l.split(' ')[2]) / 1000)
    t.diagnostic(`pgbench through ${name}: exit ${b.code}, tps ${b.tps}, ${latencies.length} transactions, longest ${Math.round(latencies.reduce((m, v) => Math.max(m, v), 0))} ms`)
    assert.equal(b.code, 0, b.stderr)
    assert.doesNotMatch(b.stderr, /aborted/)
  }
  assert.deepEqual(rows.map((r) => [r.node, r.outcome]), [['a', 'ok'], ['b', 'ok'], ['c', 'ok']])
  assert.equal(await second.isLeader(), true)
  const promoteLine = a.logs.find((l) => /switchover app: promote took \d+ ms \(through Patroni\)/.test(l))
  assert.ok(promoteLine !== undefined, 'the initiator promoted through Patroni')
  const patroniMs = Number(/promote took (\d+) ms/.exec(promoteLine)![1])
  const held = rows.map((r) => Number(r.held_ms))
  const stalls = [...loads].map(([name, l]) => `${name}: ${describeLoad(l.stats)}`)
  t.diagnostic(`FLEET SWITCHOVER to ${second.name} in ${after - before} ms: held ${rows.map((r) => `${r.node}=${r.held_ms} ms (${r.phases})`).join(', ')}; max held ${Math.max(...held)} ms vs Patroni's promote ${patroniMs} ms`)
  for (const s of stalls) t.diagnostic(s)
  for (const [name, l] of loads) {
    assert.equal(l.stats.failed, 0, `${name}: ${JSON.stringify(l.stats.failures.slice(0, 3))}`)
    assert.equal(l.stats.reconnects, 0, name)
    // Writes through every node now go to the new primary, and none to the old one since the answer.
    assert.ok(l.stats.servedBy.get(second.pgPort)!.count > 0, `${name} writes to ${second.name}`)
    assert.ok(l.stats.servedBy.get(first.pgPort)!.lastMs < after, `${name}: no write on ${first.name} after the switchover`)
    assert.ok(l.stats.longestStallMs < Math.max(...held) + 1_000, `${name}: stall ${l.stats.longestStallMs} ms`)
  }
  for (const port of Object.values(ports)) assert.equal(await primaryOf(pgi, port), key(second))
  // tidepool's part beyond Patroni's: holding everywhere and retargeting everywhere.
  assert.ok(Math.max(...held) < patroniMs + 2_000, `held ${Math.max(...held)} ms, Patroni ${patroniMs} ms`)

  // --- the CLI switches back, through b, once the old primary streams again ---
  await waitFor(() => first.isReplica(), { timeoutMs: 60_000, intervalMs: 100, what: `${first.name} to run as a replica` })
  await waitStreaming(second.pgPort, [first.name], 60_000)
  for (const port of Object.values(ports)) {
    await waitFor(async () => (await adminQuery(pgi, port, 'SHOW HOSTS')).some((r) => `${r.host}:${r.port}` === key(first) && r.role === 'replica' && r.health === 'up'),
      { timeoutMs: 20_000, intervalMs: 100, what: `node on ${port} to see ${first.name} as a replica` })
  }
  const cli = await runCli(['fleet', 'switchover', 'app', '--to', first.name, '--timeout', '30', '--host', '127.0.0.1', '--port', String(b.port), '--user', SUPERUSER.user], { PGPASSWORD: SUPERUSER.password }, 60_000)
  assert.equal(cli.code, 0, cli.stdout + cli.stderr)
  assert.match(cli.stdout, /^node=a {2}outcome=ok {2}held_ms=\d+ {2}ms=\d+ {2}phases=hold=\d+ drain=\d+ promote=\d+ retarget=\d+ resume=\d+$/m)
  assert.match(cli.stdout, /^node=c {2}outcome=ok/m)
  assert.equal(await first.isLeader(), true)
  await progress(5)
  for (const [name, l] of loads) assert.equal(l.stats.failed, 0, `${name} after the switch back: ${JSON.stringify(l.stats.failures.slice(0, 3))}`)

  // --- HTTP: a bad target is refused before anyone holds ---
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/fleet?cmd=switchover&db=app&to=nosuchhost`, { method: 'POST', headers: { authorization: 'Bearer tok' } })
  const body = await res.json() as { error?: string }
  assert.equal(res.status, 409, JSON.stringify(body))
  assert.match(body.error ?? '', /no host "nosuchhost" in database app/)

  // --- a node that does not answer: a record in etcd with no tidepool behind it ---
  const etcd = new Etcd3({ hosts: cluster.etcd.clientUrl })
  t.after(() => etcd.close())
  const ghostLease = etcd.lease(120, { autoKeepAlive: false })
  await ghostLease.grant()
  t.after(() => ghostLease.revoke().catch(() => {}))
  const ghost = { name: 'ghost', region: '', address: '127.0.0.1:1', version: '0', config_version: '0', clients: 0, servers: 0, tps: 0, heartbeat_ms: Date.now(), started_ms: Date.now(), peer_id: 0 }
  await ghostLease.put(`${fleet}/nodes/ghost`).value(JSON.stringify(ghost))
  const abortStart = Date.now()
  const err = await consoleError(pgi, b.port, 'FLEET SWITCHOVER app TIMEOUT 4')
  const abortMs = Date.now() - abortStart
  assert.match(err, /^FLEET SWITCHOVER app: no answer from ghost within 4000 ms \(no hold from ghost within 2400 ms\)$/)
  assert.equal(await first.isLeader(), true, 'nobody promoted')
  t.diagnostic(`a node that does not answer: error after ${abortMs} ms: ${err}`)
  for (const [name, tp] of [['a', a], ['b', b]] as Array<[string, TestTidepool]>) {
    const r = tp.rt.switchovers.get('app')!
    assert.match(r.error ?? '', /aborted by b: no hold from ghost/, name)
    assert.ok(r.totalMs < 3_500, `${name} held ${r.totalMs} ms`)
  }
  await progress(5)

  // --- an initiator killed mid-hold: the others hold only until the deadline ---
  // c's clients go first: held there, they would wait for the very release this part is about.
  await loads.get('c')!.stop()
  loads.delete('c')
  void adminQuery(pgi, c.port, 'FLEET SWITCHOVER app TIMEOUT 4').catch(() => {})
  await waitFor(async () => {
    const keys = await etcd.getAll().prefix(`${fleet}/acks/`).keys()
    return keys.some((k) => k.endsWith('.held/a')) && keys.some((k) => k.endsWith('.held/b'))
  }, { timeoutMs: 10_000, intervalMs: 20, what: 'a and b to hold for c' })
  // Meanwhile a second initiator loses the election: one fleet switchover of a database at a time.
  assert.match(await consoleError(pgi, a.port, 'FLEET SWITCHOVER app TIMEOUT 4'), /a fleet switchover of app is running \(started by c\)/)
  c.proc.kill('SIGKILL')
  const killedAt = Date.now()
  await waitFor(() => [a, b].every((tp) => /no promotion from c by the deadline/.test(tp.rt.switchovers.get('app')?.error ?? '')),
    { timeoutMs: 10_000, intervalMs: 20, what: 'a and b to release at the deadline' })
  const releasedAfter = Date.now() - killedAt
  for (const [name, tp] of [['a', a], ['b', b]] as Array<[string, TestTidepool]>) {
    const r = tp.rt.switchovers.get('app')!
    t.diagnostic(`initiator killed: ${name} held ${r.totalMs} ms (${r.phases.map((p) => `${p.name}=${p.ms}`).join(' ')})`)
    assert.ok(r.totalMs >= 3_500 && r.totalMs < 5_000, `${name} released at the 4 s deadline (held ${r.totalMs} ms)`)
  }
  t.diagnostic(`initiator killed mid-hold: a and b released ${releasedAfter} ms after the kill`)
  await progress(5)
  for (const [name, l] of loads) assert.equal(l.stats.failed, 0, `${name}: ${JSON.stringify(l.stats.failures.slice(0, 3))}`)
  assert.equal(await first.isLeader(), true, 'nobody promoted')

  // --- the command's lease revoked mid-hold (as when the initiator's lease is gone): release at once ---
  // The dead initiator's election key lives on with its lease (deadline + 5 s): until then a new one is refused.
  assert.match(await consoleError(pgi, a.port, 'FLEET SWITCHOVER app TIMEOUT 10'), /a fleet switchover of app is running \(started by c\)/)
  await waitFor(async () => (await etcd.get(`${fleet}/switchover/app`).string()) === null, { timeoutMs: 15_000, intervalMs: 50, what: 'c\'s election key to expire with its lease' })
  const asked = adminQuery(pgi, a.port, 'FLEET SWITCHOVER app TIMEOUT 10').then((rows) => JSON.stringify(rows), (e: Error) => e.message)
  let lease = ''
  await waitFor(async () => {
    // c's command may still be there (its lease outlives its deadline): a's is the one from a.
    const cmd = Object.values(await etcd.getAll().prefix(`${fleet}/commands/`).strings()).map((v) => JSON.parse(v) as { id: string; from: string; lease: string }).find((x) => x.from === 'a')
    lease = cmd?.lease ?? ''
    return cmd !== undefined && (await etcd.get(`${fleet}/acks/${cmd.id}.held/b`).string()) !== null
  }, { timeoutMs: 10_000, intervalMs: 20, what: 'b to hold for a' }).catch(async (err: Error) => { throw new Error(`${err.message}; a answered: ${await asked}`) })
  const revokedAt = Date.now()
  await etcd.leaseClient.leaseRevoke({ ID: lease })
  await waitFor(() => /the command vanished/.test(b.rt.switchovers.get('app')?.error ?? ''), { timeoutMs: 5_000, intervalMs: 10, what: 'b to release when the command vanished' })
  const vanishedMs = Date.now() - revokedAt
  t.diagnostic(`command lease revoked mid-hold: b released ${vanishedMs} ms later (held ${b.rt.switchovers.get('app')!.totalMs} ms of a 10 s deadline); a answered: ${await asked}`)
  assert.ok(vanishedMs < 1_000, `released ${vanishedMs} ms after the revoke`)
  assert.match(await asked, /the command left etcd while the nodes held/)
  await progress(5)
  for (const [name, l] of loads) assert.equal(l.stats.failed, 0, `${name}: ${JSON.stringify(l.stats.failures.slice(0, 3))}`)
})
