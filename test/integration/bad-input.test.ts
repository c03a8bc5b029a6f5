// Bad input from a client: each case gets an ErrorResponse (08P01 or the fitting code) where the
// protocol allows and a clean close, one log line, no crash, other clients unaffected, and no
// server connection reused in an unknown state.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import * as build from '../../src/protocol/build.ts'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { rawClient as raw } from '../harness/raw-client.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

function startup(params: Record<string, string>): Buffer {
  return build.startupMessage(params)
}

function lengthOnly(len: number, version = 196608): Buffer {
  const b = Buffer.alloc(8)
  b.writeInt32BE(len, 0)
  b.writeInt32BE(version, 4)
  return b
}

async function loggedIn(t: TestContext, tp: TestTidepool) {
  const c = await raw(t, tp.port)
  c.sock.write(startup({ user: pgi.user, database: 'app' }))
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 10_000, what: 'login' })
  return c
}

const startupCases: Array<{ name: string; bytes: () => Buffer; code: string; message: RegExp }> = [
  { name: 'negative length', bytes: () => lengthOnly(-1), code: '08P01', message: /invalid startup packet length/ },
  { name: 'length too small', bytes: () => lengthOnly(4), code: '08P01', message: /invalid startup packet length/ },
  { name: 'length over the limit', bytes: () => lengthOnly(20000), code: '08P01', message: /invalid startup packet length/ },
  { name: 'no user', bytes: () => startup({ database: 'app' }), code: '08P01', message: /no PostgreSQL user name specified/ },
  { name: 'protocol 2.0', bytes: () => lengthOnly(8, 2 << 16), code: '08P01', message: /unsupported frontend protocol/ },
  { name: 'protocol 4.0', bytes: () => lengthOnly(8, 4 << 16), code: '08P01', message: /unsupported frontend protocol/ },
  { name: 'unknown startup parameter', bytes: () => startup({ user: 'x', database: 'app', extra_float_digits: '3' }), code: '08P01', message: /^unsupported startup parameter: extra_float_digits$/ },
]

for (const c of startupCases) {
  test(`startup with ${c.name}: ${c.code} and a clean close`, { timeout: 20_000 }, async (t) => {
    const tp = await startTidepool(t, pgi)
    const good = await tp.connect(t)
    const bad = await raw(t, tp.port)
    bad.sock.write(c.bytes())
    await waitFor(() => bad.isClosed, { timeoutMs: 5_000, what: 'tidepool to close the bad client' })
    const e = bad.error()
    assert.ok(e !== null, 'an ErrorResponse was sent')
    assert.equal(e.code, c.code)
    assert.match(e.message, c.message)
    assert.equal(e.severity, 'FATAL')
    assert.equal(tp.logs.filter((l) => l.includes('[client.closed]')).length, 1, 'one close line for the bad client')
    assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1, 'other clients are unaffected')
  })
}

test('ignore_startup_parameters lets extra_float_digits through', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { ignore_startup_parameters: 'extra_float_digits' } })
  const c = await raw(t, tp.port)
  c.sock.write(startup({ user: pgi.user, database: 'app', extra_float_digits: '3' }))
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 10_000, what: 'login' })
  assert.equal(c.error(), null)
})

test('half a startup packet and silence: closed by client_login_timeout', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { client_login_timeout: 1 }, tidepool: { janitor_interval_ms: 100 } })
  const c = await raw(t, tp.port)
  c.sock.write(startup({ user: pgi.user, database: 'app' }).subarray(0, 10))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'client_login_timeout' })
  assert.equal(c.error()?.message, 'client_login_timeout')
})

test('unknown message type after login: 08P01, close, server not reused dirty', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await loggedIn(t, tp)
  c.sock.write(Buffer.from([0x7a, 0, 0, 0, 4]))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'close' })
  assert.equal(c.error()?.code, '08P01')
  assert.match(c.error()?.message ?? '', /invalid frontend message type/)
  const good = await tp.connect(t)
  assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1)
})

const lengthCases = [
  { name: 'negative', len: -5 },
  { name: 'below 4', len: 2 },
  { name: 'over max_packet_size', len: 100_000 },
]
for (const lc of lengthCases) {
  test(`message length ${lc.name} after login: 08P01 and a clean close`, { timeout: 20_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, max_packet_size: 65536 } })
    const c = await loggedIn(t, tp)
    const b = Buffer.alloc(5)
    b[0] = 0x51
    b.writeInt32BE(lc.len, 1)
    c.sock.write(b)
    await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'close' })
    assert.equal(c.error()?.code, '08P01')
    const good = await tp.connect(t)
    assert.equal((await good.query('SELECT 2 AS two')).rows[0].two, 2)
  })
}

