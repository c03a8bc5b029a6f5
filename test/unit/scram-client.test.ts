// tidepool's SCRAM-SHA-256 client checked against RFC 7677's worked example, and md5 against a
// value computed independently here.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'
import { ServerAuth, scramVerifier } from '../../src/auth/server-login.ts'
import { SCRAM_KEY_CACHE_MAX, isScramKeyCached, scramKeys } from '../../src/auth/secrets.ts'

function authMsg(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(4 + data.length)
  b.writeInt32BE(code, 0)
  data.copy(b, 4)
  return b
}
const saslMechs = (...m: string[]) => authMsg(10, Buffer.from(m.map((x) => x + '\u0000').join('') + '\u0000'))
/** The payload of a SASLInitialResponse / SASLResponse as text. */
function payload(msg: Buffer, initial: boolean): string {
  let at = 5
  if (initial) {
    at = msg.indexOf(0, 5) + 1 + 4
  }
  return msg.toString('utf8', at)
}

const RFC = {
  user: 'user', password: 'pencil', nonce: 'rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
}

test('SCRAM-SHA-256 produces RFC 7677\'s messages and accepts its server signature', async () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
  const first = a.onAuthRequest(saslMechs('SCRAM-SHA-256')) as Buffer
  assert.equal(first.toString('utf8', 5, first.indexOf(0, 5)), 'SCRAM-SHA-256')
  assert.equal(payload(first, true), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO')
  const final = await a.onAuthRequest(authMsg(11, Buffer.from(RFC.serverFirst))) as Buffer
  assert.equal(payload(final, false), RFC.clientFinal)
  assert.equal(a.onAuthRequest(authMsg(12, Buffer.from(RFC.serverFinal))), null)
  assert.equal(a.onAuthRequest(authMsg(0)), null)
  assert.equal(a.isDone, true)
})

const badScram: Array<{ name: string; serverFirst: string; serverFinal?: string; code: string }> = [
  { name: 'a forged server signature', serverFirst: RFC.serverFirst, serverFinal: 'v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', code: 'TP_AUTH_FAILED' },
  { name: 'a server nonce that does not extend ours', serverFirst: 'r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', code: 'TP_AUTH_FAILED' },
  { name: 'zero iterations', serverFirst: 'r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0', code: 'TP_PROTOCOL_VIOLATION' },
  { name: 'a malformed message', serverFirst: 'garbage', code: 'TP_PROTOCOL_VIOLATION' },
  { name: 'a server error in the final message', serverFirst: RFC.serverFirst, serverFinal: 'e=invalid-proof', code: 'TP_AUTH_FAILED' },
]
for (const c of badScram) {
  test(`SCRAM refuses ${c.name}`, async () => {
    const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
    a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
    const run = async () => {
      await a.onAuthRequest(authMsg(11, Buffer.from(c.serverFirst)))
      a.onAuthRequest(authMsg(12, Buffer.from(c.serverFinal ?? RFC.serverFinal)))
    }
    await assert.rejects(run, (e: any) => e.code === c.code)
  })
}

test('AuthenticationOk before SCRAM final is refused (a server that skips proving itself)', async () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
  a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
  await a.onAuthRequest(authMsg(11, Buffer.from(RFC.serverFirst)))
  assert.throws(() => a.onAuthRequest(authMsg(0)), (e: any) => e.code === 'TP_AUTH_FAILED')
})

test('AuthenticationOk right after SASLInitialResponse is refused', () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
  a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
  assert.throws(() => a.onAuthRequest(authMsg(0)), (e: any) => e.code === 'TP_AUTH_FAILED' && /without completing SCRAM/.test(e.message))
  assert.equal(a.isDone, false)
})

const policy = (requireAuth: string[], maxIterations = 100_000) => ({ requireAuth, maxIterations })

test('require_auth: AuthenticationOk with no exchange is refused unless none is allowed', () => {
  assert.equal(new ServerAuth('u', 'pw').onAuthRequest(authMsg(0)), null, 'no require_auth: libpq accepts it')
  assert.equal(new ServerAuth('u', 'pw', undefined, null, policy(['none'])).onAuthRequest(authMsg(0)), null)
  assert.throws(() => new ServerAuth('u', 'pw', undefined, null, policy(['scram-sha-256'])).onAuthRequest(authMsg(0)),
    (e: any) => e.code === 'TP_AUTH_FAILED' && e.message === 'authentication method requirement "scram-sha-256" failed: server did not complete authentication')
})

