// The rest of PgBouncer's console against real traffic: SHOW FDS, SOCKETS, ACTIVE_SOCKETS, MEM,
// DNS_HOSTS, DNS_ZONES with the documented columns; SUSPEND/RESUME stopping and restarting reads
// and accepts; SET changing a live setting until the next RELOAD. Through psql and pg.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { runPsql, waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

// PgBouncer 1.25's columns, in order (doc/usage.md, src/admin.c).
const SOCKETS = ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port',
  'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls',
  'application_name', 'prepared_statements', 'id',
  'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail']
const EXPECTED_COLUMNS: Record<string, string[]> = {
  'SHOW FDS': ['fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings',
    'datestyle', 'timezone', 'password', 'scram_client_key', 'scram_server_key'],
  'SHOW SOCKETS': SOCKETS,
  'SHOW ACTIVE_SOCKETS': SOCKETS,
  'SHOW MEM': ['name', 'size', 'used', 'free', 'memtotal'],
  'SHOW DNS_HOSTS': ['hostname', 'ttl', 'addrs'],
  'SHOW DNS_ZONES': ['zonename', 'serial', 'count'],
}

function admin(t: import('node:test').TestContext, tp: TestTidepool, user = pgi.user, password = pgi.password): Promise<pg.Client> {
  return tp.connect(t, { database: 'pgbouncer', user, password })
}

