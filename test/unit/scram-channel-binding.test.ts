// SCRAM-SHA-256-PLUS (tls-server-end-point) with both of tidepool's SCRAM ends talking to each other
// in memory: tidepool's server login (ServerAuth) as the client, the client-facing exchange
// (ScramServerExchange) as the server. A relay with another certificate hands the server other
// binding data: that must be refused before any proof counts. The binding data itself is checked
// against hashes openssl computed for two certificates (ECDSA with SHA-384, and SHA-1 → SHA-256).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { ServerAuth, scramVerifier } from '../../src/auth/server-login.ts'
import { ScramServerExchange, type ScramStep } from '../../src/auth/scram-server.ts'
import { tlsServerEndPoint } from '../../src/net/channel-binding.ts'

const USER = 'alice'
const PASSWORD = 'wonderland'
const ITER = 4096

/** Runs the exchange; `serverCb`: binding data the server offers with, `clientCb`: what the client binds to (null: no TLS). */
async function exchange(serverCb: Buffer | null, clientCb: Buffer | null | 'tls-unknown-hash', secret = scramVerifier(PASSWORD, Buffer.alloc(16, 7), ITER)) {
  const server = new ScramServerExchange(USER, secret, ITER)
  const client = new ServerAuth(USER, PASSWORD)
  if (clientCb === 'tls-unknown-hash') client.setChannelBinding(null)
  else if (clientCb !== null) client.setChannelBinding(clientCb)
  const body = (m: Buffer) => m.subarray(5)
  const initial = await client.onAuthRequest(body(server.start(serverCb))) as Buffer
  let step = server.onMessage(initial, 5, initial.length) as ScramStep // a verifier: no PBKDF2 to wait for
  assert.equal(step.kind, 'continue')
  const final = await client.onAuthRequest(body((step as { send: Buffer }).send)) as Buffer
  step = server.onMessage(final, 5, final.length) as ScramStep
  if (step.kind === 'ok') assert.equal(await client.onAuthRequest(body(step.send)), null, 'the client accepts the server signature')
  return { step, mechanism: client.mechanism, initial: initial.toString('latin1') }
}

const CERT_HASH = Buffer.alloc(32, 0xab)

test('over TLS both ends use SCRAM-SHA-256-PLUS, bound to the same certificate hash: ok', async () => {
  const r = await exchange(CERT_HASH, CERT_HASH)
  assert.equal(r.step.kind, 'ok')
  assert.equal(r.mechanism, 'SCRAM-SHA-256-PLUS')
  assert.match(r.initial, /p=tls-server-end-point,,n=alice,r=/)
})

test('a tampered cbind-data (a relay with another certificate) is refused: "SCRAM channel binding check failed"', async () => {
  const relayed = Buffer.alloc(32, 0xcd)
  await assert.rejects(exchange(CERT_HASH, relayed), (e: any) => e.code === 'TP_PROTOCOL_VIOLATION' && e.message === 'SCRAM channel binding check failed')
  // A plain-text client-final with c=biws after choosing -PLUS: the same refusal.
  const server = new ScramServerExchange(USER, PASSWORD, ITER)
  server.start(CERT_HASH)
  const first = Buffer.from('p=tls-server-end-point,,n=alice,r=abc')
  const init = saslInitial('SCRAM-SHA-256-PLUS', first)
  const cont = server.onMessage(init, 5, init.length) as { send: Buffer }
  const nonce = /r=([^,]+)/.exec(cont.send.subarray(9).toString())?.[1]
  const text = Buffer.from(`c=biws,r=${nonce},p=${Buffer.alloc(32).toString('base64')}`)
  const fin = Buffer.concat([Buffer.from('p'), int32(4 + text.length), text])
  assert.throws(() => server.onMessage(fin, 5, fin.length), /SCRAM channel binding check failed/)
})

test('"y" (client could bind, thinks the server cannot) is refused when -PLUS was offered, accepted when it was not', async () => {
  // A client over TLS whose certificate hash is unknown answers "n"; one offered no -PLUS answers "y".
  assert.throws(() => {
    const server = new ScramServerExchange(USER, PASSWORD, ITER)
    server.start(CERT_HASH)
    const init = saslInitial('SCRAM-SHA-256', Buffer.from('y,,n=alice,r=abc'))
    server.onMessage(init, 5, init.length)
  }, /channel binding negotiation error/)
  const r = await exchange(null, CERT_HASH)
  assert.equal(r.step.kind, 'ok')
  assert.equal(r.mechanism, 'SCRAM-SHA-256')
  assert.match(r.initial, /y,,n=alice/)
})

