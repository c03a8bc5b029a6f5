// Before authentication a client may not make tidepool do work or hold memory out of proportion
// to what it sent: one SSLRequest and one GSSENCRequest at most (as PostgreSQL), password and SASL
// messages capped at PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH, and a cap on connections still
// logging in (max_login_clients).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { encryptionRequest, rawClient, startupPacket } from '../harness/raw-client.ts'

const SSL = 80877103
const GSS = 80877104

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('a second SSLRequest gets one N, then FATAL 08P01 and a close', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const c = await rawClient(t, tp.port)
  c.sock.write(Buffer.concat([encryptionRequest(SSL), encryptionRequest(SSL)]))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'close after the second SSLRequest' })
  assert.equal(c.received[0], 0x4e, 'the first is answered N')
  assert.equal(c.received[1], 0x45, 'the second gets an ErrorResponse, not another N')
  const e = c.error(1)
  assert.equal(e?.severity, 'FATAL')
  assert.equal(e?.code, '08P01')
  assert.equal(e?.message, 'unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0')
})

test('a second GSSENCRequest is refused likewise', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const c = await rawClient(t, tp.port)
  c.sock.write(Buffer.concat([encryptionRequest(GSS), encryptionRequest(SSL), encryptionRequest(GSS)]))
  await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'close after the second GSSENCRequest' })
  assert.equal(c.received.subarray(0, 2).toString(), 'NN', 'one answer each for GSS and SSL')
  assert.equal(c.error(2)?.message, 'unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0')
})

test('SSLRequest then GSSENCRequest (either order) and the login goes on', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  for (const order of [[SSL, GSS], [GSS, SSL]] as const) {
    const c = await rawClient(t, tp.port)
    c.sock.write(Buffer.concat(order.map((code) => encryptionRequest(code))))
    await waitFor(() => c.received.length >= 2, { timeoutMs: 5_000, what: 'two answers' })
    c.sock.write(startupPacket({ user: pgi.user, database: 'app' }))
    await waitFor(() => c.hasReadyForQuery(2), { timeoutMs: 5_000, what: 'login after N, N' })
    assert.equal(c.error(2), null)
  }
})

test('a flood of SSLRequests is cut off at the second and does not delay another login', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const flood = Buffer.concat(Array.from({ length: 128 * 1024 }, () => encryptionRequest(SSL))) // 1 MiB
  const floods = await Promise.all(Array.from({ length: 4 }, () => rawClient(t, tp.port)))
  for (const f of floods) f.sock.write(flood)
  const started = Date.now()
  const good = await tp.connect(t)
  assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1)
  const loginMs = Date.now() - started
  await waitFor(() => floods.every((f) => f.isClosed), { timeoutMs: 10_000, what: 'the flooding clients closed' })
  for (const f of floods) {
    assert.equal(f.received[0], 0x4e)
    assert.equal(f.received[1], 0x45, 'one N per flooding connection, then the error')
  }
  assert.ok(loginMs < 3_000, `a normal login took ${loginMs} ms during the flood`)
})
