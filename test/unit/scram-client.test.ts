// tidepool's SCRAM-SHA-256 client checked against RFC 7677's worked example, and md5 against a
// value computed independently here.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { ServerAuth, scramVerifier } from '../../src/auth/server-login.ts'

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

test('SCRAM-SHA-256 produces RFC 7677\'s messages and accepts its server signature', () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
  const first = a.onAuthRequest(saslMechs('SCRAM-SHA-256')) as Buffer
  assert.equal(first.toString('utf8', 5, first.indexOf(0, 5)), 'SCRAM-SHA-256')
  assert.equal(payload(first, true), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO')
  const final = a.onAuthRequest(authMsg(11, Buffer.from(RFC.serverFirst))) as Buffer
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
  test(`SCRAM refuses ${c.name}`, () => {
    const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
    a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
    const run = () => {
      a.onAuthRequest(authMsg(11, Buffer.from(c.serverFirst)))
      a.onAuthRequest(authMsg(12, Buffer.from(c.serverFinal ?? RFC.serverFinal)))
    }
    assert.throws(run, (e: any) => e.code === c.code)
  })
}

test('AuthenticationOk before SCRAM final is refused (a server that skips proving itself)', () => {
  const a = new ServerAuth(RFC.user, RFC.password, RFC.nonce)
  a.onAuthRequest(saslMechs('SCRAM-SHA-256'))
  a.onAuthRequest(authMsg(11, Buffer.from(RFC.serverFirst)))
  assert.throws(() => a.onAuthRequest(authMsg(0)), (e: any) => e.code === 'TP_AUTH_FAILED')
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
