// Fleet membership through a real etcd (Debian's etcd-server, test/harness/etcd.ts): three nodes
// (two in-process, one a child process so it can crash) join one etcd and each lists all three in
// SHOW FLEET, /api/fleet.json and /metrics; a crashed node disappears when its lease expires, one
// that shuts down at once. etcd gone: nodes serve on and say so (state, log, metric; /ready 200);
// etcd back: they register again. Short leases (2 s) keep it quick; waits are bounded conditions.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import pg from 'pg'
import { Etcd3 } from 'etcd3'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { spawnTidepool, startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { startEtcd, type Etcd } from '../harness/etcd.ts'
import { freePort } from '../harness/ports.ts'
import { waitFor } from '../harness/clients.ts'
import { makeCerts } from '../harness/certs.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const TTL_S = 2

type FleetRow = Record<string, string | null>

/** SHOW FLEET through the admin console of the node listening on `port`. */
async function showFleet(port: number): Promise<FleetRow[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query('SHOW FLEET')).rows as FleetRow[]
  } finally {
    await c.end().catch(() => {})
  }
}

async function namesIn(port: number, state = 'up'): Promise<string> {
  return (await showFleet(port)).filter((r) => r.state === state).map((r) => r.name).sort().join(',')
}

async function metric(httpPort: number, name: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? null : Number(m[1])
}

function fleetKeys(etcd: Etcd, fleet: string, name: string): Record<string, string | number> {
  return { fleet_etcd: etcd.endpoint, fleet_name: fleet, node_name: name, node_region: `region-${name}`, node_advertise: `${name}.example:6432`, fleet_lease_ttl: TTL_S }
}

async function startNode(t: Parameters<typeof startTidepool>[0], etcd: Etcd, fleet: string, name: string): Promise<TestTidepool & { httpPort: number }> {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { ...fleetKeys(etcd, fleet, name), http_listen_port: httpPort } })
  return Object.assign(tp, { httpPort })
}

test('three nodes join one etcd: each lists all three; a crashed node goes when its lease expires, a stopped one at once', { timeout: 90_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const a = await startNode(t, etcd, fleet, 'a')
  const b = await startNode(t, etcd, fleet, 'b')
  const c = await spawnTidepool(t, pgi, { port: await freePort(), settings: { admin_users: pgi.user }, tidepool: fleetKeys(etcd, fleet, 'c') })
  for (const port of [a.port, b.port, c.port]) {
    await waitFor(async () => (await namesIn(port)) === 'a,b,c', { timeoutMs: 20_000, intervalMs: 100, what: `node on ${port} to list a,b,c` })
  }
  const rows = await showFleet(b.port)
  assert.equal(rows[0].name, 'b', 'the asking node comes first')
  const rowA = rows.find((r) => r.name === 'a')!
  assert.equal(rowA.region, 'region-a')
  assert.equal(rowA.address, 'a.example:6432')
  assert.equal(rowA.version, '0.1.0')
  assert.match(rowA.config_version ?? '', /^[0-9a-f]{12}$/)
  // Same [databases] and pool settings: the same config version, whatever each node's own keys say.
  assert.equal(new Set(rows.map((r) => r.config_version)).size, 1)
  assert.ok(Date.now() - Date.parse(rowA.last_heartbeat ?? '') < 20_000, `fresh heartbeat: ${rowA.last_heartbeat}`)

  // Load travels with the heartbeat: a client and its server on a show in b's view.
  const app = await a.connect(t)
  await app.query('SELECT 1')
  await waitFor(async () => {
    const r = (await showFleet(b.port)).find((x) => x.name === 'a')
    return r !== undefined && Number(r.clients) >= 1 && Number(r.servers) >= 1
  }, { timeoutMs: 10_000, intervalMs: 100, what: "a's clients and servers in b's SHOW FLEET" })

  const json = await (await fetch(`http://127.0.0.1:${a.httpPort}/api/fleet.json`)).json() as Array<Record<string, unknown>>
  assert.deepEqual(json.map((r) => r.name).sort(), ['a', 'b', 'c'])
  assert.ok(json.every((r) => r.state === 'up'))
  assert.equal(await metric(a.httpPort, 'tidepool_fleet_nodes'), 3)
  assert.equal(await metric(a.httpPort, 'tidepool_fleet_etcd_up'), 1)

  // A crash: nobody revokes c's lease; it is gone once the lease runs out.
  c.proc.kill('SIGKILL')
  await c.waitExit(10_000).catch(() => {})
  const killedAt = Date.now()
  await waitFor(async () => (await namesIn(a.port)) === 'a,b', { timeoutMs: 20_000, intervalMs: 100, what: 'c to disappear from a\'s view' })
  t.diagnostic(`crashed node gone after ${Date.now() - killedAt} ms (lease ttl ${TTL_S} s)`)
  assert.equal(await metric(a.httpPort, 'tidepool_fleet_nodes'), 2)

  // A shutdown revokes the lease: b is gone well before a lease would expire... on a loaded machine,
  // "well before" is not a safe assertion, so the check is the log line and the end state.
  await b.rt.shutdown('immediate')
  assert.ok(b.logs.some((l) => l.includes('[fleet.left]')), 'b logs that it left')
  await waitFor(async () => (await namesIn(a.port)) === 'a', { timeoutMs: 20_000, intervalMs: 100, what: 'b to disappear from a\'s view' })
})

