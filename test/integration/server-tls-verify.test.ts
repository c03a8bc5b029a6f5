// server_tls_sslmode = verify-full against a real PostgreSQL, host names and IP addresses checked by
// libpq's rules: an IP host against the certificate's iPAddress SANs, a name against its dNSName
// SANs (the CN only without any). For pooled server connections and for auth_query lookups, which
// open connections of their own. One server; each case swaps its certificate with a reload.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import tls from 'node:tls'
import net from 'node:net'
import { X509Certificate } from 'node:crypto'
import { startPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts, makeServerCert, type TestCerts } from '../harness/certs.ts'
import { waitFor } from '../harness/clients.ts'
import { connectServerTls, type ServerTls } from '../../src/net/tls.ts'

let tlsPg: PgInstance
let certs: TestCerts
/** The files PostgreSQL's ssl_cert_file and ssl_key_file name. */
let served: { cert: string; key: string }
let cert: Record<'dnsOnly' | 'ipOnly' | 'wrongName' | 'cnIp', { cert: string; key: string }>

// makeCerts wants a TestContext only to remove its dir; this file removes it when all tests are done.
const cleanups: Array<() => void | Promise<void>> = []
after(async () => { for (const f of cleanups.reverse()) await f() })

before(async () => {
  certs = makeCerts({ after: (f: () => void) => cleanups.push(f) } as never, 'postgres')
  cert = {
    dnsOnly: makeServerCert(certs, 'dns-only', 'localhost', 'DNS:localhost'),
    ipOnly: makeServerCert(certs, 'ip-only', 'tidepool-ip-cert', 'IP:127.0.0.1'),
    wrongName: makeServerCert(certs, 'wrong-name', 'db.example.com', 'DNS:db.example.com'),
    cnIp: makeServerCert(certs, 'cn-ip', '127.0.0.1', null),
  }
  served = makeServerCert(certs, 'served', 'localhost', 'DNS:localhost')
  tlsPg = await startPostgres({ settings: { ssl: 'on', ssl_cert_file: served.cert, ssl_key_file: served.key } })
  cleanups.push(() => tlsPg.stop())
})

/**
 * PostgreSQL serves `c` to new connections from here on: its ssl_* files are set on the command
 * line, so the files themselves are replaced and re-read on reload.
 */
async function serve(c: { cert: string; key: string }): Promise<void> {
  fs.copyFileSync(c.cert, served.cert)
  fs.copyFileSync(c.key, served.key)
  await tlsPg.query('SELECT pg_reload_conf()')
  const want = new X509Certificate(fs.readFileSync(c.cert)).fingerprint256
  await waitFor(async () => (await servedFingerprint()) === want, { timeoutMs: 10_000, what: 'the new certificate' })
}

/** The certificate PostgreSQL presents now: SSLRequest, then a handshake that checks nothing. */
function servedFingerprint(): Promise<string> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port: tlsPg.port })
    raw.on('error', reject)
    raw.once('connect', () => raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])))
    raw.once('data', () => {
      const s = tls.connect({ socket: raw, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '')
        s.destroy()
      })
      s.on('error', reject)
    })
  })
}

const pooled = (host: string) => ({
  databases: { app: `host=${host} port=${tlsPg.port} dbname=app user=${tlsPg.user} password=${tlsPg.password}` },
  settings: { server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.caCert },
})

async function pooledLogin(t: import('node:test').TestContext, host: string): Promise<string> {
  const tp = await startTidepool(t, tlsPg, pooled(host))
  try {
    const c = await tp.connect(t)
    const r = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    return r.rows[0].ssl === true ? 'ok over TLS' : 'ok in plain text'
  } catch (err) {
    return (err as Error).message
  }
}

