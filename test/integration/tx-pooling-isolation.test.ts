// Session state in transaction mode: 20 clients share a pool of 2 servers for many rounds, and no
// client ever observes another's GUCs, notifications, advisory locks, temporary tables, SQL
// prepared statements, WITH HOLD cursors or protocol-level statements. Session-bound state pins its
// client (session_state_policy = pin) until it is gone, or is refused (error).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool, type TestTidepool } from '../harness/tidepool.ts'
import { connectDirect, waitFor } from '../harness/clients.ts'
import { freePort } from '../harness/ports.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const N = 20
const ROUNDS = 15

/** What each client set: even clients set every GUC kind, odd ones never do. */
const sets = (i: number) => i % 2 === 0

interface Seen { guc: string | null; path: string; timeout: string; app: string }

async function observe(c: pg.Client, i: number): Promise<Seen> {
  // Each query a transaction of its own, so consecutive ones may land on different servers.
  const guc = (await c.query(`SELECT current_setting('myapp.who', true) AS v`)).rows[0].v as string | null
  const r = await c.query({ name: 'observe', text: `SELECT current_setting('search_path') AS path, current_setting('statement_timeout') AS timeout, current_setting('application_name') AS app, $1::int AS i`, values: [i] })
  assert.equal(r.rows[0].i, i, `client ${i} got its own protocol-level statement`)
  return { guc: guc === '' ? null : guc, path: r.rows[0].path, timeout: r.rows[0].timeout, app: r.rows[0].app }
}

function expected(i: number, defaults: Seen): Seen {
  if (!sets(i)) return defaults
  return { guc: `c${i}`, path: `s${i}, public`, timeout: `${1001 + i}ms`, app: `app-${i}` }
}

async function roundOfChecks(clients: pg.Client[], defaults: Seen, skip: ReadonlySet<number>, round: string): Promise<void> {
  const seen = await Promise.all(clients.map((c, i) => (skip.has(i) ? null : observe(c, i))))
  seen.forEach((s, i) => {
    if (s !== null) assert.deepEqual(s, expected(i, defaults), `${round}: client ${i} sees only its own GUCs`)
  })
}

/** State a session can hold that no other client may see, as seen from one session. */
async function boundState(c: pg.Client): Promise<{ listens: number; locks: number; temps: number; prepared: number; cursors: number }> {
  const r = await c.query(`SELECT
    (SELECT count(*) FROM pg_listening_channels())::int AS listens,
    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int AS locks,
    (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int AS temps,
    (SELECT count(*) FROM pg_prepared_statements WHERE from_sql)::int AS prepared,
    (SELECT count(*) FROM pg_cursors WHERE is_holdable)::int AS cursors`)
  return r.rows[0]
}

const NONE = { listens: 0, locks: 0, temps: 0, prepared: 0, cursors: 0 }

const BOUND_KINDS: ReadonlyArray<{ kind: keyof typeof NONE; create: string[]; check: string; drop: string }> = [
  { kind: 'listens', create: ['LISTEN iso_chan'], check: `SELECT count(*)::int AS n FROM pg_listening_channels()`, drop: 'UNLISTEN *' },
  { kind: 'locks', create: ['SELECT pg_advisory_lock(4242)'], check: `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`, drop: 'SELECT pg_advisory_unlock_all()' },
  { kind: 'temps', create: ['CREATE TEMP TABLE iso_tmp (x int)', 'INSERT INTO iso_tmp VALUES (1)'], check: `SELECT count(*)::int AS n FROM iso_tmp`, drop: 'DISCARD TEMP' },
  { kind: 'prepared', create: ['PREPARE iso_p AS SELECT 1'], check: `SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'iso_p'`, drop: 'DEALLOCATE iso_p' },
  { kind: 'cursors', create: ['BEGIN', 'DECLARE iso_c CURSOR WITH HOLD FOR SELECT 1', 'COMMIT'], check: `SELECT count(*)::int AS n FROM pg_cursors WHERE name = 'iso_c'`, drop: 'CLOSE iso_c' },
]

