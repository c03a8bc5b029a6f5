// Client logins with SCRAM-SHA-256, as PgBouncer documents them: against a plain password or a
// stored verifier, md5 switching to SCRAM for verifier users, a server login that needs no plain
// password at all, and bad SASL input.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import postgres from 'postgres'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { runPsql, waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'
import { parseErrorFields } from '../../src/protocol/reader.ts'

let pgi: PgInstance
let verifier: string
before(async () => {
  pgi = await sharedPostgres()
  verifier = (await pgi.query(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, [TEST_USERS.scram.user]))[0].rolpassword
  assert.match(verifier, /^SCRAM-SHA-256\$/)
})

const u = () => TEST_USERS.scram

test('scram-sha-256 with a plain password: pg, postgres.js and psql log in; wrong and unknown get 28P01', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [u().user]: u().password, md5user: 'md5' + 'a'.repeat(32) },
  })
  const c = await tp.connect(t, { user: u().user, password: u().password })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, u().user)
  const sql = postgres({ host: '127.0.0.1', port: tp.port, database: 'app', username: u().user, password: u().password, max: 1 })
  t.after(() => sql.end({ timeout: 1 }))
  assert.equal((await sql`SELECT 1 AS one`)[0].one, 1)
  const p = await runPsql({ port: tp.port, user: u().user, password: u().password, db: 'app', sql: 'SELECT 42' })
  assert.equal(p.code, 0, p.stderr)
  for (const [user, password] of [[u().user, 'wrong'], ['nobody', 'x'], ['md5user', 'x']]) {
    const bad = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user, password })
    await assert.rejects(bad.connect(), (e: any) => e.code === '28P01' && e.message === `password authentication failed for user "${user}"`, user)
  }
  assert.ok(!tp.logs.join('\n').includes(u().password), 'no password in the log')
})

test('only a SCRAM verifier stored: the client logs in and tidepool logs in to the server with the keys it proved', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [u().user]: verifier },
  })
  const c = await tp.connect(t, { user: u().user, password: u().password })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, u().user)
  const bad = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: u().user, password: 'wrong' })
  await assert.rejects(bad.connect(), (e: any) => e.code === '28P01')
  assert.ok(!tp.logs.join('\n').includes(verifier.split('$')[2]), 'no keys in the log')
})

test('auth_type md5 uses SCRAM for a user stored with a verifier; plain accepts a verifier too', { timeout: 60_000 }, async (t) => {
  for (const method of ['md5', 'plain']) {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: method },
      databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
      userlist: { [u().user]: verifier },
    })
    const c = await tp.connect(t, { user: u().user, password: u().password })
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, method)
  }
})

test('a server login that cannot work reaches the waiting client with the reason', { timeout: 30_000 }, async (t) => {
  // A verifier in auth_file and trust for clients: no SCRAM exchange ever gives tidepool the keys.
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'trust' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [u().user]: verifier },
  })
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: u().user })
  await assert.rejects(c.connect(), (e: any) => /server login failed: SCRAM needs the plain password/.test(e.message))
})

async function rawScram(t: import('node:test').TestContext, port: number) {
  const sock = net.connect({ host: '127.0.0.1', port })
  let buf = Buffer.alloc(0)
  let closed = false
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]) })
  sock.on('error', () => {})
  sock.on('close', () => { closed = true })
  await new Promise<void>((r) => sock.once('connect', () => r()))
  t.after(() => sock.destroy())
  sock.write(build.startupMessage({ user: u().user, database: 'app' }))
  await waitFor(() => buf.length > 0, { timeoutMs: 5_000, what: 'AuthenticationSASL' })
  return { sock, get buf() { return buf }, get closed() { return closed } }
}

const badSasl: Array<{ name: string; msg: () => Buffer; code: string }> = [
  { name: 'an unknown mechanism', msg: () => build.saslInitialResponse('SCRAM-SHA-1', Buffer.from('n,,n=,r=abc')), code: '08P01' },
  { name: 'channel binding asked for', msg: () => build.saslInitialResponse('SCRAM-SHA-256', Buffer.from('p=tls-server-end-point,,n=,r=abc')), code: '08P01' },
  { name: 'garbage instead of client-first', msg: () => build.saslInitialResponse('SCRAM-SHA-256', Buffer.from('hello')), code: '08P01' },
  { name: 'a truncated SASLInitialResponse', msg: () => Buffer.from([0x70, 0, 0, 0, 8, 0x53, 0x43, 0x52, 0x41]), code: '08P01' },
  { name: 'a Query instead of a password message', msg: () => build.query('SELECT 1'), code: '08P01' },
]
for (const c of badSasl) {
  test(`SCRAM login with ${c.name}: ${c.code} and a clean close`, { timeout: 20_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, { settings: { auth_type: 'scram-sha-256' }, userlist: { [u().user]: u().password } })
    const r = await rawScram(t, tp.port)
    r.sock.write(c.msg())
    await waitFor(() => r.closed, { timeoutMs: 5_000, what: 'close' })
    const at = r.buf.indexOf(0x45, 1)
    assert.ok(at > 0, 'an ErrorResponse')
    const e = parseErrorFields(r.buf, at + 5, at + 1 + r.buf.readInt32BE(at + 1))
    assert.equal(e.code, c.code)
    const good = await tp.connect(t, { user: u().user, password: u().password })
    assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1)
  })
}

test('a client that stops mid-SCRAM is closed by client_login_timeout', { timeout: 20_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { auth_type: 'scram-sha-256', client_login_timeout: 1 }, userlist: { [u().user]: u().password }, tidepool: { janitor_interval_ms: 100 } })
  const r = await rawScram(t, tp.port)
  r.sock.write(build.saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abcdef')))
  await waitFor(() => r.closed, { timeoutMs: 5_000, what: 'client_login_timeout' })
  assert.ok(tp.logs.some((l) => l.includes('client_login_timeout')))
})

test('RELOAD with a new userlist: new logins use it, connected clients stay', { timeout: 30_000 }, async (t) => {
  const opts = (password: string) => ({
    settings: { auth_type: 'scram-sha-256', listen_port: 0 },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
    userlist: { alice: password },
  })
  const tp = await startTidepool(t, pgi, opts('first-pw'))
  const old = await tp.connect(t, { user: 'alice', password: 'first-pw' })
  tp.rewrite(opts('second-pw'))
  const r = await tp.rt.reload()
  assert.equal(r.ok, true, r.errors.join('\n'))
  const stale = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user: 'alice', password: 'first-pw' })
  await assert.rejects(stale.connect(), (e: any) => e.code === '28P01')
  const fresh = await tp.connect(t, { user: 'alice', password: 'second-pw' })
  assert.equal((await fresh.query('SELECT 1 AS one')).rows[0].one, 1)
  assert.equal((await old.query('SELECT 2 AS two')).rows[0].two, 2, 'the connected client is untouched')
})
