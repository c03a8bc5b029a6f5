// PgBouncer's peering ([peers], peer_id) between tidepool processes: Debian's HAProxy, round-robin in
// TCP mode, in front of two nodes with peer_id 1 and 2 that list each other. A cancel connection
// goes to whichever node HAProxy picks next, so about half land on the node that did not issue the
// key; each must still stop its query (node-postgres keys sent as libpq sends them, and psql's own
// SIGINT). Then with workers = 2 in each node (a key names a peer and a worker). A key nobody owns
// is dropped quietly; a peer that is down or silent costs the cancel, never the node or its clients,
// within cancel_wait_timeout, with a log line; RELOAD applies a changed [peers].
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { spawnTidepool, startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { connectKeyed, psqlInterrupted, sendCancelRequest, waitSleeping, type KeyedClient } from '../harness/cancel.ts'
import { freePort } from '../harness/ports.ts'
import { Daemon, destroy, diagnostics, makeDir, requireBinaries } from '../harness/replication.ts'
import { keyOwner, keyPeerId, withPeerId } from '../../src/proxy/cancel.ts'
import { SqlState } from '../../src/protocol/pg-error.ts'

const HAPROXY = '/usr/sbin/haproxy'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

function connect(t: TestContext, port: number, database = 'app'): Promise<KeyedClient> {
  return connectKeyed(t, pgi, port, database)
}

async function adminRows(t: TestContext, port: number, sql: string): Promise<Array<Record<string, unknown>>> {
  const c = await connect(t, port, 'pgbouncer')
  try {
    return (await c.query(sql)).rows as Array<Record<string, unknown>>
  } finally {
    await c.end().catch(() => {})
  }
}

/** Each node lists both: the same [peers] section in every file, its own entry included (PgBouncer allows it). */
function peersOf(ports: number[]): Record<string, string> {
  return Object.fromEntries(ports.map((p, i) => [String(i + 1), `host=127.0.0.1 port=${p}`]))
}

/** HAProxy, round-robin in TCP mode, in front of `ports`; resolves once it accepts connections. */
async function startHaproxy(t: TestContext, ports: number[]): Promise<number> {
  requireBinaries([HAPROXY])
  const dir = makeDir()
  const port = await freePort()
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, [
    'global', '    maxconn 1024',
    'defaults', '    mode tcp', '    timeout connect 2s', '    timeout client 2m', '    timeout server 2m',
    'frontend postgres', `    bind 127.0.0.1:${port}`, '    default_backend tidepool',
    'backend tidepool', '    balance roundrobin',
    ...ports.map((p, i) => `    server node${i + 1} 127.0.0.1:${p}`),
    '',
  ].join('\n'))
  const haproxy = new Daemon({ asPostgres: false, deathSignal: 'TERM' })
  t.after(() => destroy([haproxy], [dir]))
  diagnostics(t, 'haproxy log', () => haproxy.log())
  haproxy.spawn(HAPROXY, ['-db', '-f', cfg])
  await waitFor(() => new Promise<boolean>((resolve) => {
    if (!haproxy.running()) throw new Error(`haproxy exited:\n${haproxy.log()}`)
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  }), { timeoutMs: 10_000, intervalMs: 50, what: 'HAProxy to accept connections' })
  return port
}

/** Rounds of one sleeping query each, cancelled through `port` with node-postgres's key; every cancel must take effect. */
async function cancelRounds(clients: KeyedClient[], port: number, rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const c = clients[round % clients.length]
    const running = c.query('SELECT pg_sleep(30)').then(() => 'ran to its end', (err: { code?: string }) => err.code ?? 'no code')
    await waitSleeping(pgi, 1)
    // HAProxy alternates strictly: an unowned cancel at the start of every second pass over the
    // clients shifts which node the real ones land on, so each client's cancel lands on both nodes
    // over the passes, whatever the number of clients (a shift every second round repeats with
    // period 4, and with 4 clients a CI run saw every cancel land on its owner).
    if (round % clients.length === 0 && Math.floor(round / clients.length) % 2 === 1) await sendCancelRequest(port, 0, 0)
    await sendCancelRequest(port, c.processID, c.secretKey)
    const code = await Promise.race([running, new Promise((resolve) => setTimeout(() => resolve('not cancelled within 10 s'), 10_000).unref())])
    assert.equal(code, SqlState.QueryCanceled, `round ${round} (key of peer ${keyPeerId(c.processID)})`)
  }
}

function isIdle(r: Record<string, unknown>): boolean {
  return r.cl_active_cancel_req === 0 && r.cl_waiting_cancel_req === 0 && r.sv_active_cancel === 0 && r.sv_login === 0
}