test('20 clients on 2 servers: no client ever observes another\'s session state', { timeout: 110_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const clients = await Promise.all(Array.from({ length: N }, () => tp.connect(t)))
  const fresh = await tp.connect(t)
  const defaults = await observe(fresh, 999)
  assert.equal(defaults.guc, null)
  // Even clients set every GUC kind, each in its own way (SET, SET SESSION, set_config, multi-statement).
  await Promise.all(clients.map(async (c, i) => {
    if (!sets(i)) return
    await c.query(`SET myapp.who = 'c${i}'`)
    await c.query(`SET SESSION search_path = s${i}, public`)
    await c.query(`SELECT set_config('statement_timeout', '${1001 + i}ms', false)`)
    await c.query(`SELECT 1; SET application_name = 'app-${i}'`)
    // Transaction-scoped changes must not stick.
    await c.query(`BEGIN; SET LOCAL myapp.who = 'local'; SELECT set_config('search_path', 'nowhere', true); COMMIT`)
    await c.query(`BEGIN; SET myapp.who = 'rolled back'; ROLLBACK`)
  }))
  for (let round = 0; round < ROUNDS; round++) await roundOfChecks(clients, defaults, new Set(), `round ${round}`)

  const pool = tp.pool('app', pgi.user)!
  for (const [k, b] of BOUND_KINDS.entries()) {
    const holder = k * 3 + 1
    for (const sql of b.create) await clients[holder].query(sql)
    // The probe that pins runs right after the holder's ReadyForQuery (its next message waits for it).
    await waitFor(() => pool.pinnedClients === 1, { timeoutMs: 5_000, what: `${b.kind}: the holder to be pinned` })
    // Everyone else shares the one remaining server, several rounds, and sees none of it.
    for (let round = 0; round < 2; round++) {
      await roundOfChecks(clients, defaults, new Set([holder]), `${b.kind} round ${round}`)
      const others = await Promise.all(clients.map((c, i) => (i === holder ? null : boundState(c))))
      others.forEach((s, i) => { if (s !== null) assert.deepEqual(s, NONE, `${b.kind}: client ${i} sees no session-bound state`) })
      assert.equal((await clients[holder].query(b.check)).rows[0].n, 1, `${b.kind}: the holder keeps its state`)
    }
    await clients[holder].query(b.drop)
    await waitFor(() => pool.pinnedClients === 0, { timeoutMs: 5_000, what: `${b.kind}: the holder to be unpinned` })
    await roundOfChecks(clients, defaults, new Set(), `after ${b.kind}`)
  }
  // RESET ALL clears a client's GUCs: it sees the defaults again (application_name included).
  await clients[0].query('RESET ALL')
  assert.deepEqual(await observe(clients[0], 0), { ...defaults })
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'servers back in the pool' })
})

test('LISTEN/NOTIFY: notifications reach exactly the listening clients', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 3, admin_users: pgi.user } })
  const got = new Map<number, string[]>()
  const clients = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const c = await tp.connect(t)
    got.set(i, [])
    c.on('notification', (n) => got.get(i)!.push(`${n.channel}:${n.payload}`))
    return c
  }))
  await clients[1].query('LISTEN ch_a')
  await clients[2].query('LISTEN ch_b')
  const pool = tp.pool('app', pgi.user)!
  await waitFor(() => pool.pinnedClients === 2, { timeoutMs: 5_000, what: 'both listeners to be pinned' })
  // SHOW CLIENTS names why each pinned client keeps its server, in tidepool's column after PgBouncer's.
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  const shown = (await admin.query('SHOW CLIENTS')).rows.filter((r) => r.database === 'app')
  assert.equal(shown.filter((r) => r.pinned !== '').length, 2)
  assert.match(shown.find((r) => r.pinned !== '')!.pinned, /LISTEN/)
  const direct = await connectDirect(t, pgi)
  for (let k = 0; k < 5; k++) {
    await direct.query(`SELECT pg_notify('ch_a', 'a${k}'), pg_notify('ch_b', 'b${k}')`)
    // The rest keep working on the one free server meanwhile.
    await Promise.all(clients.map((c, i) => (i === 1 || i === 2 ? null : c.query('SELECT 1'))))
  }
  await waitFor(() => got.get(1)!.length === 5 && got.get(2)!.length === 5, { timeoutMs: 5_000, what: 'notifications' })
  assert.deepEqual(got.get(1), ['ch_a:a0', 'ch_a:a1', 'ch_a:a2', 'ch_a:a3', 'ch_a:a4'])
  assert.deepEqual(got.get(2), ['ch_b:b0', 'ch_b:b1', 'ch_b:b2', 'ch_b:b3', 'ch_b:b4'])
  // UNLISTEN unpins; a notification sent afterwards reaches nobody, even on the server it used.
  await clients[1].query('UNLISTEN *')
  await clients[2].query('UNLISTEN ch_b')
  await waitFor(() => pool.pinnedClients === 0, { timeoutMs: 5_000, what: 'listeners to be unpinned' })
  await direct.query(`SELECT pg_notify('ch_a', 'late'), pg_notify('ch_b', 'late')`)
  await Promise.all(clients.map((c) => c.query('SELECT 1')))
  for (const [i, list] of got) assert.equal(list.filter((x) => x.endsWith('late')).length, 0, `client ${i} got no late notification`)
  for (const [i, list] of got) if (i !== 1 && i !== 2) assert.deepEqual(list, [], `client ${i} never listened`)
})