test('require_auth: a request for a method not allowed is refused before any secret is sent', () => {
  const only = (m: string[]) => new ServerAuth('u', 'pw', undefined, null, policy(m))
  assert.throws(() => only(['scram-sha-256']).onAuthRequest(authMsg(3)), (e: any) => e.code === 'TP_AUTH_FAILED' && /server requested a cleartext password/.test(e.message))
  assert.throws(() => only(['scram-sha-256']).onAuthRequest(authMsg(5, Buffer.from([1, 2, 3, 4]))), (e: any) => /server requested a hashed password/.test(e.message))
  assert.throws(() => only(['password', 'md5']).onAuthRequest(saslMechs('SCRAM-SHA-256')), (e: any) => /server requested SASL authentication/.test(e.message))
  assert.ok(only(['md5', 'scram-sha-256']).onAuthRequest(authMsg(5, Buffer.from([1, 2, 3, 4]))) instanceof Buffer)
  assert.ok(only(['password']).onAuthRequest(authMsg(3)) instanceof Buffer)
})

test('a SCRAM verifier as the secret never answers a cleartext or md5 request', () => {
  const v = scramVerifier('pencil', Buffer.alloc(16, 1), 4096)
  const keys = { clientKey: Buffer.alloc(32, 2), serverKey: Buffer.alloc(32, 3) }
  assert.throws(() => new ServerAuth('u', v, undefined, keys).onAuthRequest(authMsg(3)), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED')
  assert.throws(() => new ServerAuth('u', v, undefined, keys).onAuthRequest(authMsg(5, Buffer.from([1, 2, 3, 4]))), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED')
})

test('SCRAM: an iteration count above server_scram_max_iterations is refused before any PBKDF2', () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce, null, policy([], 4096))
  a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
  const big = RFC.serverFirst.replace('i=4096', 'i=15000000')
  assert.throws(() => a.onAuthRequest(authMsg(11, Buffer.from(big))), (e: any) => e.code === 'TP_AUTH_FAILED' && /15000000 SCRAM iterations, more than server_scram_max_iterations \(4096\)/.test(e.message))
})

test('SCRAM keys are derived off the event loop and cached per (password, salt, iterations)', async () => {
  const salt = randomBytes(16)
  assert.equal(isScramKeyCached('pencil', salt, 4096), false)
  const first = scramKeys('pencil', salt, 4096)
  assert.ok(first instanceof Promise)
  assert.equal(isScramKeyCached('pencil', salt, 4096), true, 'cached while computing, so concurrent logins share it')
  const again = scramKeys('pencil', salt, 4096)
  assert.equal(again, first, 'a hit returns the same computation')
  assert.notEqual(scramKeys('pencil', salt, 4097), first, 'another iteration count is another entry')
  const k = await first
  const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256')
  assert.deepEqual(k.clientKey, createHmac('sha256', salted).update('Client Key').digest())
  assert.deepEqual(k.serverKey, createHmac('sha256', salted).update('Server Key').digest())
})

test('the SCRAM key cache stays bounded', async () => {
  const salt = randomBytes(16)
  for (let i = 0; i < SCRAM_KEY_CACHE_MAX + 5; i++) void scramKeys(`p${i}`, salt, 1)
  assert.equal(isScramKeyCached('p0', salt, 1), false, 'the oldest entry left')
  assert.equal(isScramKeyCached(`p${SCRAM_KEY_CACHE_MAX + 4}`, salt, 1), true)
})

test('md5: plain password and stored md5 hash give the same answer', () => {
  const salt = Buffer.from([1, 2, 3, 4])
  const inner = createHash('md5').update('secret' + 'bob').digest('hex')
  const expected = 'md5' + createHash('md5').update(inner).update(salt).digest('hex')
  for (const pw of ['secret', 'md5' + inner]) {
    const m = new ServerAuth('bob', pw).onAuthRequest(authMsg(5, salt)) as Buffer
    assert.equal(m.toString('utf8', 5, m.length - 1), expected)
  }
})

test('methods that cannot work are refused with stable codes', () => {
  assert.throws(() => new ServerAuth('u', null).onAuthRequest(authMsg(3)), (e: any) => e.code === 'TP_AUTH_FAILED')
  assert.throws(() => new ServerAuth('u', 'md5' + 'a'.repeat(32)).onAuthRequest(authMsg(3)), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED')
  assert.throws(() => new ServerAuth('u', 'pw').onAuthRequest(authMsg(7)), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED')
  assert.throws(() => new ServerAuth('u', 'pw').onAuthRequest(saslMechs('SCRAM-SHA-256-PLUS')), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED')
})

test('scramVerifier writes PostgreSQL\'s verifier format', () => {
  const v = scramVerifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096)
  assert.match(v, /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/)
})
