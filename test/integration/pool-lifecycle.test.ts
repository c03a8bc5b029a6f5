// What a pool's servers go through outside the data path: RECONNECT retires them at once (no client
// is handed a server opened before it, a busy one finishes its transaction first), as PgBouncer's
// tag_pool_dirty; min_pool_size is opened for a forced-user entry before any client comes
// (PgBouncer 1.21+), and not while paused.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

// No janitor sweep during a test: what RECONNECT does must not depend on one.
const noSweep = { janitor_interval_ms: 600_000 }

async function pid(c: pg.Client): Promise<number> {
  return (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number
}

async function start(t: TestContext): Promise<TestTidepool> {
  return startTidepool(t, pgi, {
    userlist: { rita: 'rita-pw' },
    databases: { app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` },
    settings: { auth_type: 'md5', admin_users: 'rita', default_pool_size: 2, pool_mode: 'transaction' },
    tidepool: noSweep,
  })
}

test('RECONNECT: the next query gets a new server at once; a busy one finishes its transaction, then retires', { timeout: 30_000 }, async (t) => {
  const tp = await start(t)
  const idle = await tp.connect(t, { user: 'rita', password: 'rita-pw' })
  const busy = await tp.connect(t, { user: 'rita', password: 'rita-pw' })
  await busy.query('BEGIN')
  const busyPid = await pid(busy)
  const idlePid = await pid(idle)
  assert.notEqual(idlePid, busyPid)

  const admin = await tp.connect(t, { database: 'pgbouncer', user: 'rita', password: 'rita-pw' })
  await admin.query('RECONNECT')
  const after = await pid(idle)
  assert.notEqual(after, idlePid, 'the idle server from before RECONNECT was handed out again')
  assert.equal(await pid(busy), busyPid, 'the transaction stays on its server')
  await busy.query('COMMIT')
  await admin.query('WAIT_CLOSE')
  const next = await pid(busy)
  assert.ok(next !== busyPid && next !== idlePid, 'a server from before RECONNECT was handed out again')
  // The old backends are gone at PostgreSQL, not just set aside.
  await waitFor(async () => (await pgi.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)', [[idlePid, busyPid]]))[0].n === 0,
    { timeoutMs: 5_000, what: 'the retired backends to end' })
  const logs = tp.logs.join('\n')
  assert.match(logs, /closing because: obsolete connection \(RECONNECT\)/)
  assert.match(logs, /closing because: database configuration changed/)
})

test('min_pool_size is opened for a forced-user entry with no client at all, not for a per-user one, and not while paused', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    userlist: { rita: 'rita-pw' },
    databases: {
      forced: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password} min_pool_size=2`,
      peruser: `host=127.0.0.1 port=${pgi.port} dbname=postgres min_pool_size=2`,
    },
    settings: { auth_type: 'md5', admin_users: 'rita', default_pool_size: 3 },
    tidepool: { janitor_interval_ms: 100 },
  })
  const opened = () => tp.poolCounts('forced', pgi.user)
  await waitFor(() => opened().sv_idle === 2, { timeoutMs: 10_000, what: 'two pre-warmed servers' })
  const backends = async () => (await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND usename = $1 AND pid <> pg_backend_pid()`, [pgi.user]))[0].n as number
  assert.equal(await backends(), 2, 'the servers are real PostgreSQL sessions')
  assert.equal(tp.rt.poolList.filter((p) => p.database === 'peruser').length, 0, 'no pool for an entry without user=')

  const admin = await tp.connect(t, { database: 'pgbouncer', user: 'rita', password: 'rita-pw' })
  await admin.query('PAUSE forced')
  await waitFor(() => opened().sv_idle === 0, { timeoutMs: 5_000, what: 'paused idle servers to close' })
  // A few sweeps: nothing is reopened while paused.
  await new Promise((r) => setTimeout(r, 600))
  assert.equal(opened().sv_idle + opened().sv_login, 0)
  await admin.query('RESUME forced')
  await waitFor(() => opened().sv_idle === 2, { timeoutMs: 10_000, what: 'the minimum again after RESUME' })
})
