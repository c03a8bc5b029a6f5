// A client's bad bytes that wait while tidepool brings the server's parameters in line (one
// internal SET) are read in the internal query's callback, inside the server's read handler: a
// framing error there is the client's, and must fail the client only, with the server kept.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { rawClient, startupPacket } from '../harness/raw-client.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('a client framing error during a parameter sync fails the client; the server goes back to the pool', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, pool_mode: 'transaction' } })
  const warm = await tp.connect(t, { application_name: 'first' })
  const pid = (await warm.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
  const c = await rawClient(t, tp.port)
  // Another application_name: its first message waits for an internal SET on the one server.
  c.sock.write(startupPacket({ user: pgi.user, database: 'app', application_name: 'second' }))
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 5_000, what: 'login' })
  const from = c.received.length
  c.sock.write(Buffer.from([0x51, 0, 0, 0, 2]))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'the bad client to be closed' })
  const e = c.error(from)
  assert.equal(e?.code, '08P01')
  assert.match(e?.message ?? '', /invalid message length 2/, 'the client is told what was wrong with its bytes')
  assert.ok(!tp.logs.some((l) => l.includes('server protocol error')), 'the server is not blamed')
  assert.ok(tp.logs.some((l) => l.includes('[client.closed]') && l.includes('invalid message length 2')), 'the log names the client')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_idle === 1, { timeoutMs: 5_000, what: 'the server back in the pool' })
  assert.equal((await warm.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid, 'the same server connection serves on')
})

test('bytes a failed forward left unsent never reach another client\'s server', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2, pool_mode: 'transaction', max_prepared_statements: 10 } })
  const other = await tp.connect(t)
  await other.query('SELECT 1')
  const c = await rawClient(t, tp.port)
  c.sock.write(startupPacket({ user: pgi.user, database: 'app' }))
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 5_000, what: 'login' })
  // A named Parse (renamed, so collected for the write) and then a bad length in the same chunk.
  const name = 'leak_probe'
  const sql = 'SELECT 42'
  const body = Buffer.concat([Buffer.from(`${name}\0${sql}\0`), Buffer.from([0, 0])])
  const parse = Buffer.alloc(5)
  parse[0] = 0x50
  parse.writeInt32BE(4 + body.length, 1)
  c.sock.write(Buffer.concat([parse, body, Buffer.from([0x51, 0, 0, 0, 2])]))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'the bad client to be closed' })
  // The next forward by another client must carry only its own bytes.
  assert.equal((await other.query('SELECT 7 AS seven')).rows[0].seven, 7)
  assert.equal((await other.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n, 0, 'no stray Parse reached the server')
})