test('a pinned client that disconnects does not hand its state to the next client', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const a = await tp.connect(t)
  await a.query(`CREATE TEMP TABLE gone_with_a (x int)`)
  await a.query(`SELECT pg_advisory_lock(77)`)
  await a.query(`SET myapp.gone = 'a'`)
  await a.end()
  const pool = tp.pool('app', pgi.user)!
  await waitFor(() => pool.pinnedClients === 0 && tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'a to be gone' })
  const b = await tp.connect(t)
  assert.deepEqual(await boundState(b), NONE)
  // A client that only changed GUCs leaves a server that goes back to the pool, then is reset.
  const c = await tp.connect(t)
  const pidC = (await c.query(`SET myapp.gone = 'c'; SELECT pg_backend_pid() AS p`) as unknown as pg.QueryResult[])[1].rows[0].p
  await c.end()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'c to be gone' })
  const r = await b.query(`SELECT pg_backend_pid() AS p, current_setting('myapp.gone', true) AS v`)
  assert.equal(r.rows[0].p, pidC, 'the same server, reused')
  assert.ok(r.rows[0].v === null || r.rows[0].v === '', `b sees no value of c's, got ${r.rows[0].v}`)
})

test('SET SESSION AUTHORIZATION pins its client until it is reset; nobody else runs as that user', { timeout: 30_000 }, async (t) => {
  const direct = await connectDirect(t, pgi)
  await direct.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'iso_auth') THEN CREATE ROLE iso_auth; END IF; END $$`)
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const [a, ...others] = await Promise.all(Array.from({ length: 6 }, () => tp.connect(t)))
  await a.query('SET SESSION AUTHORIZATION iso_auth')
  const pool = tp.pool('app', pgi.user)!
  await waitFor(() => pool.pinnedClients === 1, { timeoutMs: 5_000, what: 'the client to be pinned' })
  for (let round = 0; round < 5; round++) {
    const seen = await Promise.all(others.map(async (c) => (await c.query('SELECT session_user::text AS s, current_user::text AS c')).rows[0]))
    for (const r of seen) assert.deepEqual(r, { s: pgi.user, c: pgi.user }, `round ${round}: others run as the login user`)
    assert.equal((await a.query('SELECT session_user::text AS s')).rows[0].s, 'iso_auth', 'the client keeps its authorization')
  }
  await a.query('RESET SESSION AUTHORIZATION')
  await waitFor(() => pool.pinnedClients === 0, { timeoutMs: 5_000, what: 'the client to be unpinned' })
  // A client that leaves while still another user does not hand that user to the next one.
  await a.query('SET SESSION AUTHORIZATION iso_auth')
  await waitFor(() => pool.pinnedClients === 1, { timeoutMs: 5_000, what: 'pinned again' })
  await a.end()
  await waitFor(() => pool.pinnedClients === 0 && tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'a to be gone' })
  const seen = await Promise.all(others.map(async (c) => (await c.query('SELECT session_user::text AS s')).rows[0].s))
  assert.deepEqual(seen, others.map(() => pgi.user))
})

test('session_state_probe = always: state made inside functions pins its client and reaches nobody else', { timeout: 30_000 }, async (t) => {
  const direct = await connectDirect(t, pgi)
  // Nothing in the text of a call to these says what they do: the scanner alone would miss it.
  await direct.query(`CREATE OR REPLACE FUNCTION iso_fn_temp() RETURNS int LANGUAGE plpgsql AS $$
    BEGIN CREATE TEMP TABLE IF NOT EXISTS iso_fn_tmp (x int); RETURN 1; END $$`)
  await direct.query(`CREATE OR REPLACE FUNCTION iso_fn_guc(v text) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN PERFORM set_config('lock_timeout', v, false); RETURN 1; END $$`)
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 }, tidepool: { session_state_probe: 'always' } })
  const [a, b, ...others] = await Promise.all(Array.from({ length: 6 }, () => tp.connect(t)))
  await a.query('SELECT iso_fn_temp()')
  const pool = tp.pool('app', pgi.user)!
  await waitFor(() => pool.pinnedClients === 1, { timeoutMs: 5_000, what: 'the temp table maker to be pinned' })
  // Through the extended protocol too: b's GUC follows b, and only b. (A custom GUC set inside a
  // function is the one thing even this misses: PostgreSQL lists placeholder GUCs nowhere.)
  const defaultLock = (await others[0].query(`SELECT current_setting('lock_timeout') AS v`)).rows[0].v
  await b.query('SELECT iso_fn_guc($1)', ['4321ms'])
  for (let round = 0; round < 5; round++) {
    const seen = await Promise.all(others.map(async (c) => (await c.query(`SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int AS temps, current_setting('lock_timeout') AS lock`)).rows[0]))
    for (const r of seen) assert.deepEqual(r, { temps: 0, lock: defaultLock }, `round ${round}: neither a's temp table nor b's lock_timeout`)
    assert.equal((await b.query(`SELECT current_setting('lock_timeout') AS v`)).rows[0].v, '4321ms')
    assert.equal((await a.query('SELECT count(*)::int AS n FROM iso_fn_tmp')).rows[0].n, 0, 'a keeps its temp table')
  }
  await a.query('DISCARD TEMP')
  await waitFor(() => pool.pinnedClients === 0, { timeoutMs: 5_000, what: 'a to be unpinned' })
})

test('session_state_policy = error refuses session-bound statements with an error naming them', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 }, tidepool: { session_state_policy: 'error' } })
  const c = await tp.connect(t)
  const cases: Array<[string, string]> = [
    ['LISTEN x', 'LISTEN'],
    ['SELECT pg_advisory_lock(1)', 'pg_advisory_lock'],
    ['CREATE TEMPORARY TABLE t (x int)', 'CREATE TEMPORARY'],
    ['PREPARE p AS SELECT 1', 'PREPARE'],
    [`SET SESSION AUTHORIZATION ${pgi.user}`, 'SET SESSION AUTHORIZATION'],
  ]
  for (const [sql, name] of cases) {
    await assert.rejects(c.query(sql), (e: any) => e.code === '0A000' && e.message.startsWith(name) && e.message.includes('session_state_policy'), sql)
  }
  // Extended protocol too; and inside a transaction the refusal aborts it, like any error.
  await c.query('BEGIN')
  await assert.rejects(c.query('SELECT pg_try_advisory_lock($1)', [5]), (e: any) => e.code === '0A000')
  await assert.rejects(c.query('SELECT 1'), (e: any) => e.code === '25P02')
  await c.query('ROLLBACK')
  await assert.rejects(c.query('BEGIN; DECLARE cur CURSOR WITH HOLD FOR SELECT 1; COMMIT'), (e: any) => e.code === '0A000')
  // Transaction-scoped forms and GUCs stay allowed.
  await c.query('BEGIN; SELECT pg_advisory_xact_lock(1); DECLARE k CURSOR FOR SELECT 1; COMMIT')
  await c.query(`SET statement_timeout = '7s'`)
  assert.equal((await c.query(`SELECT current_setting('statement_timeout') AS v`)).rows[0].v, '7s')
  assert.equal(tp.pool('app', pgi.user)!.pinnedClients, 0)
  const other = await tp.connect(t)
  assert.deepEqual(await boundState(other), NONE)
})

test('pinned clients count against the pool and show in /metrics', { timeout: 30_000 }, async (t) => {
  const httpPort = await freePort()
  const tp: TestTidepool = await startTidepool(t, pgi, { settings: { default_pool_size: 2 }, tidepool: { http_listen_port: httpPort } })
  const a = await tp.connect(t)
  await a.query('LISTEN metrics_chan')
  const b = await tp.connect(t)
  await b.query('SELECT 1')
  await waitFor(() => tp.pool('app', pgi.user)!.pinnedClients === 1, { timeoutMs: 5_000, what: 'a to be pinned' })
  assert.equal(tp.poolCounts('app', pgi.user).sv_active, 1, 'a keeps its server between transactions')
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  assert.match(text, /tidepool_pools_client_pinned_connections\{database="app",user="postgres"\} 1/)
  // Cancel still reaches a pinned client's query.
  const slow = a.query('SELECT pg_sleep(30)')
  await waitFor(async () => (await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'`))[0].n === 1, { timeoutMs: 5_000, what: 'the sleep to run' })
  const pgc = a as unknown as { processID: number; secretKey: number }
  await new Promise<void>((resolve) => {
    const s = net.connect(tp.port, '127.0.0.1', () => {
      const b2 = Buffer.alloc(16)
      b2.writeInt32BE(16, 0)
      b2.writeInt32BE(80877102, 4)
      b2.writeInt32BE(pgc.processID, 8)
      b2.writeInt32BE(pgc.secretKey, 12)
      s.end(b2)
    })
    s.on('close', () => resolve())
    s.on('error', () => resolve())
  })
  await assert.rejects(slow, (e: any) => e.code === '57014')
  await a.query('UNLISTEN *')
  await waitFor(() => tp.pool('app', pgi.user)!.pinnedClients === 0, { timeoutMs: 5_000, what: 'a to be unpinned' })
})
