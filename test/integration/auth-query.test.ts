// auth_user / auth_query / auth_dbname against a real PostgreSQL: users missing from auth_file are
// looked up through a SECURITY DEFINER function (PgBouncer's recommended setup) or pg_authid, log in
// with SCRAM or md5 without a plain password anywhere in tidepool's files, and fail exactly like a
// wrong password when the lookup finds nothing. The lookup connection stays out of the client pools.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { execFileSync, spawnSync } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import postgres from 'postgres'
import { startPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { runPsql, waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'
import { makeCerts } from '../harness/certs.ts'
import { md5Password } from '../../src/auth/server-login.ts'
import { startupMessage } from '../../src/protocol/build.ts'

// The auth_user: no superuser, md5-stored password (its pg_hba line asks for md5), so auth_file
// holds only its md5 hash.
const AUTH = { user: 'tp_auth', password: 'tp-auth-pw' }
const AUTH_MD5 = md5Password(AUTH.user, AUTH.password)
const LOOKUP = 'SELECT uname, phash FROM public.tp_user_lookup($1)'
const NO_PASSWORD_USER = 'tp_nopw'

let pgi: PgInstance
let scramVerifier: string

async function execIn(db: string, statements: string[]): Promise<void> {
  const c = new pg.Client({ connectionString: pgi.url(db) })
  await c.connect()
  try {
    for (const s of statements) await c.query(s)
  } finally {
    await c.end()
  }
}

// PgBouncer's documented lookup function (plpgsql, SECURITY DEFINER, fixed search_path).
const lookupFunction = (name: string) => [
  `CREATE FUNCTION public.${name}(in i_username text, out uname text, out phash text) RETURNS record AS $$
   BEGIN
     SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
     FROM pg_authid WHERE rolname = i_username AND rolcanlogin INTO uname, phash;
     RETURN;
   END;
   $$ LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp`,
  `REVOKE ALL ON FUNCTION public.${name}(text) FROM public`,
  `GRANT EXECUTE ON FUNCTION public.${name}(text) TO ${AUTH.user}`,
]

before(async () => {
  pgi = await startPostgres({ hba: `host all ${AUTH.user} 127.0.0.1/32 md5` })
  await execIn('postgres', [
    `SET password_encryption = 'md5'`,
    `CREATE ROLE ${AUTH.user} LOGIN PASSWORD '${AUTH.password}'`,
    `CREATE ROLE ${NO_PASSWORD_USER} LOGIN`,
    `CREATE DATABASE authdb`,
  ])
  await execIn('app', lookupFunction('tp_user_lookup'))
  // Only authdb has this one: a query using it works only where auth_dbname points.
  await execIn('authdb', lookupFunction('authdb_lookup'))
  scramVerifier = (await pgi.query(`SELECT rolpassword FROM pg_authid WHERE rolname = $1`, [TEST_USERS.scram.user]))[0].rolpassword
  assert.match(scramVerifier, /^SCRAM-SHA-256\$/)
})
after(() => pgi.stop())

const scram = () => TEST_USERS.scram
const md5 = () => TEST_USERS.md5
const appDb = () => `host=127.0.0.1 port=${pgi.port} dbname=app`

function pgClient(tp: TestTidepool, user: string, password: string, database = 'app'): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database, user, password })
  c.on('error', () => {})
  return c
}

async function loginFails(tp: TestTidepool, user: string, password: string, database = 'app'): Promise<{ code: string; message: string }> {
  const c = pgClient(tp, user, password, database)
  try {
    await c.connect()
  } catch (e: any) {
    return { code: e.code, message: e.message }
  }
  await c.end()
  throw new Error(`login of ${user} to ${database} unexpectedly worked`)
}

/** Every file tidepool was given, read as text. */
function tidepoolFiles(tp: TestTidepool): string {
  return fs.readdirSync(tp.dir).map((f) => fs.readFileSync(join(tp.dir, f), 'utf8')).join('\n')
}

