// The TLS settings Node is given, applied rather than accepted and ignored: client_tls13_ciphers
// and client_tls_ecdhcurve decide a real handshake; *_tls13_ciphers join *_tls_ciphers in Node's
// one `ciphers` list (each half defaulting on its own); values Node cannot honour are refused.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import tls from 'node:tls'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts } from '../harness/certs.ts'
import { loadConfigFromText } from '../../src/config/load.ts'
import { ciphersOption, clientTlsFromConfig, serverTlsFromConfig } from '../../src/net/tls.ts'
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

const DEFAULT_13 = tls.DEFAULT_CIPHERS.split(':').filter((x) => x.startsWith('TLS_'))

async function config(lines: string) {
  const r = await loadConfigFromText(`[databases]\napp = host=127.0.0.1\n[pgbouncer]\n${lines}\n`, '/nonexistent/tidepool.ini')
  if (!r.ok) throw new Error(r.errors.join('\n'))
  return r.config
}

test('server_tls13_ciphers reaches the server TLS options', async () => {
  const c = await config('server_tls_sslmode = prefer\nserver_tls13_ciphers = TLS_CHACHA20_POLY1305_SHA256')
  const suites = (serverTlsFromConfig(c)?.options.ciphers ?? '').split(':').filter((x) => x.startsWith('TLS_'))
  assert.deepEqual(suites, ['TLS_CHACHA20_POLY1305_SHA256'])
})

test('a TLS 1.2 cipher list alone keeps the default TLS 1.3 suites', () => {
  const list = (ciphersOption('client', 'ECDHE-RSA-AES128-GCM-SHA256', '') ?? '').split(':')
  assert.deepEqual(list.filter((x) => x.startsWith('TLS_')), DEFAULT_13)
  assert.ok(list.includes('ECDHE-RSA-AES128-GCM-SHA256'))
  assert.equal(ciphersOption('client', 'default', ''), undefined, 'both default: Node decides')
})

test('a *_tls13_ciphers entry that is not a TLS 1.3 suite is refused, naming the setting', () => {
  assert.throws(() => ciphersOption('server', 'default', 'AES128-SHA'), /server_tls13_ciphers: "AES128-SHA" is not a TLS 1.3 cipher suite/)
})

test('client_tls_ecdhcurve none and client_tls_dheparams legacy are refused, not ignored', async () => {
  // Checked before the key and certificate files are read, so none are needed here.
  const base = 'client_tls_sslmode = disable\n'
  const on = async (extra: string) => {
    const c = await config(base + extra)
    return () => clientTlsFromConfig({ ...c, settings: { ...c.settings, client_tls_sslmode: 'prefer' } })
  }
  assert.throws(await on('client_tls_ecdhcurve = none'), /client_tls_ecdhcurve none is not supported/)
  assert.throws(await on('client_tls_dheparams = legacy'), /client_tls_dheparams legacy: only none and auto are supported/)
})