test('without TLS: SCRAM-SHA-256 with "n"; -PLUS is neither offered nor accepted', async () => {
  const r = await exchange(null, null)
  assert.equal(r.step.kind, 'ok')
  assert.match(r.initial, /n,,n=alice/)
  const server = new ScramServerExchange(USER, PASSWORD, ITER)
  server.start(null)
  const init = saslInitial('SCRAM-SHA-256-PLUS', Buffer.from('p=tls-server-end-point,,n=alice,r=abc'))
  assert.throws(() => server.onMessage(init, 5, init.length), /unsupported SASL mechanism/)
  // TLS with an unknown signature hash: no binding possible, so "n", which a -PLUS-offering server takes.
  assert.equal((await exchange(CERT_HASH, 'tls-unknown-hash')).step.kind, 'ok')
})

test('a server that offers only SCRAM-SHA-256-PLUS to a login without TLS: refused, saying TLS is needed', async () => {
  const client = new ServerAuth(USER, PASSWORD)
  const mechs = Buffer.concat([int32(10), Buffer.from('SCRAM-SHA-256-PLUS\0\0')])
  assert.throws(() => client.onAuthRequest(mechs), (e: any) => e.code === 'TP_AUTH_UNSUPPORTED' && /needs TLS/.test(e.message))
})

test('tls-server-end-point data: the signature\'s hash (SHA-384 here), SHA-256 for a SHA-1 signature', () => {
  assert.equal(tlsServerEndPoint(new X509Certificate(EC_SHA384).raw)?.toString('hex'), '13bf2e8a030656965d431e5857a2e69c8d8d2b98de7765f7c6a8a9bed669bd4bbe06641bfb3c34ea64a8d905c972dfbb')
  assert.equal(tlsServerEndPoint(new X509Certificate(EC_SHA1).raw)?.toString('hex'), '540043cd3653d2faf44c05c0adf12fe4aff92a6c01b3c0a63e87e260dd3e3df7')
  assert.equal(tlsServerEndPoint(Buffer.from([0x30, 0x03, 0x02, 0x01])), null, 'malformed DER')
})

function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

function saslInitial(mech: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(mech + '\0'), int32(data.length), data])
  return Buffer.concat([Buffer.from('p'), int32(4 + body.length), body])
}

// openssl req -x509 -key <P-256 key> -sha384 / -sha1; the hashes above are openssl dgst of their DER.
const EC_SHA384 = `-----BEGIN CERTIFICATE-----
MIIBdjCCARugAwIBAgIUW0yjutSKG1UUeL3e6vctKQ/lYjEwCgYIKoZIzj0EAwMw
EDEOMAwGA1UEAwwFY2IzODQwHhcNMjYxMjA0MTc1MjEwWhcNMzYxMjAxMTc1MjEw
WjAQMQ4wDAYDVQQDDAVjYjM4NDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPdO
c+WDd2pSvxSgDHZ5FazyFq/BoRnm7jwsWWEYeuMJhTWiYmyNcMqfk5AX+V2HJ4Gk
7TN7oDG0sPGcmEE1MIOjUzBRMB0GA1UdDgQWBBTF7Vdx9N2ykR2IQMZIwOSLyLh/
YzAfBgNVHSMEGDAWgBTF7Vdx9N2ykR2IQMZIwOSLyLh/YzAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMDA0kAMEYCIQC+dbqm3W8xQfk4zPiWFqcYcvxOK3fabvtI
Dq3tn3zp+AIhAN+MbqMquV+a+YXorh74eouMn66mQi8lWMvK7yACGpDw
-----END CERTIFICATE-----`
const EC_SHA1 = `-----BEGIN CERTIFICATE-----
MIIBbzCCARagAwIBAgIUXMrgTqp0W0qMLIw5SheZWKyjk6EwCQYHKoZIzj0EATAO
MQwwCgYDVQQDDANjYjEwHhcNMjYxMjA0MTc1MjEwWhcNMzYxMjAxMTc1MjEwWjAO
MQwwCgYDVQQDDANjYjEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT3TnPlg3dq
Ur8UoAx2eRWs8havwaEZ5u48LFlhGHrjCYU1omJsjXDKn5OQF/ldhyeBpO0ze6Ax
tLDxnJhBNTCDo1MwUTAdBgNVHQ4EFgQUxe1XcfTdspEdiEDGSMDki8i4f2MwHwYD
VR0jBBgwFoAUxe1XcfTdspEdiEDGSMDki8i4f2MwDwYDVR0TAQH/BAUwAwEB/zAJ
BgcqhkjOPQQBA0gAMEUCIQCxZbN+ACWP7337aiISfMl+JMGrUb9HLrhqoxnnLbGm
jwIgYe5C6Usw4VJszqwDUT0RJRCSl5SU6wIIGyU67PSAw74=
-----END CERTIFICATE-----`