function count(lines: string, needle: string): number {
  return lines.split(needle).length - 1
}

test('[peers] behind HAProxy round-robin: 20 of 20 cancels take effect though about half land on the other node', { timeout: 60_000 }, async (t) => {
  const ports = [await freePort(), await freePort()]
  const nodes: TestTidepool[] = []
  for (const [i, port] of ports.entries()) {
    nodes.push(await startTidepool(t, pgi, { settings: { listen_port: port, peer_id: i + 1, default_pool_size: 4, verbose: 1, admin_users: pgi.user }, peers: peersOf(ports) }))
  }
  const port = await startHaproxy(t, ports)
  const clients: KeyedClient[] = []
  for (let i = 0; i < 4; i++) clients.push(await connect(t, port))
  assert.deepEqual([...new Set(clients.map((c) => keyPeerId(c.processID)))].sort(), [1, 2], 'keys of both peers, in PgBouncer\'s layout')

  await cancelRounds(clients, port, 20)
  const logs = nodes.map((n) => n.logs.join('\n'))
  const crossed = logs.reduce((n, l) => n + count(l, 'cancel request: sent to its peer ['), 0)
  const direct = logs.reduce((n, l) => n + count(l, 'cancel request: forwarded ['), 0)
  t.diagnostic(`20 cancels: ${crossed} landed on the other node and were forwarded to their peer; ${direct - crossed} landed on their own node`)
  assert.ok(crossed >= 5 && crossed <= 15, `about half crossed over: ${crossed}`)
  assert.equal(direct, 20, 'every cancel reached PostgreSQL from the node that owns the key')

  // psql's own cancel: its query connection and its cancel connection are consecutive for HAProxy,
  // so the cancel lands on the other node every time.
  for (let round = 0; round < 3; round++) {
    const { code, stderr: err } = await psqlInterrupted(t, pgi, port)
    assert.equal(code, 1, `psql round ${round}: exit code`)
    assert.match(err, /canceling statement due to user request/, `psql round ${round}`)
  }

  // Nothing stays on its way: every peer pool is empty again.
  for (const n of nodes) {
    await waitFor(async () => (await adminRows(t, n.port, 'SHOW PEER_POOLS')).every(isIdle),
      { timeoutMs: 10_000, what: 'empty peer pools' })
  }
})

test('[peers] with workers = 2 in each node behind HAProxy: 20 of 20 cancels take effect, across nodes and workers', { timeout: 90_000 }, async (t) => {
  const ports = [await freePort(), await freePort()]
  const nodes = []
  for (const [i, p] of ports.entries()) {
    nodes.push(await spawnTidepool(t, pgi, { port: p, settings: { peer_id: i + 1, default_pool_size: 4, verbose: 1 }, peers: peersOf(ports), tidepool: { workers: 2 } }))
  }
  const port = await startHaproxy(t, ports)
  // Clients of every (peer, worker) pair.
  const byOwner = new Map<string, KeyedClient>()
  for (let i = 0; i < 40 && byOwner.size < 4; i++) {
    const c = await connect(t, port)
    byOwner.set(`${keyPeerId(c.processID)}/${keyOwner(c.processID)}`, c)
  }
  assert.deepEqual([...byOwner.keys()].sort(), ['1/0', '1/1', '2/0', '2/1'])
  await cancelRounds([...byOwner.values()], port, 20)
  const out = nodes.map((n) => n.output()).join('\n')
  t.diagnostic(`sent to its peer ${count(out, 'cancel request: sent to its peer')}, sent to its worker ${count(out, 'sent to its worker')}`)
  assert.ok(out.includes('cancel request: sent to its peer'), 'some cancels crossed nodes')
  assert.ok(out.includes('sent to its worker'), 'some crossed workers')
})