test('etcd gone: nodes serve on and report it (/ready stays 200); etcd back: they register again', { timeout: 90_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const a = await startNode(t, etcd, fleet, 'a')
  const b = await startNode(t, etcd, fleet, 'b')
  await waitFor(async () => (await namesIn(a.port)) === 'a,b' && (await namesIn(b.port)) === 'a,b', { timeoutMs: 20_000, intervalMs: 100, what: 'both nodes to list a,b' })

  await etcd.stop()
  await waitFor(async () => {
    const rows = await showFleet(a.port)
    return rows[0].name === 'a' && rows[0].state === 'etcd unreachable' && rows.find((r) => r.name === 'b')?.state === 'unknown'
  }, { timeoutMs: 20_000, intervalMs: 100, what: "a to report etcd unreachable and b's state unknown" })
  assert.equal(await metric(a.httpPort, 'tidepool_fleet_etcd_up'), 0)
  assert.ok(a.logs.some((l) => l.includes('[fleet.etcd_lost]')), 'a logs the loss of etcd')
  const ready = await fetch(`http://127.0.0.1:${a.httpPort}/ready`)
  assert.equal(ready.status, 200, 'the data path is fine: /ready stays 200')
  // Serving on: queries through both nodes, for longer than a lease lasts.
  const viaA = await a.connect(t)
  const viaB = await b.connect(t)
  const until = Date.now() + TTL_S * 1000 + 500
  while (Date.now() < until) {
    assert.equal((await viaA.query('SELECT 1 AS one')).rows[0].one, 1)
    assert.equal((await viaB.query('SELECT 2 AS two')).rows[0].two, 2)
  }

  const backAt = Date.now()
  await etcd.start()
  for (const n of [a, b]) {
    await waitFor(async () => {
      const rows = await showFleet(n.port)
      return rows.length === 2 && rows.every((r) => r.state === 'up' && Date.parse(r.last_heartbeat ?? '') >= backAt - 1_000)
    }, { timeoutMs: 30_000, intervalMs: 100, what: `node on ${n.port} to list a,b up with fresh heartbeats` })
    assert.ok(n.logs.some((l) => l.includes('[fleet.etcd_restored]')), 'logs that etcd is back')
    assert.equal(await metric(n.httpPort, 'tidepool_fleet_etcd_up'), 1)
  }
})

test('without fleet_etcd: SHOW FLEET is empty, no tidepool_fleet_* metric, and the etcd client is never loaded', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { http_listen_port: httpPort } })
  assert.deepEqual(await showFleet(tp.port), [])
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  assert.doesNotMatch(text, /tidepool_fleet_/)
  // A fresh process: importing the runtime (everything a node without a fleet loads) pulls in no etcd3.
  const root = join(import.meta.dirname, '..', '..')
  const probe = `import { createRequire } from 'node:module'; await import('./src/runtime.ts'); ` +
    `console.log(Object.keys(createRequire(process.cwd() + '/x.js').cache).filter((k) => /node_modules[\\\\/](etcd3|@grpc)[\\\\/]/.test(k)).length)`
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { cwd: root, encoding: 'utf8', timeout: 20_000 })
  assert.equal(r.stdout.trim().split('\n').pop(), '0', `etcd3 or gRPC modules loaded without a fleet:\n${r.stdout}${r.stderr}`)
})

