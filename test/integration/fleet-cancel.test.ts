// Cancel anywhere in a fleet (issue #19 item 5), through a real etcd (test/harness/etcd.ts): three
// nodes with no peer_id of their own each take a distinct peer id from etcd (a key under their
// lease), and every node's advertised address serves the others as its [peers] entry. A cancel for
// a query on one node, sent to either of the other two, takes effect. A static [peers] entry lives
// beside the fleet's (which wins on a clash: test/unit/cancel-keys.test.ts); a node that leaves
// stops being a peer.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Etcd3 } from 'etcd3'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { startEtcd } from '../harness/etcd.ts'
import { freePort } from '../harness/ports.ts'
import { waitFor } from '../harness/clients.ts'
import { connectKeyed, sendCancelRequest, waitSleeping, type KeyedClient } from '../harness/cancel.ts'
import { keyPeerId } from '../../src/proxy/cancel.ts'
import { SqlState } from '../../src/protocol/pg-error.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

function connect(t: TestContext, port: number, database = 'app'): Promise<KeyedClient> {
  return connectKeyed(t, pgi, port, database)
}

async function showPeers(t: TestContext, port: number): Promise<string[]> {
  const c = await connect(t, port, 'pgbouncer')
  try {
    return ((await c.query('SHOW PEERS')).rows as Array<Record<string, unknown>>).map((r) => `${r.peer_id} ${r.host}:${r.port}`)
  } finally {
    await c.end().catch(() => {})
  }
}

test('fleet of 3: peer ids from etcd, addresses from the fleet; a cancel sent to a node that does not own the key takes effect', { timeout: 90_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const staticPort = await freePort()
  const nodes: Array<TestTidepool & { name: string }> = []
  for (const name of ['a', 'b', 'c']) {
    const port = await freePort()
    const tp = await startTidepool(t, pgi, {
      settings: { listen_port: port, admin_users: pgi.user, verbose: 1 },
      tidepool: { fleet_etcd: etcd.endpoint, fleet_name: fleet, node_name: name, node_advertise: `127.0.0.1:${port}`, fleet_lease_ttl: 2 },
      // A static entry beside the fleet's (an id the fleet does not reach: [peers] would win on a clash).
      ...(name === 'a' ? { peers: { 100: `host=127.0.0.1 port=${staticPort}` } } : {}),
    })
    nodes.push(Object.assign(tp, { name }))
  }
  const [a, b, c] = nodes
  // Every node lists the two others by their advertised address (a also its static peer 100).
  for (const n of nodes) {
    await waitFor(async () => {
      const others = nodes.filter((o) => o !== n).map((o) => `127.0.0.1:${o.port}`)
      const rows = await showPeers(t, n.port)
      return rows.length === (n === a ? 3 : 2) && others.every((addr) => rows.some((r) => r.endsWith(` ${addr}`)))
    }, { timeoutMs: 20_000, intervalMs: 100, what: `node ${n.name} to list the others as peers` })
  }
  assert.ok((await showPeers(t, a.port)).includes(`100 127.0.0.1:${staticPort}`), 'a keeps its static peer')

  // One id per node, held in etcd under each node's lease.
  const clients = new Map<TestTidepool, KeyedClient>()
  for (const n of nodes) clients.set(n, await connect(t, n.port))
  const ids = nodes.map((n) => keyPeerId(clients.get(n)!.processID))
  assert.equal(new Set(ids).size, 3, `distinct peer ids: ${ids.join(', ')}`)
  assert.ok(!ids.includes(0), 'every node has one')
  const etcdClient = new Etcd3({ hosts: `http://${etcd.endpoint}` })
  t.after(() => etcdClient.close())
  const held = await etcdClient.getAll().prefix(`${fleet}/peer_ids/`).exec()
  assert.deepEqual(held.kvs.map((kv) => `${kv.key.toString().slice(fleet.length + 10)}=${kv.value.toString()}`).sort(),
    nodes.map((n, i) => `${ids[i]}=${n.name}`).sort())
  assert.ok(held.kvs.every((kv) => kv.lease !== '0'), 'attached to a lease')

  // Each node's query, cancelled through each of the two other nodes.
  for (const owner of nodes) {
    for (const via of nodes.filter((n) => n !== owner)) {
      const cl = clients.get(owner)!
      const running = cl.query('SELECT pg_sleep(30)').then(() => 'ran to its end', (err: { code?: string }) => err.code ?? 'no code')
      await waitSleeping(pgi, 1)
      await sendCancelRequest(via.port, cl.processID, cl.secretKey)
      const code = await Promise.race([running, new Promise((resolve) => setTimeout(() => resolve('not cancelled within 10 s'), 10_000).unref())])
      assert.equal(code, SqlState.QueryCanceled, `${owner.name}'s query cancelled through ${via.name}`)
      assert.ok(via.logs.some((l) => l.includes('cancel request: sent to its peer')), `${via.name} forwarded it`)
    }
  }

  // A node that leaves is no peer any more.
  await c.rt.shutdown('immediate')
  await waitFor(async () => !(await showPeers(t, b.port)).some((r) => r.endsWith(`:${c.port}`)), { timeoutMs: 20_000, intervalMs: 100, what: 'c to leave b\'s peers' })
})