async function authUserSessions(): Promise<number> {
  return Number((await pgi.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1`, [AUTH.user]))[0].n)
}

test('a SCRAM user found by auth_query logs in with pg, postgres.js and psql; no plain password in tidepool\'s files', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const c = await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, scram().user)
  const sql = postgres({ host: '127.0.0.1', port: tp.port, database: 'app', username: scram().user, password: scram().password, max: 1 })
  t.after(() => sql.end({ timeout: 1 }))
  assert.equal((await sql`SELECT current_user AS u`)[0].u, scram().user)
  const p = await runPsql({ port: tp.port, user: scram().user, password: scram().password, db: 'app', sql: 'SELECT current_user' })
  assert.equal(p.code, 0, p.stderr)
  assert.equal(p.stdout.trim(), scram().user)

  const files = tidepoolFiles(tp)
  assert.ok(!files.includes(scram().password) && !files.includes(AUTH.password), 'no plain password in tidepool\'s files')
  const log = tp.logs.join('\n')
  for (const secret of [scram().password, AUTH.password, AUTH_MD5, scramVerifier.split('$')[2]]) assert.ok(!log.includes(secret), 'no secret in the log')

  // The lookups ran as tp_auth on connections of their own: no pool, no server of tp_auth's, and
  // no session of it left on the server.
  assert.deepEqual(tp.rt.poolList.map((x) => `${x.database}/${x.user}`), [`app/${scram().user}`])
  await waitFor(async () => (await authUserSessions()) === 0, { timeoutMs: 5_000, what: 'auth_user sessions to end' })
})

test('an md5 user found with the default auth_query (pg_authid as a superuser) logs in; auth_type plain too', { timeout: 60_000 }, async (t) => {
  for (const authType of ['md5', 'plain']) {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: authType, auth_user: pgi.user },
      databases: { app: appDb() },
      userlist: { [pgi.user]: pgi.password },
    })
    const c = await tp.connect(t, { user: md5().user, password: md5().password })
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, md5().user, authType)
    const p = await runPsql({ port: tp.port, user: md5().user, password: md5().password, db: 'app', sql: 'SELECT 1' })
    assert.equal(p.code, 0, p.stderr)
    assert.ok(!tp.logs.join('\n').includes(md5().password))
  }
})

test('wrong password, unknown user, user without password: all get 28P01 with the same text', { timeout: 60_000 }, async (t) => {
  for (const authType of ['scram-sha-256', 'md5']) {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: authType, auth_user: AUTH.user, auth_query: LOOKUP },
      databases: { app: appDb() },
      userlist: { [AUTH.user]: AUTH_MD5 },
    })
    for (const [user, password] of [[scram().user, 'wrong'], ['tp_no_such_user', 'x'], [NO_PASSWORD_USER, 'x'], [md5().user, 'wrong']]) {
      const e = await loginFails(tp, user, password)
      assert.deepEqual(e, { code: '28P01', message: `password authentication failed for user "${user}"` }, `${authType} ${user}`)
    }
    const good = await tp.connect(t, { user: scram().user, password: scram().password })
    assert.equal((await good.query('SELECT 1 AS one')).rows[0].one, 1)
  }
})

test('an unknown user gets a SCRAM challenge like a real one', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const first = async (user: string) => {
    const sock = net.connect({ host: '127.0.0.1', port: tp.port })
    t.after(() => sock.destroy())
    let buf = Buffer.alloc(0)
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]) })
    sock.on('error', () => {})
    await new Promise<void>((r) => sock.once('connect', () => r()))
    sock.write(startupMessage({ user, database: 'app' }))
    await waitFor(() => buf.length >= 9, { timeoutMs: 5_000, what: `first auth request for ${user}` })
    return { type: String.fromCharCode(buf[0]), code: buf.readInt32BE(5) }
  }
  assert.deepEqual(await first('tp_no_such_user'), await first(scram().user))
  assert.deepEqual(await first('tp_no_such_user'), { type: 'R', code: 10 })
})

test('a [databases] auth_user overrides the global one', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: 'tp_no_such_auth_user', auth_query: LOOKUP },
    databases: { app: `${appDb()} auth_user=${AUTH.user}`, app2: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const c = await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, scram().user)
  // app2 falls back to the global auth_user, which cannot log in: a config error, and the log says why.
  assert.deepEqual(await loginFails(tp, scram().user, scram().password, 'app2'), { code: '08P01', message: 'bouncer config error' })
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.failed]') && l.includes('auth_user "tp_no_such_auth_user"')), tp.logs.join('\n'))
})

test('auth_dbname: the query runs in that database, globally or per entry; SHOW SERVERS never lists the auth_user', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_dbname: 'authdb',
      auth_query: 'SELECT uname, phash FROM public.authdb_lookup($1)', admin_users: scram().user,
    },
    databases: {
      app: appDb(),
      authdb: `host=127.0.0.1 port=${pgi.port} dbname=authdb`,
      // Per entry, auth_dbname wins: app has no authdb_lookup, so this entry's lookups fail.
      app_local: `${appDb()} auth_dbname=app_local`,
    },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const c = await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal((await c.query('SELECT current_database() AS d')).rows[0].d, 'app')
  assert.deepEqual(await loginFails(tp, scram().user, scram().password, 'app_local'), { code: '08P01', message: 'bouncer config error' })
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.failed]') && l.includes('authdb_lookup')), 'the log names the failed query')

  // The admin console has no server database of its own: the global auth_dbname serves it.
  const admin = await tp.connect(t, { database: 'pgbouncer', user: scram().user, password: scram().password })
  const servers = (await admin.query('SHOW SERVERS')).rows
  assert.ok(servers.length > 0, 'the client pool has a server')
  assert.ok(servers.every((r) => r.user === scram().user), JSON.stringify(servers))
  const pools = (await admin.query('SHOW POOLS')).rows
  assert.ok(!pools.some((r) => r.user === AUTH.user), JSON.stringify(pools))
  await waitFor(async () => (await authUserSessions()) === 0, { timeoutMs: 5_000, what: 'auth_user sessions to end' })
})

test('server down or silent: the client gets a clear error at once or after server_connect_timeout, tidepool goes on', { timeout: 60_000 }, async (t) => {
  const closedPort = await freePort()
  const silent = net.createServer((s) => { s.on('error', () => {}) })
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
  t.after(() => silent.close())
  const silentPort = (silent.address() as net.AddressInfo).port
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP, server_connect_timeout: 1 },
    databases: {
      app: appDb(),
      down: `host=127.0.0.1 port=${closedPort} dbname=app`,
      silent: `host=127.0.0.1 port=${silentPort} dbname=app`,
    },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const unavailable = { code: '08P01', message: 'auth_query failed: server unavailable' }
  assert.deepEqual(await loginFails(tp, scram().user, scram().password, 'down'), unavailable)
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.failed]') && l.includes('ECONNREFUSED')), tp.logs.join('\n'))
  const startedAt = Date.now()
  assert.deepEqual(await loginFails(tp, scram().user, scram().password, 'silent'), unavailable)
  const tookMs = Date.now() - startedAt
  assert.ok(tookMs >= 900 && tookMs < 5_000, `gave up after ${tookMs} ms`)
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.failed]') && l.includes('no answer within 1000 ms')), tp.logs.join('\n'))
  assert.equal(tp.rt.authQuery.stats.failures, 2)
  const c = await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
})

test('answers are cached; concurrent logins of one user share one lookup; a wrong password drops the cached answer', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'scram-sha-256', auth_user: AUTH.user, default_pool_size: 2,
      // Slow enough that every login below starts while the first lookup still runs.
      auth_query: 'SELECT l.uname, l.phash FROM pg_sleep(0.5), public.tp_user_lookup($1) l',
    },
    tidepool: { auth_query_cache_ttl_ms: 60_000 },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const stats = tp.rt.authQuery.stats
  const clients = await Promise.all(Array.from({ length: 8 }, () => tp.connect(t, { user: scram().user, password: scram().password })))
  for (const c of clients) assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1)
  assert.deepEqual({ lookups: stats.lookups, joined: stats.joined, cacheHits: stats.cacheHits }, { lookups: 1, joined: 7, cacheHits: 0 })
  await (await tp.connect(t, { user: scram().user, password: scram().password })).query('SELECT 1')
  assert.deepEqual({ lookups: stats.lookups, cacheHits: stats.cacheHits }, { lookups: 1, cacheHits: 1 })
  await loginFails(tp, scram().user, 'wrong')
  assert.equal(stats.cacheHits, 2)
  await (await tp.connect(t, { user: scram().user, password: scram().password })).query('SELECT 1')
  assert.equal(stats.lookups, 2, 'the failed password dropped the cached answer')
})

test('auth_query_cache_ttl_ms = 0 asks the server at every login', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP },
    tidepool: { auth_query_cache_ttl_ms: 0 },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  for (let i = 0; i < 3; i++) await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal(tp.rt.authQuery.stats.lookups, 3)
  assert.equal(tp.rt.authQuery.stats.cacheHits, 0)
})

test('config: auth_user, auth_query and auth_dbname are applied; an auth_dbname that names no database is warned about', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP, auth_dbname: 'tp_missing_db' },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const warnings = tp.logs.filter((l) => l.includes('[config.warning]'))
  assert.ok(!warnings.some((l) => l.includes('not applied')), warnings.join('\n'))
  assert.ok(warnings.some((l) => l.includes('auth_dbname "tp_missing_db" is not in [databases]')), warnings.join('\n'))
  assert.deepEqual(await loginFails(tp, scram().user, scram().password), { code: '08P01', message: 'bouncer config error' })
  assert.ok(tp.logs.some((l) => l.includes('[auth_query.config_error]') && l.includes('"tp_missing_db" is not configured')), tp.logs.join('\n'))
})

test('auth_dbname = pgbouncer (global or in a [databases] entry) is refused by check-config, RELOAD and SET, as PgBouncer refuses it', { timeout: 60_000 }, async (t) => {
  const base = { settings: { auth_type: 'scram-sha-256', auth_user: AUTH.user, auth_query: LOOKUP }, databases: { app: appDb() }, userlist: { [AUTH.user]: AUTH_MD5, [pgi.user]: pgi.password } }
  const tp = await startTidepool(t, pgi, { ...base, settings: { ...base.settings, admin_users: pgi.user } })
  const checkConfig = () => spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'check-config', tp.iniPath], { encoding: 'utf8' })
  for (const variant of [{ ...base, settings: { ...base.settings, auth_dbname: 'pgbouncer' } }, { ...base, databases: { app: `${appDb()} auth_dbname=pgbouncer` } }]) {
    tp.rewrite(variant)
    const r = checkConfig()
    assert.equal(r.status, 2, r.stdout + r.stderr)
    assert.match(r.stdout, /tidepool\.ini:\d+: auth_dbname cannot be the admin console database "pgbouncer"/)
    const reload = await tp.rt.reload()
    assert.equal(reload.ok, false, 'RELOAD refuses the file')
    assert.match(reload.errors.join('\n'), /auth_dbname cannot be the admin console database "pgbouncer"/)
  }
  // The old config is still in force, and the console will not take the value either.
  const a = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
  a.on('error', () => {})
  await a.connect()
  t.after(() => a.end())
  await assert.rejects(a.query('SET auth_dbname = pgbouncer'), /SET failed/)
  assert.equal((await a.query('SHOW CONFIG')).rows.find((row) => row.key === 'auth_dbname')?.value, '')
  await (await tp.connect(t, { user: scram().user, password: scram().password })).query('SELECT 1')
})

test('lookups for many different names run at most default_pool_size at a time', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: {
      auth_type: 'scram-sha-256', auth_user: AUTH.user, default_pool_size: 2,
      auth_query: 'SELECT l.uname, l.phash FROM pg_sleep(0.5), public.tp_user_lookup($1) l',
    },
    databases: { app: appDb() },
    userlist: { [AUTH.user]: AUTH_MD5 },
  })
  const startedAt = Date.now()
  let peak = 0
  const sampler = setInterval(() => { void authUserSessions().then((n) => { peak = Math.max(peak, n) }) }, 50)
  t.after(() => clearInterval(sampler))
  const results = await Promise.all(Array.from({ length: 4 }, (_, i) => loginFails(tp, `tp_made_up_${i}`, 'x')))
  clearInterval(sampler)
  for (const e of results) assert.equal(e.code, '28P01')
  // Two at a time, half a second each: two rounds.
  assert.ok(Date.now() - startedAt >= 950, `took ${Date.now() - startedAt} ms`)
  assert.ok(peak >= 1 && peak <= 2, `peak ${peak} auth_user sessions`)
  assert.equal(tp.rt.authQuery.stats.lookups, 4)
})

test('the lookup connection uses server TLS like a pool\'s servers (verify-full)', { timeout: 90_000 }, async (t) => {
  const certs = makeCerts(t, pgi.user)
  // PostgreSQL reads its key as the postgres OS user and wants it private.
  const key = join(certs.dir, 'pg-server.key')
  fs.copyFileSync(certs.serverKey, key)
  fs.chownSync(key, Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), Number(execFileSync('id', ['-g', 'postgres']).toString().trim()))
  fs.chmodSync(key, 0o600)
  const tlsPg = await startPostgres({ settings: { ssl: 'on', ssl_cert_file: certs.serverCert, ssl_key_file: key, log_connections: 'on' } })
  t.after(() => tlsPg.stop())
  const tp = await startTidepool(t, tlsPg, {
    settings: { auth_type: 'scram-sha-256', auth_user: tlsPg.user, server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.caCert },
    databases: { app: `host=localhost port=${tlsPg.port} dbname=app` },
    userlist: { [tlsPg.user]: tlsPg.password },
  })
  const c = await tp.connect(t, { user: scram().user, password: scram().password })
  assert.equal((await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl, true)
  // The superuser logs in to app only for the lookup; PostgreSQL logs how it connected.
  await waitFor(() => /connection authorized: user=postgres database=app.*SSL enabled/.test(tlsPg.logs()), { timeoutMs: 5_000, what: 'the lookup\'s TLS login in the server log' })
})