test('a client that leaves with a truncated query: its server is closed, not reused', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await loggedIn(t, tp)
  c.sock.write(build.query('SELECT 1'))
  await waitFor(() => c.hasReadyForQuery() && tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'first query' })
  const before = (await pgi.query(`SELECT array_agg(pid) AS pids FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'`))[0].pids
  const q = build.query('SELECT 12345 AS truncated')
  c.sock.write(q.subarray(0, 10))
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 1, { timeoutMs: 5_000, what: 'server linked' })
  c.sock.destroy()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'server closed' })
  const good = await tp.connect(t)
  const pid = (await good.query('SELECT pg_backend_pid() AS p')).rows[0].p
  assert.ok(!(before ?? []).includes(pid), 'the half-written server was not reused')
})

test('a client that leaves mid-transaction: no transaction or lock survives', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const a = await tp.connect(t)
  await a.query('CREATE TABLE IF NOT EXISTS mid_tx (id int)')
  await a.query('BEGIN')
  await a.query('INSERT INTO mid_tx VALUES (1)')
  await a.query('LOCK TABLE mid_tx IN ACCESS EXCLUSIVE MODE')
  ;(a as any).connection.stream.destroy()
  const b = await tp.connect(t)
  const r = await b.query(`SELECT now() = statement_timestamp() AS autocommit, (SELECT count(*)::int FROM mid_tx) AS n`)
  assert.equal(r.rows[0].autocommit, true)
  assert.equal(r.rows[0].n, 0, 'the uncommitted insert is gone')
})

test('a client that leaves mid-COPY: the copy is aborted and the server not reused', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const setup = await tp.connect(t)
  await setup.query('CREATE TABLE IF NOT EXISTS mid_copy (id int)')
  await setup.query('TRUNCATE mid_copy')
  const c = await loggedIn(t, tp)
  c.sock.write(build.query('COPY mid_copy FROM STDIN'))
  await waitFor(() => c.received.includes(0x47), { timeoutMs: 5_000, what: 'CopyInResponse' })
  const row = Buffer.from('1\n2\n3\n')
  const d = Buffer.alloc(5 + row.length)
  d[0] = 0x64
  d.writeInt32BE(4 + row.length, 1)
  row.copy(d, 5)
  c.sock.write(d)
  c.sock.destroy()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'server closed' })
  const r = await setup.query('SELECT count(*)::int AS n FROM mid_copy')
  assert.equal(r.rows[0].n, 0)
})

test('a client that leaves mid-pipeline (no Sync): the server is closed, not reused', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await loggedIn(t, tp)
  c.sock.write(Buffer.concat([build.parse('', 'SELECT 1', []), build.bind('', '', []), build.execute('', 0)]))
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 1, { timeoutMs: 5_000, what: 'linked' })
  c.sock.destroy()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'server closed' })
  assert.ok(tp.logs.some((l) => l.includes('client disconnected while server was not ready')))
  const good = await tp.connect(t)
  assert.equal((await good.query('SELECT 3 AS three')).rows[0].three, 3)
})

test('SSLRequest and GSSENCRequest are answered N and the login goes on in plain text', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  for (const code of [80877103, 80877104]) {
    const c = await raw(t, tp.port)
    const req = Buffer.alloc(8)
    req.writeInt32BE(8, 0)
    req.writeInt32BE(code, 4)
    c.sock.write(req)
    await waitFor(() => c.received.length >= 1, { timeoutMs: 5_000, what: 'answer to the encryption request' })
    assert.equal(c.received[0], 0x4e, 'N: no encryption')
    c.sock.write(startup({ user: pgi.user, database: 'app' }))
    await waitFor(() => c.hasReadyForQuery(1), { timeoutMs: 5_000, what: 'login after N' })
  }
})

test('a client asking for protocol 3.2 with _pq_ options gets NegotiateProtocolVersion and logs in', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const c = await raw(t, tp.port)
  const p = startup({ user: pgi.user, database: 'app', '_pq_.test_option': 'on' })
  p.writeInt32BE((3 << 16) | 2, 4)
  c.sock.write(p)
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 5_000, what: 'login' })
  assert.equal(c.received[0], 0x76, 'NegotiateProtocolVersion comes first')
  assert.equal(c.received.readInt32BE(5), 0, 'newest minor version we speak: 3.0')
  assert.equal(c.received.readInt32BE(9), 1, 'one option not recognized')
  assert.equal(c.received.toString('utf8', 13, 13 + '_pq_.test_option'.length), '_pq_.test_option')
})