test('verify-full, IP host 127.0.0.1: a certificate for DNS:localhost only is refused, one with IP SAN 127.0.0.1 accepted', { timeout: 90_000 }, async (t) => {
  await serve(cert.dnsOnly)
  assert.match(await pooledLogin(t, '127.0.0.1'), /server login failed: server certificate \(DNS:localhost, CN=localhost\) does not match host name "127\.0\.0\.1"/)
  await serve(cert.ipOnly)
  assert.equal(await pooledLogin(t, '127.0.0.1'), 'ok over TLS')
  // libpq's fallback for certificates without any IP SAN: the CN, compared as text.
  await serve(cert.cnIp)
  assert.equal(await pooledLogin(t, '127.0.0.1'), 'ok over TLS')
})

test('verify-full, name host localhost: DNS:localhost accepted, another name refused, an IP SAN alone refused', { timeout: 90_000 }, async (t) => {
  await serve(cert.dnsOnly)
  assert.equal(await pooledLogin(t, 'localhost'), 'ok over TLS')
  await serve(cert.wrongName)
  assert.match(await pooledLogin(t, 'localhost'), /server login failed: .*does not match host name "localhost"/)
  // No dNSName SAN: the CN ("tidepool-ip-cert") is what a name is matched against, not the IP SAN.
  await serve(cert.ipOnly)
  assert.match(await pooledLogin(t, 'localhost'), /does not match host name "localhost"/)
})

test('verify-full for auth_query lookups: the same check on the lookup connection', { timeout: 90_000 }, async (t) => {
  const scram = TEST_USERS.scram
  const authQuery = async (host: string): Promise<{ ok: boolean; logs: string[] }> => {
    const tp = await startTidepool(t, tlsPg, {
      settings: { auth_type: 'scram-sha-256', auth_user: tlsPg.user, server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.caCert },
      databases: { app: `host=${host} port=${tlsPg.port} dbname=app` },
      userlist: { [tlsPg.user]: tlsPg.password },
    })
    const ok = await tp.connect(t, { user: scram.user, password: scram.password }).then(() => true, () => false)
    return { ok, logs: tp.logs }
  }
  await serve(cert.dnsOnly)
  const refused = await authQuery('127.0.0.1')
  assert.equal(refused.ok, false)
  assert.ok(refused.logs.some((l) => /auth_query|lookup/.test(l) && l.includes('does not match host name "127.0.0.1"')), refused.logs.join('\n'))
  await serve(cert.ipOnly)
  assert.equal((await authQuery('127.0.0.1')).ok, true)
  await serve(cert.dnsOnly)
  assert.equal((await authQuery('localhost')).ok, true)
  await serve(cert.wrongName)
  assert.equal((await authQuery('localhost')).ok, false)
})

