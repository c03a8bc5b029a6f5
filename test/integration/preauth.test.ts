// Before authentication a client may not make tidepool do work or hold memory out of proportion
// to what it sent: one SSLRequest and one GSSENCRequest at most (as PostgreSQL), password and SASL
// messages capped at PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH, and a cap on connections still
// logging in (max_login_clients).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import { encryptionRequest, rawClient, startupPacket, type RawClient } from '../harness/raw-client.ts'

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

/** Reads the first authentication request (R) after a startup packet: its method code. */
function authRequestCode(received: Buffer): number | null {
  return received.length >= 9 && received[0] === 0x52 ? received.readInt32BE(5) : null
}

for (const authType of ['plain', 'md5', 'scram-sha-256'] as const) {
  test(`${authType}: a password message over 65535 bytes is refused from its length word, 08P01 and a close`, { timeout: 20_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, { settings: { auth_type: authType, auth_file: 'userlist.txt' }, userlist: { alice: 'secret' } })
    const c = await rawClient(t, tp.port)
    c.sock.write(startupPacket({ user: 'alice', database: 'app' }))
    await waitFor(() => authRequestCode(c.received) !== null, { timeoutMs: 5_000, what: 'the password request' })
    const from = c.received.length
    // The header of an 8 MiB password message and a first slice of its body: enough to be refused.
    const head = Buffer.alloc(5 + 1024, 0x61)
    head[0] = 0x70
    head.writeInt32BE(8 * 1024 * 1024, 1)
    c.sock.write(head)
    await waitFor(() => c.isClosed, { timeoutMs: 5_000, what: 'the oversized password to be refused' })
    const e = c.error(from)
    assert.equal(e?.severity, 'FATAL')
    assert.equal(e?.code, '08P01')
    assert.match(e?.message ?? '', /message length 8388608 exceeds the limit for messages before authentication \(65535\)/)
    assert.ok(tp.logs.some((l) => l.includes('[client.closed]') && l.includes('before authentication')), 'the close is logged with its cause')
  })
}

test('max_login_clients refuses the next connection while that many are still logging in, 53300', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { client_login_timeout: 1 }, tidepool: { max_login_clients: 3, janitor_interval_ms: 100 } })
  const silent: RawClient[] = []
  for (let i = 0; i < 3; i++) silent.push(await rawClient(t, tp.port))
  await waitFor(() => tp.rt.loginClients.size === 3, { timeoutMs: 5_000, what: 'three silent connections accepted' })
  const refused = await rawClient(t, tp.port)
  await waitFor(() => refused.isClosed, { timeoutMs: 5_000, what: 'the fourth to be refused' })
  const e = refused.error()
  assert.equal(e?.severity, 'FATAL')
  assert.equal(e?.code, '53300')
  assert.equal(e?.message, 'sorry, too many clients already')
  assert.ok(tp.logs.some((l) => l.includes('[client.login_limit]')), 'the refusal is logged')
  assert.ok(silent.every((s) => !s.isClosed), 'the silent ones stay until client_login_timeout')
  await waitFor(() => silent.every((s) => s.isClosed), { timeoutMs: 5_000, what: 'client_login_timeout to close the silent ones' })
  const good = await tp.connect(t)
  assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1, 'a normal client logs in once they are gone')
})

test('max_login_clients 0 follows max_client_conn', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { max_client_conn: 2 } })
  for (let i = 0; i < 2; i++) await rawClient(t, tp.port)
  await waitFor(() => tp.rt.loginClients.size === 2, { timeoutMs: 5_000, what: 'two silent connections accepted' })
  const refused = await rawClient(t, tp.port)
  await waitFor(() => refused.isClosed, { timeoutMs: 5_000, what: 'the third to be refused' })
  assert.equal(refused.error()?.code, '53300')
})