/** A pg error as 'SQLSTATE message'. */
function failure(e: unknown): string {
  const err = e as { code?: string; message?: string }
  return `${err.code} ${err.message}`
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (e) {
    return failure(e)
  }
  return 'no error'
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs a test body that SUSPENDs; a failure must not leave clients that cannot say goodbye. */
async function resumingOnFailure(tp: TestTidepool, body: () => Promise<void>): Promise<void> {
  try {
    await body()
  } finally {
    if (tp.rt.admin.isSuspended) tp.rt.admin.resume(null)
  }
}

test('the new SHOW commands have PgBouncer\'s columns, through pg and psql', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user },
    databases: { app: `host=localhost port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
  })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const a = await admin(t, tp)
  for (const [sql, names] of Object.entries(EXPECTED_COLUMNS)) {
    const r = await a.query(sql)
    assert.deepEqual(r.fields.map((f) => f.name), names, sql)
    const psql = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql })
    assert.equal(psql.code, 0, `${sql}: ${psql.stderr}`)
  }
  const dns = (await a.query('SHOW DNS_HOSTS')).rows
  assert.equal(dns.length, 1)
  assert.equal(dns[0].hostname, 'localhost')
  assert.equal(Number(dns[0].ttl), 0)
  assert.ok(dns[0].addrs.split(',').every((x: string) => /^[0-9a-f.:]+$/i.test(x)) && dns[0].addrs !== '', `resolved addresses: ${dns[0].addrs}`)
  assert.deepEqual((await a.query('SHOW DNS_ZONES')).rows, [])
})

test('SHOW SOCKETS lists every client and server; ACTIVE_SOCKETS only the pair in a transaction', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const busy = await tp.connect(t, { application_name: 'busy' })
  const idle = await tp.connect(t, { application_name: 'idle' })
  // Two transactions at once open two servers; one goes back to idle.
  await busy.query('BEGIN')
  await idle.query('BEGIN')
  await idle.query('COMMIT')
  const a = await admin(t, tp)
  const sockets = (await a.query('SHOW SOCKETS')).rows
  const appRows = sockets.filter((r) => r.database === 'app')
  assert.deepEqual(appRows.map((r) => `${r.type} ${r.state}`).sort(), ['C cl_active', 'C cl_active', 'S sv_active', 'S sv_idle'])
  assert.ok(sockets.some((r) => r.database === 'pgbouncer' && r.state === 'cl_active'), 'the console client too')
  const busyRow = appRows.find((r) => r.application_name === 'busy')
  assert.match(busyRow.link, /^S-\d+$/)
  assert.equal(busyRow.addr, '127.0.0.1')
  assert.ok(Number(busyRow.port) > 0)
  const active = (await a.query('SHOW ACTIVE_SOCKETS')).rows
  assert.deepEqual(active.map((r) => `${r.type} ${r.state}`), ['C cl_active', 'S sv_active'])
  assert.equal(active[0].application_name, 'busy')
  assert.equal(active[1].link, active[0].ptr)
  await busy.query('COMMIT')
  assert.deepEqual((await a.query('SHOW ACTIVE_SOCKETS')).rows, [], 'nothing linked, nothing waiting')
})

test('SHOW FDS: the listener and every plain socket with its fd, never a password or SCRAM key; admin only', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user, stats_users: TEST_USERS.scram.user },
    userlist: { [pgi.user]: pgi.password, [TEST_USERS.scram.user]: TEST_USERS.scram.password },
  })
  const app = await tp.connect(t)
  await app.query('BEGIN')
  const a = await admin(t, tp)
  const rows = (await a.query('SHOW FDS')).rows
  assert.equal(rows[0].task, 'pooler')
  assert.equal(rows[0].addr, '127.0.0.1')
  assert.equal(Number(rows[0].port), tp.port)
  const client = rows.find((r) => r.task === 'client')
  const server = rows.find((r) => r.task === 'server')
  assert.ok(client !== undefined && server !== undefined, JSON.stringify(rows))
  assert.equal(client.database, 'app')
  assert.ok(Number(client.fd) > 2 && Number(server.fd) > 2)
  assert.equal(Number(client.link), Number(server.fd), 'the client links to its server\'s fd')
  for (const r of rows) {
    assert.deepEqual([r.password, r.scram_client_key, r.scram_server_key, r.cancel], [null, null, null, '0'])
  }
  assert.ok(!rows.some((r) => r.database === 'pgbouncer'), 'console sockets are not listed')
  const stats = await admin(t, tp, TEST_USERS.scram.user, TEST_USERS.scram.password)
  assert.equal(await refusal(stats.query('SHOW FDS')), '08P01 admin access needed')
  await app.query('COMMIT')
})

test('SHOW MEM counts connections and pools and reports process memory', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user } })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const a = await admin(t, tp)
  const rows = new Map((await a.query('SHOW MEM')).rows.map((r) => [r.name, r]))
  assert.equal(Number(rows.get('client_cache')?.used), 2, 'the app client and the console')
  assert.equal(Number(rows.get('server_cache')?.used), 1)
  assert.ok(Number(rows.get('node_heap')?.used) > 0)
  assert.ok(Number(rows.get('node_rss')?.memtotal) > 0)
})

test('SUSPEND holds queries and new connections; RESUME lets them through; errors as PgBouncer', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user, stats_users: TEST_USERS.scram.user },
    userlist: { [pgi.user]: pgi.password, [TEST_USERS.scram.user]: TEST_USERS.scram.password },
  })
  await resumingOnFailure(tp, async () => {
    const app = await tp.connect(t)
    await app.query('SELECT 1')
    const a = await admin(t, tp)
    const stats = await admin(t, tp, TEST_USERS.scram.user, TEST_USERS.scram.password)
    assert.equal(await refusal(stats.query('SUSPEND')), '08P01 admin access needed')
    assert.equal((await a.query('SUSPEND')).command, 'SUSPEND')
    assert.deepEqual((await a.query('SHOW STATE')).rows, [{ key: 'active', value: 'no' }, { key: 'paused', value: 'no' }, { key: 'suspended', value: 'yes' }])
    let answered = false
    const pending = app.query('SELECT 42 AS n').then((r) => { answered = true; return r })
    const late = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: pgi.user, password: pgi.password })
    late.on('error', () => {})
    t.after(() => late.end().catch(() => {}))
    let connected = false
    const connecting = late.connect().then(() => { connected = true })
    await sleep(400)
    assert.equal(answered, false, 'the query is not read while suspended')
    assert.equal(connected, false, 'a new client is not served while suspended')
    assert.equal(await refusal(a.query('SUSPEND')), '08P01 already suspended/paused')
    assert.equal(await refusal(a.query('PAUSE')), '08P01 already suspended/paused')
    assert.equal((await a.query('RESUME')).command, 'RESUME')
    assert.equal((await pending).rows[0].n, 42)
    await connecting
    assert.equal((await late.query('SELECT 7 AS n')).rows[0].n, 7)
    assert.equal(await refusal(a.query('RESUME')), '08P01 pooler is not paused/suspended')
    await a.query('PAUSE app')
    assert.equal(await refusal(a.query('SUSPEND')), '08P01 cannot suspend with paused databases')
    await a.query('RESUME app')
    const psql = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql: 'SUSPEND' })
    assert.equal(psql.code, 0, psql.stderr)
    assert.equal(tp.rt.admin.isSuspended, true)
    // Once the last console session is gone, tidepool resumes by itself, as PgBouncer does; the
    // psql below waits among the queued connections until then.
    await a.end()
    await stats.end()
    const after = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql: 'SHOW STATE' })
    assert.equal(after.code, 0, after.stderr)
    assert.match(after.stdout, /suspended\|no/)
    assert.ok(tp.logs.some((l) => l.includes('admin disappeared when suspended, doing RESUME')))
  })
})

test('SUSPEND waits for output to flush and closes after suspend_timeout what never flushes', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, suspend_timeout: 1 } })
  await resumingOnFailure(tp, async () => {
    const slow = await tp.connect(t)
    slow.on('error', () => {})
    await slow.query('SELECT 1')
    // A client that stops reading halfway through a large result: its output can never flush.
    ;(slow as unknown as { connection: { stream: { pause(): void } } }).connection.stream.pause()
    void slow.query("SELECT repeat('x', 20000000)").catch(() => {})
    await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 1, { timeoutMs: 5_000, what: 'the big query running' })
    const a = await admin(t, tp)
    // On a loaded machine the result may take a while to start: SUSPEND must meet output it cannot flush.
    await waitFor(async () => (await a.query('SHOW SOCKETS')).rows.some((r) => r.type === 'C' && r.database === 'app' && Number(r.send_avail) > 0),
      { timeoutMs: 10_000, what: 'output the paused client does not read' })
    const started = Date.now()
    assert.equal((await a.query('SUSPEND')).command, 'SUSPEND')
    const took = Date.now() - started
    assert.ok(took >= 900 && took < 5_000, `SUSPEND answered after ${took} ms`)
    await waitFor(() => tp.logs.some((l) => l.includes('suspend_timeout')), { timeoutMs: 5_000, what: 'the unflushed client closed' })
    await a.query('RESUME')
    const other = await tp.connect(t)
    assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1)
  })
})

test('SET changes a live setting until RELOAD; refusals are PgBouncer\'s "SET failed"', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { admin_users: pgi.user, stats_users: TEST_USERS.scram.user, default_pool_size: 5 },
    userlist: { [pgi.user]: pgi.password, [TEST_USERS.scram.user]: TEST_USERS.scram.password },
  })
  const app = await tp.connect(t)
  await app.query('SELECT 1')
  const a = await admin(t, tp)
  const config = async (key: string) => (await a.query('SHOW CONFIG')).rows.find((r) => r.key === key)?.value
  const psql = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql: 'SET default_pool_size = 3' })
  assert.equal(psql.code, 0, psql.stderr)
  assert.match(psql.stdout, /SET default_pool_size=3/)
  assert.equal(await config('default_pool_size'), '3')
  assert.equal(tp.pool('app', pgi.user)?.settings.pool_size, 3, 'applied to the existing pool')
  assert.equal((await a.query("SET server_reset_query = 'DISCARD ALL'")).command, 'SET')
  assert.equal(await config('server_reset_query'), 'DISCARD ALL')
  await a.query('SET suspend_timeout = 5')
  assert.equal(await config('suspend_timeout'), '5')

  const notices: string[] = []
  a.on('notice', (n) => notices.push(n.message ?? ''))
  await a.query('SET tcp_keepcnt = 3')
  await waitFor(() => notices.length > 0, { timeoutMs: 2_000, what: 'the notice' })
  assert.match(notices[0], /tcp_keepcnt is accepted but not applied/)

  const refused = async (sql: string) => {
    try {
      await a.query(sql)
    } catch (e) {
      const err = e as { code?: string; message?: string; detail?: string }
      return `${err.code} ${err.message}: ${err.detail}`
    }
    return 'no error'
  }
  assert.equal(await refused('SET nosuch_setting = 1'), '08P01 SET failed: unknown parameter: nosuch_setting')
  assert.equal(await refused('SET default_pool_size = many'), '08P01 SET failed: default_pool_size: expected an integer, got "many"')
  assert.equal(await refused('SET listen_port = 7000'), '08P01 SET failed: listen_port cannot be changed at runtime; set it in the config file and restart')
  assert.equal(await config('listen_port'), '0', 'a refused SET changes nothing')
  const stats = await admin(t, tp, TEST_USERS.scram.user, TEST_USERS.scram.password)
  assert.equal(await refusal(stats.query('SET default_pool_size = 9')), '08P01 admin access needed')
  assert.equal((await stats.query("SET client_encoding = 'UTF8'")).command, 'SET', 'the habit SETs stay open to everyone')

  assert.equal(await config('default_pool_size'), '3')
  await a.query('RELOAD')
  assert.equal(await config('default_pool_size'), '5', 'RELOAD re-reads the file: the SET value is gone')
  assert.equal(tp.pool('app', pgi.user)?.settings.pool_size, 5)
})
