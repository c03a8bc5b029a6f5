// The TLS settings Node is given: *_tls13_ciphers joined with *_tls_ciphers into Node's one
// `ciphers` list (each half defaulting on its own), and the values Node cannot honour refused.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { loadConfigFromText } from '../../src/config/load.ts'
import { ciphersOption, clientTlsFromConfig, serverTlsFromConfig } from '../../src/net/tls.ts'

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
