// pgbouncer.ini options an operator relies on, each observed from a real client: per-database and
// per-user settings, connect_query, client and server authentication methods, the unix socket,
// and the server checks.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { sharedPostgres, TEST_USERS, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor, runPsql } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const serverUsers = [TEST_USERS.scram, TEST_USERS.md5, TEST_USERS.plain]
for (const u of serverUsers) {
  test(`server login as ${u.user} (${u.auth}) with the password from userlist.txt`, { timeout: 30_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, {
      databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
      userlist: { [u.user]: u.password },
    })
    const c = await tp.connect(t, { user: u.user, password: u.password })
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, u.user)
  })
}

test('server login with an md5 hash in userlist.txt works for an md5 server user', { timeout: 30_000 }, async (t) => {
  const { createHash } = await import('node:crypto')
  const hash = 'md5' + createHash('md5').update(TEST_USERS.md5.password + TEST_USERS.md5.user).digest('hex')
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    userlist: { [TEST_USERS.md5.user]: hash },
  })
  const c = await tp.connect(t, { user: TEST_USERS.md5.user, password: 'ignored-with-trust' })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, TEST_USERS.md5.user)
})

const clientAuth = ['md5', 'plain'] as const
for (const method of clientAuth) {
  test(`auth_type ${method}: right password in, wrong password and unknown user get 28P01`, { timeout: 30_000 }, async (t) => {
    const tp = await startTidepool(t, pgi, {
      settings: { auth_type: method },
      userlist: { [pgi.user]: pgi.password },
    })
    const ok = await tp.connect(t)
    assert.equal((await ok.query('SELECT 1 AS one')).rows[0].one, 1)
    for (const [user, password] of [[pgi.user, 'wrong'], ['nobody', 'whatever']]) {
      const c = new pg.Client({ host: '127.0.0.1', port: tp.port, database: 'app', user, password })
      await assert.rejects(c.connect(), (e: any) => e.code === '28P01' && e.message === `password authentication failed for user "${user}"`)
    }
    assert.ok(!tp.logs.join('\n').includes(pgi.password), 'the password never appears in the log')
  })
}

test('auth_type any logs in as the user= of the database entry whatever the client says', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { auth_type: 'any' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${TEST_USERS.scram.user} password=${TEST_USERS.scram.password}` },
  })
  const c = await tp.connect(t, { user: 'someone-else', password: 'x' })
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, TEST_USERS.scram.user)
})

test('per-database pool_mode, pool_size and connect_query; per-user pool_mode', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { pool_mode: 'transaction' },
    databases: {
      app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password} pool_mode=session pool_size=3 connect_query='SET search_path = pg_catalog'`,
      other: `host=127.0.0.1 port=${pgi.port} dbname=app`,
    },
    users: { [TEST_USERS.scram.user]: 'pool_mode=statement max_user_connections=1' },
    userlist: { [TEST_USERS.scram.user]: TEST_USERS.scram.password, [pgi.user]: pgi.password },
  })
  const c = await tp.connect(t)
  assert.equal((await c.query('SHOW search_path')).rows[0].search_path, 'pg_catalog', 'connect_query ran on the server')
  const pool = tp.pool('app', pgi.user)
  assert.equal(pool?.settings.pool_mode, 'session')
  assert.equal(pool?.settings.pool_size, 3)
  const s = await tp.connect(t, { database: 'other', user: TEST_USERS.scram.user, password: TEST_USERS.scram.password })
  assert.equal(tp.pool('other', TEST_USERS.scram.user)?.settings.pool_mode, 'statement')
  await assert.rejects(s.query('BEGIN'), (e: any) => e.message === 'transaction blocks not allowed in statement pooling mode')
})

test('max_user_connections holds the second server for a user until the first is free', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    users: { [TEST_USERS.scram.user]: 'max_user_connections=1' },
    userlist: { [TEST_USERS.scram.user]: TEST_USERS.scram.password },
    settings: { default_pool_size: 5 },
  })
  const a = await tp.connect(t, { user: TEST_USERS.scram.user, password: TEST_USERS.scram.password })
  const b = await tp.connect(t, { user: TEST_USERS.scram.user, password: TEST_USERS.scram.password })
  await a.query('BEGIN')
  const pending = b.query('SELECT 1 AS one')
  await waitFor(() => tp.poolCounts('app', TEST_USERS.scram.user).cl_waiting === 1, { timeoutMs: 5_000, what: 'b waits' })
  assert.equal(tp.poolCounts('app', TEST_USERS.scram.user).sv_login, 0, 'no second server is opened')
  await a.query('COMMIT')
  assert.equal((await pending).rows[0].one, 1)
})