test('SNI: sent for a host name, never for an IP address', { timeout: 30_000 }, async (t) => {
  const seen: Array<string | false> = []
  const server = tls.createServer({ cert: fs.readFileSync(certs.serverCert), key: fs.readFileSync(certs.serverKey) }, (s) => {
    seen.push((s as tls.TLSSocket & { servername?: string | false }).servername ?? false)
    s.end('x')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.after(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const conf: ServerTls = { mode: 'require', isRequired: true, options: { rejectUnauthorized: false } }
  for (const host of ['localhost', '127.0.0.1']) {
    const raw = net.connect({ host: '127.0.0.1', port })
    await new Promise<void>((r) => raw.once('connect', () => r()))
    const s = connectServerTls(raw, conf, host)
    // The server's side of a TLS 1.3 handshake ends after the client's: wait for its word.
    await new Promise<void>((r) => { s.once('data', () => r()); s.once('error', () => r()) })
    s.destroy()
  }
  await waitFor(() => seen.length === 2, { timeoutMs: 5_000, what: 'both handshakes' })
  assert.deepEqual(seen, ['localhost', false])
})

/** The session's backend pid, whether it runs over TLS, and the protocol (pg_stat_ssl). */
async function session(c: import('pg').Client): Promise<{ pid: number; ssl: boolean; version: string | null }> {
  const r = await c.query('SELECT pid, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
  return r.rows[0]
}

test('SET server_tls_sslmode = verify-full before server_tls_ca_file: accepted; Node\'s roots do not know the test CA; each change retires the old servers', { timeout: 90_000 }, async (t) => {
  await serve(cert.dnsOnly)
  const tp = await startTidepool(t, tlsPg, {
    databases: { app: `host=localhost port=${tlsPg.port} dbname=app user=${tlsPg.user} password=${tlsPg.password}` },
    settings: { auth_type: 'md5', server_tls_sslmode: 'prefer', admin_users: 'tess', server_login_retry: 1, default_pool_size: 1 },
    userlist: { tess: 'tess-pw', [tlsPg.user]: tlsPg.password },
    tidepool: { janitor_interval_ms: 100 },
  })
  const c = await tp.connect(t)
  const before = await session(c)
  assert.equal(before.ssl, true)
  const admin = await tp.connect(t, { database: 'pgbouncer', user: 'tess', password: 'tess-pw' })
  // PgBouncer accepts the mode first and the CA later; so does tidepool, with no notice.
  const set = await admin.query(`SET server_tls_sslmode = 'verify-full'`)
  assert.equal(set.command, 'SET')
  // The server from before the change is not used again: the new login verifies, against Node's
  // root certificates, a certificate from a CA that is not among them.
  await assert.rejects(c.query('SELECT 1'), (e: any) => /server login failed: .*(self[- ]signed|unable to get local issuer|unable to verify)/i.test(e.message))
  await admin.query(`SET server_tls_ca_file = '${certs.caCert}'`)
  await waitFor(async () => {
    const d = await tp.connect(t)
    const s = await session(d)
    return s.ssl && s.pid !== before.pid
  }, { timeoutMs: 10_000, intervalMs: 500, what: 'a verified login once the CA is set' })
  assert.ok(tp.logs.some((l) => l.includes('[config.server_tls_changed]')))
})

test('RELOAD or SET of server TLS settings retires the servers opened before: idle ones at once, busy ones when released', { timeout: 90_000 }, async (t) => {
  await serve(cert.dnsOnly)
  const opts = {
    databases: { app: `host=localhost port=${tlsPg.port} dbname=app user=${tlsPg.user} password=${tlsPg.password}` },
    settings: { auth_type: 'md5', server_tls_sslmode: 'prefer', admin_users: 'tess', default_pool_size: 2 } as Record<string, string | number>,
    userlist: { tess: 'tess-pw', [tlsPg.user]: tlsPg.password },
    tidepool: { janitor_interval_ms: 600_000 },
  }
  const tp = await startTidepool(t, tlsPg, opts)
  const idle = await tp.connect(t)
  const busy = await tp.connect(t)
  await busy.query('BEGIN')
  const busyBefore = await session(busy)
  const idleBefore = await session(idle)
  assert.equal(idleBefore.ssl, true)
  const admin = await tp.connect(t, { database: 'pgbouncer', user: 'tess', password: 'tess-pw' })

  tp.rewrite({ ...opts, settings: { ...opts.settings, server_tls_sslmode: 'disable' } })
  await admin.query('RELOAD')
  const idleAfter = await session(idle)
  assert.notEqual(idleAfter.pid, idleBefore.pid, 'an idle server from before RELOAD was handed out again')
  assert.equal(idleAfter.ssl, false)
  assert.deepEqual(await session(busy), busyBefore, 'the transaction stays on its server')
  await busy.query('COMMIT')
  const busyAfter = await session(busy)
  assert.ok(busyAfter.pid !== busyBefore.pid && !busyAfter.ssl, 'the busy server was kept after its transaction')

  // SET of a protocol list: the plain servers retire too, the next ones speak TLS 1.3.
  await admin.query(`SET server_tls_sslmode = 'require'`)
  await admin.query(`SET server_tls_protocols = 'tlsv1.3'`)
  const last = await session(idle)
  assert.ok(last.ssl && last.version === 'TLSv1.3', JSON.stringify(last))
  // A RELOAD that changes nothing of server TLS keeps them.
  tp.rewrite({ ...opts, settings: { ...opts.settings, server_tls_sslmode: 'require', server_tls_protocols: 'tlsv1.3', default_pool_size: 3 } })
  await admin.query('RELOAD')
  assert.equal((await session(idle)).pid, last.pid)
})
