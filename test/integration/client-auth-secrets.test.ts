// Client logins against auth_file secrets that must never let anyone in or give anything away:
// an empty password (stored or sent) is refused under plain, md5 and scram-sha-256 as PostgreSQL
// and PgBouncer refuse it, and the SCRAM salt of a plain-text user is as stable as the made-up
// salt of an unknown user, so the challenge does not tell who exists.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'
import { Framer, INSPECT_ALL } from '../../src/protocol/framer.ts'
import { BackendCode } from '../../src/protocol/codes.ts'
import { parseErrorFields } from '../../src/protocol/reader.ts'
import { ServerAuth } from '../../src/auth/server-login.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

/**
 * Logs in with exactly `password`, whatever the method asks (drivers refuse to send an empty
 * password themselves, so they cannot show what tidepool does with one): tidepool's own client
 * side of the exchange plays the client.
 */
async function rawLogin(port: number, user: string, password: string): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
  const sock = net.connect({ host: '127.0.0.1', port })
  const auth = new ServerAuth(user, password)
  const framer = new Framer()
  framer.inspect = INSPECT_ALL
  try {
    return await new Promise((resolve, reject) => {
      sock.on('error', reject)
      sock.on('close', () => reject(new Error('closed without an answer')))
      sock.once('connect', () => sock.write(build.startupMessage({ user, database: 'app' })))
      sock.on('data', (chunk: Buffer) => {
        framer.push(chunk)
        while (framer.next()) {
          if (framer.code === BackendCode.ErrorResponse) {
            const e = parseErrorFields(framer.buf, framer.start + 5, framer.end)
            return resolve({ ok: false, code: e.code, message: e.message })
          }
          if (framer.code === BackendCode.ReadyForQuery) return resolve({ ok: true })
          if (framer.code !== BackendCode.Authentication) continue
          const reply = auth.onAuthRequest(framer.buf, framer.start + 5, framer.end)
          if (reply instanceof Promise) reply.then((r) => sock.write(r), reject)
          else if (reply !== null) sock.write(reply)
        }
      })
    })
  } finally {
    sock.destroy()
  }
}

for (const method of ['plain', 'md5', 'scram-sha-256']) {
  test(`auth_type ${method}: an empty password in auth_file lets nobody in; an empty password sent is refused too`, { timeout: 30_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: method },
      databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
      userlist: { empty: '', alice: 'alice-pw' },
    })
    const r = await rawLogin(tp.port, 'empty', '')
    assert.deepEqual(r, { ok: false, code: '28P01', message: 'password authentication failed for user "empty"' })
    await waitFor(() => tp.logs.some((l) => l.includes('the stored password is empty')), { timeoutMs: 5_000, what: 'log line naming the cause' })
    const sent = await rawLogin(tp.port, 'alice', '')
    assert.deepEqual(sent, { ok: false, code: '28P01', message: 'password authentication failed for user "alice"' })
    assert.deepEqual(await rawLogin(tp.port, 'alice', 'alice-pw'), { ok: true }, 'the right password still logs in')
  })
}

test('auth_type plain: the log names an empty password sent by the client', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'plain' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
    userlist: { alice: 'alice-pw' },
  })
  assert.equal((await rawLogin(tp.port, 'alice', '')).ok, false)
  await waitFor(() => tp.logs.some((l) => l.includes('empty password returned by client')), { timeoutMs: 5_000, what: 'log line naming the cause' })
})

/** The salt tidepool announces in its SCRAM challenge for `user`. */
async function scramSalt(port: number, user: string): Promise<string> {
  const sock = net.connect({ host: '127.0.0.1', port })
  let buf = Buffer.alloc(0)
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]) })
  sock.on('error', () => {})
  try {
    await new Promise<void>((r) => sock.once('connect', () => r()))
    sock.write(build.startupMessage({ user, database: 'app' }))
    await waitFor(() => buf.length > 0, { timeoutMs: 5_000, what: 'AuthenticationSASL' })
    const saslLen = 1 + buf.readInt32BE(1)
    sock.write(build.saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=clientnonce')))
    await waitFor(() => buf.length > saslLen + 9, { timeoutMs: 5_000, what: 'SASLContinue' })
    assert.equal(buf.readInt32BE(saslLen + 5), 11, 'SASLContinue')
    const serverFirst = buf.toString('utf8', saslLen + 9, saslLen + 1 + buf.readInt32BE(saslLen + 1))
    const salt = /(?:^|,)s=([^,]*)/.exec(serverFirst)?.[1]
    assert.ok(salt !== undefined, serverFirst)
    return salt
  } finally {
    sock.destroy()
  }
}

test('scram-sha-256: a plain-text user\'s salt is stable across attempts, like an unknown user\'s, and as long', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
    userlist: { alice: 'alice-pw' },
  })
  const known = [await scramSalt(tp.port, 'alice'), await scramSalt(tp.port, 'alice')]
  const unknown = [await scramSalt(tp.port, 'nobody'), await scramSalt(tp.port, 'nobody')]
  assert.equal(known[0], known[1], 'a plain-text user gets the same salt every time')
  assert.equal(unknown[0], unknown[1], 'an unknown user gets the same salt every time')
  assert.notEqual(known[0], unknown[0])
  assert.equal(Buffer.from(known[0], 'base64').length, 16)
  assert.equal(Buffer.from(unknown[0], 'base64').length, 16)
  assert.deepEqual(await rawLogin(tp.port, 'alice', 'alice-pw'), { ok: true })
  assert.deepEqual(await rawLogin(tp.port, 'alice', 'alice-pw'), { ok: true }, 'the second login uses the cached keys')
})
