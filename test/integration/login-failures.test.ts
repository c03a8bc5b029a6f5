// A server login that fails after the pool has worked (a changed password, a role made NOLOGIN)
// must reach the clients waiting for that pool at once, with PostgreSQL's own error, as PgBouncer's
// kill_pool_logins does; for server_login_retry later clients get the kept error straight away
// (PgBouncer 1.24's "server login has been failing, cached error: ..."), and PostgreSQL sees one
// failed login, not one per client. A server still starting up (57P03) is retried instead.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const fast = { janitor_interval_ms: 100 }

/** Rejects after `ms` naming `what`: a client that hangs fails the test instead of its timeout. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms) })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

async function connectAs(t: TestContext, tp: TestTidepool, user: string, password: string): Promise<pg.Client> {
  return tp.connect(t, { user, password })
}

/** Ends the role's server sessions (tidepool's idle server among them) and waits until tidepool has let go of them. */
async function dropServers(tp: TestTidepool, role: string): Promise<void> {
  await pgi.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role])
  await waitFor(() => {
    const k = tp.poolCounts('app', role)
    return k.sv_idle + k.sv_used + k.sv_active + k.sv_login + k.sv_tested === 0
  }, { timeoutMs: 10_000, what: 'tidepool to notice its server was terminated' })
}

/** How often PostgreSQL logged `message` so far. */
function pgLogCount(message: string): number {
  return pgi.logs().split('\n').filter((l) => l.includes('FATAL') && l.includes(message)).length
}

test('a changed server password reaches every queued client of a pool that worked before, and is kept for server_login_retry', { timeout: 60_000 }, async (t) => {
  const role = 'lf_pwchange'
  await pgi.query(`CREATE ROLE ${role} LOGIN PASSWORD 'old-pw'`)
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    settings: { auth_type: 'md5', default_pool_size: 2, query_wait_timeout: 120, server_login_retry: 8 },
    userlist: { [role]: 'old-pw' },
    tidepool: fast,
  })
  const c1 = await connectAs(t, tp, role, 'old-pw')
  assert.equal((await c1.query('SELECT 1 AS one')).rows[0].one, 1)

  await pgi.query(`ALTER ROLE ${role} PASSWORD 'new-pw'`)
  await dropServers(tp, role)
  const failedBefore = pgLogCount(`password authentication failed for user "${role}"`)
  // c2 logs in to tidepool (the pool knows its parameters); both now need a new server.
  const c2 = await connectAs(t, tp, role, 'old-pw')
  const wrongPassword = (e: any) => e.code === '28P01' && e.message === `password authentication failed for user "${role}"`
  await Promise.all([
    assert.rejects(within(c1.query('SELECT 1'), 15_000, 'c1'), wrongPassword),
    assert.rejects(within(c2.query('SELECT 1'), 15_000, 'c2'), wrongPassword),
  ])

  // One login per waiter at most (pool_size 2), none more for a client that comes later.
  const failures = () => pgLogCount(`password authentication failed for user "${role}"`) - failedBefore
  await waitFor(() => failures() > 0 && tp.poolCounts('app', role).sv_login === 0, { timeoutMs: 5_000, what: 'the logins to end' })
  await new Promise((r) => setTimeout(r, 300))
  const failed = failures()
  assert.ok(failed <= 2, `${failed} failed logins at PostgreSQL for two clients`)

  // Within server_login_retry a client that needs a server hears the kept error at once.
  const c3 = await connectAs(t, tp, role, 'old-pw')
  await assert.rejects(within(c3.query('SELECT 1'), 5_000, 'c3'), (e: any) => e.code === '08P01' &&
    e.message === `server login has been failing, cached error: password authentication failed for user "${role}" (server_login_retry)`)
  assert.equal(tp.poolCounts('app', role).sv_login, 0, 'no login started for c3')
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(failures(), failed, 'c3 cost PostgreSQL no login')

  // Once the password is right again and server_login_retry has passed, clients are served.
  await pgi.query(`ALTER ROLE ${role} PASSWORD 'old-pw'`)
  await waitFor(async () => {
    const c = await connectAs(t, tp, role, 'old-pw')
    return (await c.query('SELECT 2 AS two')).rows[0].two === 2
  }, { timeoutMs: 20_000, intervalMs: 1_000, what: 'a client to be served after the retry' })
})

