// client_tls13_ciphers and client_tls_ecdhcurve are applied to the client handshake, not accepted
// and ignored: a client offering Node's defaults gets the one suite and the one curve configured.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts } from '../harness/certs.ts'
import { encryptionRequest } from '../harness/raw-client.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('client_tls13_ciphers and client_tls_ecdhcurve decide the TLS 1.3 suite and curve', { timeout: 30_000 }, async (t) => {
  const certs = makeCerts(t, 'alice')
  const tp = await startTidepool(t, pgi, {
    settings: {
      client_tls_sslmode: 'require', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert,
      client_tls13_ciphers: 'TLS_CHACHA20_POLY1305_SHA256', client_tls_ecdhcurve: 'secp384r1',
    },
  })
  // As libpq and node-postgres do it: SSLRequest, one byte of answer, then TLS on the same socket.
  const sock = net.connect({ host: '127.0.0.1', port: tp.port })
  sock.on('error', () => {})
  await new Promise<void>((resolve) => sock.once('connect', resolve))
  sock.write(encryptionRequest(80877103))
  const answer = await new Promise<Buffer>((resolve) => sock.once('data', resolve))
  assert.equal(answer.toString(), 'S')
  const secure = tls.connect({ socket: sock, rejectUnauthorized: false, minVersion: 'TLSv1.3' })
  await new Promise<void>((resolve, reject) => { secure.once('secureConnect', resolve); secure.once('error', reject) })
  secure.on('error', () => {}) // the reset when tidepool stops after the test
  t.after(() => secure.destroy())
  assert.equal(secure.getCipher().name, 'TLS_CHACHA20_POLY1305_SHA256')
  assert.equal((secure.getEphemeralKeyInfo() as tls.EphemeralKeyInfo).name, 'secp384r1')
})