test('clients connect over the unix socket in unix_socket_dir', { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-sock-'))
  fs.chmodSync(dir, 0o777)
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const tp = await startTidepool(t, pgi, { settings: { unix_socket_dir: dir } })
  const files = fs.readdirSync(dir)
  assert.deepEqual(files, [`.s.PGSQL.${tp.port}`])
  const r = await runPsql({ host: dir, port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: `SELECT 'over unix'` })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'over unix')
})

test('server_reset_query_always runs DISCARD ALL in transaction mode too', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, server_reset_query_always: 1 } })
  const a = await tp.connect(t)
  await a.query(`SET statement_timeout = '4321'`)
  const b = await tp.connect(t)
  assert.equal((await b.query(`SELECT current_setting('statement_timeout') AS st`)).rows[0].st, '0')
})

test('server_check_query runs on a server idle longer than server_check_delay', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { default_pool_size: 1, server_check_delay: 0.3, server_check_query: `SELECT 'tidepool-check'` },
    tidepool: { janitor_interval_ms: 100 },
  })
  const c = await tp.connect(t)
  await c.query('SELECT 1')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_used === 1, { timeoutMs: 5_000, what: 'server to become used' })
  await c.query('SELECT 2')
  // The check query passed (the server was reused, not closed) and the pool is clean again.
  assert.equal(tp.logs.filter((l) => l.includes('[server.closed]')).length, 0)
  assert.equal(tp.poolCounts('app', pgi.user).sv_active, 0)
})

test('a failing server_check_query closes the server and the client gets a fresh one', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    settings: { default_pool_size: 1, server_check_delay: 0.2, server_check_query: 'SELECT broken syntax here' },
    tidepool: { janitor_interval_ms: 100 },
  })
  const c = await tp.connect(t)
  const p1 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_used === 1, { timeoutMs: 5_000, what: 'server to become used' })
  const p2 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p
  assert.notEqual(p1, p2)
  assert.ok(tp.logs.some((l) => l.includes('server_check_query failed')))
})

test('[users] client_idle_timeout applies to that user only', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    users: { [TEST_USERS.scram.user]: 'client_idle_timeout=1' },
    userlist: { [TEST_USERS.scram.user]: TEST_USERS.scram.password, [pgi.user]: pgi.password },
    tidepool: { janitor_interval_ms: 100 },
  })
  const limited = await tp.connect(t, { user: TEST_USERS.scram.user, password: TEST_USERS.scram.password })
  const other = await tp.connect(t)
  let err: any = null
  limited.on('error', (e) => { err ??= e })
  await limited.query('SELECT 1')
  await other.query('SELECT 1')
  await waitFor(() => err !== null, { timeoutMs: 5_000, what: 'the limited user to be closed' })
  assert.equal(err.message, 'client_idle_timeout')
  assert.equal((await other.query('SELECT 2 AS two')).rows[0].two, 2, 'the other user is not affected')
})

test('pools nobody uses are dropped after autodb_idle_timeout, and come back on demand', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    databases: { '*': `host=127.0.0.1 port=${pgi.port} user=${pgi.user} password=${pgi.password}` },
    settings: { autodb_idle_timeout: 0.5, server_idle_timeout: 0.2, default_pool_size: 1 },
    tidepool: { janitor_interval_ms: 100 },
  })
  const c = await tp.connect(t, { database: 'postgres' })
  await c.query('SELECT 1')
  await c.end()
  assert.ok(tp.pool('postgres', pgi.user) !== undefined)
  await waitFor(() => tp.pool('postgres', pgi.user) === undefined, { timeoutMs: 8_000, what: 'the idle pool to be dropped' })
  const d = await tp.connect(t, { database: 'postgres' })
  assert.equal((await d.query('SELECT 1 AS one')).rows[0].one, 1)
  assert.ok(tp.pool('postgres', pgi.user) !== undefined)
})