test('a foreign or unparsable key under the fleet prefix is ignored with a log line', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const client = new Etcd3({ hosts: etcd.clientUrl })
  t.after(() => client.close())
  await client.put(`${fleet}/nodes/garbled`).value('not json {')
  await client.put(`${fleet}/nodes/deep/key`).value('{}')
  await client.put(`${fleet}/nodes/liar`).value(JSON.stringify({ name: 'someone-else', region: '', address: 'x:1', version: '9', config_version: 'z', clients: 0, servers: 0, tps: 0, heartbeat_ms: 0, started_ms: 0 }))
  await client.put(`${fleet}/nodes/partial`).value(JSON.stringify({ name: 'partial' }))
  const a = await startNode(t, etcd, fleet, 'a')
  await waitFor(async () => (await metric(a.httpPort, 'tidepool_fleet_ignored_keys')) === 4, { timeoutMs: 20_000, intervalMs: 100, what: 'a to count 4 ignored keys' })
  assert.deepEqual((await showFleet(a.port)).map((r) => r.name), ['a'])
  for (const [key, why] of [['garbled', 'not JSON'], ['deep/key', 'not a node key'], ['liar', 'record names node'], ['partial', 'field region']]) {
    assert.ok(a.logs.some((l) => l.includes('[fleet.record_refused]') && l.includes(`${fleet}/nodes/${key}:`) && l.includes(why)), `a log line refusing ${key} (${why})`)
  }
  // Logged once per key and reason, not at every heartbeat.
  const count = () => a.logs.filter((l) => l.includes('[fleet.record_refused]')).length
  const before = count()
  await new Promise((r) => setTimeout(r, TTL_S * 1000))
  assert.equal(count(), before)
})

test('etcd over TLS with client certificates: a node with fleet_etcd_ca/cert/key_file joins, one without the certificate cannot', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, 'tidepool')
  const etcd = await startEtcd(t, { tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.caCert } })
  const fleet = `f-${randomBytes(3).toString('hex')}`
  // Written without a scheme: the TLS files make it https.
  const a = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: {
    ...fleetKeys(etcd, fleet, 'a'), fleet_etcd_ca_file: certs.caCert, fleet_etcd_cert_file: certs.clientCert, fleet_etcd_key_file: certs.clientKey } })
  const b = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { ...fleetKeys(etcd, fleet, 'b'), fleet_etcd_ca_file: certs.caCert } })
  await waitFor(async () => (await namesIn(a.port)) === 'a', { timeoutMs: 20_000, intervalMs: 100, what: 'a to join over TLS' })
  await waitFor(async () => (await showFleet(b.port))[0].state === 'etcd unreachable', { timeoutMs: 20_000, intervalMs: 100, what: 'b, without a client certificate, to be refused' })
  assert.equal(await namesIn(a.port), 'a', 'b never got in')
})

test('etcd with authentication: fleet_etcd_user/password let a node in; a wrong password does not', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcd(t)
  const admin = new Etcd3({ hosts: etcd.clientUrl })
  await admin.user('root').create('root-pw')
  await admin.user('root').addRole('root')
  await admin.auth.authEnable()
  admin.close()
  const fleet = `f-${randomBytes(3).toString('hex')}`
  const a = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { ...fleetKeys(etcd, fleet, 'a'), fleet_etcd_user: 'root', fleet_etcd_password: 'root-pw' } })
  const b = await startTidepool(t, pgi, { settings: { admin_users: pgi.user }, tidepool: { ...fleetKeys(etcd, fleet, 'b'), fleet_etcd_user: 'root', fleet_etcd_password: 'wrong' } })
  await waitFor(async () => (await namesIn(a.port)) === 'a', { timeoutMs: 20_000, intervalMs: 100, what: 'a to join with its password' })
  await waitFor(async () => (await showFleet(b.port))[0].state === 'etcd unreachable', { timeoutMs: 20_000, intervalMs: 100, what: 'b, with a wrong password, to be refused' })
  assert.ok(b.logs.some((l) => l.includes('[fleet.etcd_lost]')), 'b logs why it is out')
  assert.equal(await namesIn(a.port), 'a', 'b never got in')
  // The password is a secret: SHOW CONFIG masks it.
  const c = new pg.Client({ host: '127.0.0.1', port: a.port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  await c.connect()
  const row = await c.query('SHOW CONFIG').finally(() => c.end().catch(() => {}))
  const pw = row.rows.find((r: Record<string, string>) => r.key === 'fleet_etcd_password') as Record<string, string>
  assert.equal(pw.value, '********')
})