test('a key nobody owns is dropped quietly; a peer refusing or silent costs the cancel only, within cancel_wait_timeout', { timeout: 60_000 }, async (t) => {
  // A peer that accepts and never answers nor closes, and a port nobody listens on.
  const silent = net.createServer((s) => { s.on('error', () => {}) })
  const held = new Set<net.Socket>()
  silent.on('connection', (s) => held.add(s))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of held) s.destroy(); silent.close() })
  const silentPort = (silent.address() as net.AddressInfo).port
  const deadPort = await freePort()
  const port = await freePort()
  const tp = await startTidepool(t, pgi, {
    settings: { listen_port: port, peer_id: 1, cancel_wait_timeout: 1, admin_users: pgi.user },
    peers: { 1: `host=127.0.0.1 port=${port}`, 2: `host=127.0.0.1 port=${deadPort}`, 3: `host=127.0.0.1 port=${silentPort} pool_size=1` },
  })
  const c = await connect(t, port)
  const running = c.query('SELECT pg_sleep(1.5), 1 AS done')
  await waitSleeping(pgi, 1)

  // Unknown: a peer id nobody has, this node's id with a key it never issued, the right pid with a wrong secret.
  const started = Date.now()
  assert.equal(await sendCancelRequest(port, withPeerId(12345, 77), 3), 0, 'no peer 77: closed without a byte')
  assert.equal(await sendCancelRequest(port, withPeerId(777, 1), 3), 0, 'own id, unknown key: closed without a byte')
  assert.equal(await sendCancelRequest(port, c.processID, (c.secretKey + 4) | 0), 0, 'wrong secret: closed without a byte')
  // Refused: the cancel is lost, with a log line.
  assert.equal(await sendCancelRequest(port, withPeerId(4242, 2), 3), 0)
  await waitFor(() => tp.logs.some((l) => l.includes('[cancel.peer_failed]') && l.includes('peer 2') && l.includes('ECONNREFUSED')), { timeoutMs: 5_000, what: 'the refused peer logged' })
  // Silent, pool_size 1: one cancel on its way, the next waits for it.
  assert.equal(await sendCancelRequest(port, withPeerId(4343, 3), 3), 0)
  assert.equal(await sendCancelRequest(port, withPeerId(4344, 3), 3), 0)
  assert.ok(Date.now() - started < 2_000, `the client's cancel connections closed at once (${Date.now() - started} ms)`)
  await waitFor(async () => {
    const row = (await adminRows(t, port, 'SHOW PEER_POOLS')).find((r) => r.peer_id === 3)
    return row?.sv_active_cancel === 1 && row.cl_active_cancel_req === 1 && row.cl_waiting_cancel_req === 1
  }, { timeoutMs: 5_000, what: 'one cancel on its way to the silent peer, one waiting' })
  // cancel_wait_timeout (1 s) ends both: the connection times out, the waiter is dropped.
  await waitFor(async () => (await adminRows(t, port, 'SHOW PEER_POOLS')).every(isIdle),
    { timeoutMs: 5_000, what: 'the silent peer\'s pool to empty' })
  assert.ok(tp.logs.some((l) => l.includes('[cancel.peer_failed]') && l.includes('peer 3') && l.includes('no answer in 1000 ms')), 'the silent peer logged')

  // Nothing was cancelled, the node serves on.
  assert.equal((await running).rows[0].done, 1)
  const d = await connect(t, port)
  assert.equal((await d.query('SELECT 3 AS three')).rows[0].three, 3)
})

test('SHOW PEERS lists [peers] with PgBouncer\'s columns; RELOAD applies a changed [peers], a bad line is refused whole', { timeout: 30_000 }, async (t) => {
  const port = await freePort()
  const settings = { listen_port: port, peer_id: 1, default_pool_size: 7, admin_users: pgi.user }
  const tp = await startTidepool(t, pgi, { settings, peers: { 1: `host=127.0.0.1 port=${port}`, 2: 'host=10.0.0.2' } })
  const peers = async () => (await adminRows(t, port, 'SHOW PEERS')).map((r) => `${r.peer_id} ${r.host} ${r.port} ${r.pool_size}`)
  assert.deepEqual(await peers(), [`1 127.0.0.1 ${port} 7`, '2 10.0.0.2 6432 7'], 'port 6432 and default_pool_size when not given')
  assert.deepEqual((await adminRows(t, port, 'SHOW PEER_POOLS')).map((r) => r.peer_id), [1, 2])

  tp.rewrite({ settings, peers: { 1: `host=127.0.0.1 port=${port}`, 2: 'host=10.0.0.22 port=7000', 3: 'host=/tmp/tp-peer-3 pool_size=2' } })
  await adminRows(t, port, 'RELOAD')
  assert.deepEqual(await peers(), [`1 127.0.0.1 ${port} 7`, '2 10.0.0.22 7000 7', '3 /tmp/tp-peer-3 6432 2'])
  assert.ok(tp.logs.some((l) => l.includes('[config.reloaded]') && l.includes('peers.2') && l.includes('peers.3')), 'RELOAD names the changed peers')

  tp.rewrite({ settings, peers: { 1: 'host=10.0.0.1 sslmode=require' } })
  await assert.rejects(adminRows(t, port, 'RELOAD'), /RELOAD failed|unknown peer parameter/)
  assert.equal((await peers()).length, 3, 'the old [peers] stays')
  assert.ok(tp.logs.some((l) => l.includes("unknown peer parameter 'sslmode'")), 'the bad line is named')
})