test('a role made NOLOGIN: the waiting client gets PostgreSQL\'s refusal, the next one the kept error', { timeout: 60_000 }, async (t) => {
  const role = 'lf_nologin'
  await pgi.query(`CREATE ROLE ${role} LOGIN PASSWORD 'nl-pw'`)
  t.after(() => pgi.query(`ALTER ROLE ${role} LOGIN`))
  // A forced user: every client name in the userlist shares the pool of lf_nologin.
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${role} password=nl-pw` },
    settings: { auth_type: 'md5', default_pool_size: 1, query_wait_timeout: 120 },
    userlist: { alice: 'alice-pw', bob: 'bob-pw' },
    tidepool: fast,
  })
  const a = await connectAs(t, tp, 'alice', 'alice-pw')
  await a.query('SELECT 1')
  await pgi.query(`ALTER ROLE ${role} NOLOGIN`)
  await dropServers(tp, role)
  const notPermitted = `role "${role}" is not permitted to log in`
  await assert.rejects(within(a.query('SELECT 1'), 15_000, 'alice'), (e: any) => e.code === '28000' && e.message === notPermitted)
  const b = await connectAs(t, tp, 'bob', 'bob-pw')
  await assert.rejects(within(b.query('SELECT 1'), 5_000, 'bob'), (e: any) => e.code === '08P01' &&
    e.message === `server login has been failing, cached error: ${notPermitted} (server_login_retry)`)
})

test('a server that is starting up (57P03) is retried: the client logs in once it answers', { timeout: 60_000 }, async (t) => {
  // The first two connections are told "the database system is starting up"; later ones reach PostgreSQL.
  let refusals = 2
  const sockets = new Set<net.Socket>()
  const front = net.createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    if (refusals > 0) {
      refusals--
      sock.once('data', () => sock.end(build.errorResponse({ severity: 'FATAL', code: '57P03', message: 'the database system is starting up' })))
      return
    }
    const back = net.connect(pgi.port, '127.0.0.1')
    sockets.add(back)
    back.on('error', () => sock.destroy())
    sock.on('close', () => back.destroy())
    back.on('close', () => sock.destroy())
    sock.pipe(back)
    back.pipe(sock)
  })
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()))
  t.after(() => {
    for (const s of sockets) s.destroy()
    front.close()
  })
  const port = (front.address() as net.AddressInfo).port
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${port} dbname=app user=${pgi.user} password=${pgi.password}` },
    settings: { auth_type: 'md5', server_tls_sslmode: 'disable', server_login_retry: 1, client_login_timeout: 30 },
    userlist: { carol: 'carol-pw' },
    tidepool: fast,
  })
  const c = await within(connectAs(t, tp, 'carol', 'carol-pw'), 20_000, 'carol\'s login')
  assert.equal((await c.query('SELECT 3 AS three')).rows[0].three, 3)
  assert.equal(refusals, 0, 'both refusals were met')
  assert.ok(tp.logs.some((l) => l.includes('the database system is starting up')), 'the refusal is logged')
})

test('after RECONNECT a failed login reaches the queued clients even while an old server is still busy', { timeout: 60_000 }, async (t) => {
  // PgBouncer's test_change_server_password_reconnect: RECONNECT marks the pool's servers, so the
  // busy one no longer counts as usable and the queued clients hear the new login's failure.
  const role = 'lf_reconnect'
  await pgi.query(`CREATE ROLE ${role} LOGIN PASSWORD 'rc-pw'`)
  const tp = await startTidepool(t, pgi, {
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app` },
    settings: { auth_type: 'md5', default_pool_size: 1, query_wait_timeout: 120, admin_users: 'opal' },
    userlist: { [role]: 'rc-pw', opal: 'opal-pw' },
    tidepool: fast,
  })
  const holder = await connectAs(t, tp, role, 'rc-pw')
  await holder.query('BEGIN')
  await holder.query('SELECT 1')
  await pgi.query(`ALTER ROLE ${role} PASSWORD 'changed-pw'`)
  const waiters = await Promise.all([1, 2, 3].map(() => connectAs(t, tp, role, 'rc-pw')))
  const queries = waiters.map((c) => c.query('SELECT 1'))
  await waitFor(() => tp.poolCounts('app', role).cl_waiting === 3, { timeoutMs: 5_000, what: 'three queued clients' })
  const admin = await tp.connect(t, { database: 'pgbouncer', user: 'opal', password: 'opal-pw' })
  await admin.query('RECONNECT')
  await admin.query('SET default_pool_size = 2')
  for (const [i, q] of queries.entries()) {
    await assert.rejects(within(q, 15_000, `waiter ${i}`), (e: any) => e.code === '28P01' && /password authentication failed/.test(e.message))
  }
  // The transaction that held the old server is untouched.
  assert.equal((await holder.query('SELECT 4 AS four')).rows[0].four, 4)
  await holder.query('COMMIT')
})
