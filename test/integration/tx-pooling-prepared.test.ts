// Protocol-level prepared statements in transaction mode (max_prepared_statements): real drivers
// (node-postgres named queries, postgres.js with prepare on and off, pgbench -M prepared and
// -M extended, psql) through a pool smaller than the client count, and the errors PostgreSQL itself
// sends for bad statement names, with no server left in a state the next client can see.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import postgres from 'postgres'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { connectDirect, runPgbench, runPsql, waitFor } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

/** A protocol-level client: sends raw messages, reads whole replies up to ReadyForQuery. */
class Raw {
  private buf = Buffer.alloc(0)
  private waiters: Array<() => void> = []
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d])
      for (const w of this.waiters.splice(0)) w()
    })
    sock.on('error', () => {})
  }

  static async connect(port: number): Promise<Raw> {
    const sock = net.connect(port, '127.0.0.1')
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject))
    const r = new Raw(sock)
    sock.write(build.startupMessage({ user: pgi.user, database: 'app' }))
    await r.untilReady()
    return r
  }

  /** Messages up to and including the next ReadyForQuery, as [type, body]. */
  async untilReady(timeoutMs = 10_000): Promise<Array<[string, Buffer]>> {
    const out: Array<[string, Buffer]> = []
    const deadline = Date.now() + timeoutMs
    for (;;) {
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1)
        if (this.buf.length < len + 1) break
        const type = String.fromCharCode(this.buf[0])
        out.push([type, this.buf.subarray(5, len + 1)])
        this.buf = this.buf.subarray(len + 1)
        if (type === 'Z') return out
      }
      if (Date.now() > deadline) throw new Error(`no ReadyForQuery; got ${out.map((m) => m[0]).join('')}`)
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve)
        setTimeout(resolve, 100)
      })
    }
  }

  send(...msgs: Buffer[]): void {
    this.sock.write(Buffer.concat(msgs))
  }

  close(): void {
    this.sock.destroy()
  }
}

const types = (msgs: Array<[string, Buffer]>): string => msgs.map((m) => m[0]).join('')
const sqlstate = (msgs: Array<[string, Buffer]>): string | null => {
  const e = msgs.find((m) => m[0] === 'E')
  if (e === undefined) return null
  const s = e[1].toString('utf8')
  const m = /C([0-9A-Z]{5})\0/.exec(s)
  return m === null ? null : m[1]!
}
const errorText = (msgs: Array<[string, Buffer]>): string => {
  const e = msgs.find((m) => m[0] === 'E')
  if (e === undefined) return ''
  const m = /\0M([^\0]*)\0/.exec('\0' + e[1].toString('utf8'))
  return m === null ? '' : m[1]!
}

test('node-postgres named queries work across servers of a pool of 2', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const clients = await Promise.all(Array.from({ length: 10 }, () => tp.connect(t)))
  for (let round = 0; round < 5; round++) {
    const rows = await Promise.all(clients.map((c, i) => c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [i, round] })))
    rows.forEach((r, i) => assert.equal(r.rows[0].v, i + round))
    // A second statement per client, with a name another client uses for different text.
    const named = await Promise.all(clients.map((c, i) => c.query({ name: i % 2 === 0 ? 'q' : 'r', text: i % 2 === 0 ? 'SELECT $1::text AS s' : 'SELECT $1::int * 2 AS s', values: [String(i)] })))
    named.forEach((r, i) => assert.equal(String(r.rows[0].s), i % 2 === 0 ? String(i) : String(i * 2)))
  }
  // Inside a transaction, then after it: the same names keep working.
  await clients[0].query('BEGIN')
  assert.equal((await clients[0].query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [1, 1] })).rows[0].v, 2)
  await clients[0].query('COMMIT')
  assert.equal((await clients[0].query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [2, 2] })).rows[0].v, 4)
  const counts = tp.poolCounts('app', pgi.user)
  assert.equal(counts.sv_active, 0)
  assert.ok(counts.sv_idle <= 2)
})

test('postgres.js with prepare on and off, in and out of transactions', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  for (const prepare of [true, false]) {
    const sql = postgres({ host: '127.0.0.1', port: tp.port, database: 'app', username: pgi.user, password: pgi.password, prepare, max: 8 })
    t.after(() => sql.end({ timeout: 1 }))
    for (let round = 0; round < 3; round++) {
      const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => sql`SELECT ${i}::int + ${round}::int AS v, ${'x' + i}::text AS s`))
      rows.forEach((r, i) => {
        assert.equal(r[0].v, i + round)
        assert.equal(r[0].s, 'x' + i)
      })
    }
    const total = await sql.begin(async (s) => {
      await s`CREATE TEMP TABLE IF NOT EXISTS pj (x int) ON COMMIT DROP`
      await s`INSERT INTO pj VALUES (${1}), (${2})`
      return s`SELECT sum(x)::int AS total FROM pj`
    })
    assert.equal(total[0].total, 3)
    // An error inside a transaction, then the connection goes on.
    await assert.rejects(sql.begin(async (s) => {
      await s`SELECT ${1}::int AS ok`
      await s`SELECT 1 / ${0}::int`
    }), (e: any) => e.code === '22012')
    assert.equal((await sql`SELECT ${7}::int AS v`)[0].v, 7)
  }
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'servers back in the pool' })
})

test('pgbench -M prepared and -M extended through a pool of 4', { timeout: 90_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 4, max_prepared_statements: 3 } })
  const init = await runPgbench({ port: pgi.port, user: pgi.user, password: pgi.password, db: 'app', args: ['-i', '-s', '1', '-q'] })
  assert.equal(init.code, 0, init.stderr)
  // max_prepared_statements 3 and the TPC-B script's 7 statements: servers evict and re-prepare.
  // One thread per client: pgbench 15 prepares synchronously, so a thread whose client waits for a
  // server would stall its other clients inside their transactions (with any pooler).
  for (const mode of ['prepared', 'extended']) {
    const r = await runPgbench({ port: tp.port, user: pgi.user, db: 'app', args: ['-M', mode, '-c', '8', '-j', '8', '-t', '60', '-n'] })
    assert.equal(r.code, 0, `-M ${mode}: ${r.stderr}`)
    assert.match(r.stdout, /number of failed transactions: 0/)
  }
  const r = await runPgbench({ port: tp.port, user: pgi.user, db: 'app', args: ['-M', 'prepared', '-S', '-c', '12', '-j', '12', '-t', '200', '-n'] })
  assert.equal(r.code, 0, r.stderr)
  // The cache stays within max_prepared_statements on every server.
  const rows = await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'`)
  assert.ok(rows[0].n <= 4)
  for (const s of tp.pool('app', pgi.user)?.lists.allServers() ?? []) {
    assert.ok((s as unknown as { ps: { cache: Map<unknown, number> } }).ps.cache.size <= 3)
  }
})

test('psql: PREPARE/EXECUTE in one query string, and \\bind with a named statement', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const r = await runPsql({ port: tp.port, user: pgi.user, db: 'app', sql: 'SELECT 40 + 2' })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), '42')
  const r2 = await runPsql({ port: tp.port, user: pgi.user, db: 'app', extraArgs: ['-c', 'PREPARE p(int) AS SELECT $1 * 2', '-c', 'EXECUTE p(21)', '-c', 'DEALLOCATE p', '-c', 'SELECT 1'] })
  assert.equal(r2.code, 0, r2.stderr)
  assert.deepEqual(r2.stdout.trim().split('\n').filter((l) => /^\d+$/.test(l)), ['42', '1'])
})

test('Describe of a mapped statement returns its ParameterDescription and RowDescription', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const a = await Raw.connect(tp.port)
  t.after(() => a.close())
  a.send(build.parse('s1', 'SELECT $1::int AS n, $2::text AS t', [0, 0]), build.describeStatement('s1'), build.sync())
  const m = await a.untilReady()
  assert.equal(types(m), '1tTZ')
  const params = m[1][1]
  assert.equal(params.readInt16BE(0), 2)
  assert.deepEqual([params.readInt32BE(2), params.readInt32BE(6)], [23, 25])
  assert.match(m[2][1].toString('latin1'), /n\0.*t\0/s)
  // Another client prepares the same text under another name: shared, answered by tidepool.
  const b = await Raw.connect(tp.port)
  t.after(() => b.close())
  b.send(build.parse('other', 'SELECT $1::int AS n, $2::text AS t', [0, 0]), build.bind('', 'other', [Buffer.from('5'), Buffer.from('x')]), build.execute('', 0), build.sync())
  const mb = await b.untilReady()
  assert.equal(types(mb), '12DCZ')
  assert.equal(mb[2][1].subarray(6, 7).toString(), '5')
})

test('bad statement names get the errors PostgreSQL sends, and leave nothing behind', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await Raw.connect(tp.port)
  t.after(() => c.close())
  // Bind of a statement never prepared: 26000, the server skips to Sync.
  c.send(build.bind('', 'nope', []), build.execute('', 0), build.sync())
  let m = await c.untilReady()
  assert.equal(types(m), 'EZ')
  assert.equal(sqlstate(m), '26000')
  assert.equal(errorText(m), 'prepared statement "nope" does not exist')
  // Describe of one: the same.
  c.send(build.describeStatement('nope'), build.sync())
  m = await c.untilReady()
  assert.equal(sqlstate(m), '26000')
  // Close of a name never prepared: CloseComplete, as PostgreSQL.
  c.send(build.closeStatement('never'), build.sync())
  assert.equal(types(await c.untilReady()), '3Z')
  // Duplicate Parse: 42P05, inside a transaction it aborts it.
  c.send(build.query('BEGIN'))
  await c.untilReady()
  c.send(build.parse('d', 'SELECT 1', []), build.parse('d', 'SELECT 2', []), build.bind('', 'd', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(types(m), '1EZ')
  assert.equal(sqlstate(m), '42P05')
  assert.equal(errorText(m), 'prepared statement "d" already exists')
  assert.equal(m.at(-1)![1][0], 0x45, 'transaction is aborted, as PostgreSQL would leave it')
  c.send(build.query('ROLLBACK'))
  await c.untilReady()
  // "d" still names SELECT 1.
  c.send(build.bind('', 'd', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(types(m), '2DCZ')
  assert.equal(m[1][1].subarray(6).toString(), '1')
  // An error in the middle of a pipeline: the Parse after it never ran, so "late" does not exist;
  // then it can be prepared for real.
  c.send(build.parse('bad', 'SELEC 1', []), build.parse('late', 'SELECT 3', []), build.bind('', 'late', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(types(m), 'EZ')
  assert.equal(sqlstate(m), '42601')
  c.send(build.bind('', 'late', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(sqlstate(m), '26000')
  assert.equal(errorText(m), 'prepared statement "late" does not exist')
  c.send(build.parse('late', 'SELECT 3', []), build.bind('', 'late', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(types(m), '12DCZ')
  // Several Syncs in one pipeline, the statement prepared in the first batch used in the later ones.
  c.send(build.parse('multi', 'SELECT $1::int AS v', [0]), build.sync(),
    build.bind('', 'multi', [Buffer.from('1')]), build.execute('', 0), build.sync(),
    build.bind('', 'multi', [Buffer.from('2')]), build.execute('', 0), build.sync())
  assert.equal(types(await c.untilReady()), '1Z')
  assert.equal(types(await c.untilReady()), '2DCZ')
  m = await c.untilReady()
  assert.equal(m[1][1].subarray(6).toString(), '2')
  // A Close then a re-Parse of the same name with other text.
  c.send(build.closeStatement('late'), build.parse('late', 'SELECT 4', []), build.bind('', 'late', []), build.execute('', 0), build.sync())
  m = await c.untilReady()
  assert.equal(types(m), '312DCZ')
  assert.equal(m[3][1].subarray(6).toString(), '4')
  // A pipeline cut off before Sync: the client leaves, the server must not be reused half-way.
  const cut = await Raw.connect(tp.port)
  cut.send(build.parse('x', 'SELECT pg_sleep(0.2)', []), build.bind('', 'x', []), build.execute('', 0))
  await new Promise((r) => setTimeout(r, 50))
  cut.close()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the cut client to be gone' })
  const next = await tp.connect(t)
  const r = await next.query(`SELECT count(*)::int AS n FROM pg_prepared_statements`)
  assert.equal(r.rows[0].n, 0, 'no statement of the cut client is visible')
  const st = await next.query(`SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()`)
  assert.equal(st.rows[0].state, 'active')
})

test('a failed injected Parse leaves the statement unprepared on that server', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const direct = await connectDirect(t, pgi)
  await direct.query(`DROP TABLE IF EXISTS ps_gone`)
  await direct.query(`CREATE TABLE ps_gone (x int)`)
  const a = await Raw.connect(tp.port)
  t.after(() => a.close())
  a.send(build.parse('g', 'SELECT x FROM ps_gone', []), build.sync())
  assert.equal(types(await a.untilReady()), '1Z')
  // Hold the server a prepared on, so that a's next Bind lands on the other one.
  const holder = await tp.connect(t)
  await holder.query('BEGIN')
  await direct.query(`DROP TABLE ps_gone`)
  a.send(build.bind('', 'g', []), build.execute('', 0), build.sync())
  let m = await a.untilReady()
  assert.equal(sqlstate(m), '42P01', 'the injected Parse fails as the table is gone')
  await direct.query(`CREATE TABLE ps_gone (x int)`)
  await direct.query(`INSERT INTO ps_gone VALUES (9)`)
  a.send(build.bind('', 'g', []), build.execute('', 0), build.sync())
  m = await a.untilReady()
  assert.equal(types(m), '2DCZ', 'prepared again, not taken as already there')
  await holder.query('COMMIT')
})

test('max_prepared_statements = 0 passes statement names through unchanged', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, max_prepared_statements: 0 } })
  const c = await tp.connect(t)
  await c.query({ name: 'plain', text: 'SELECT 1 AS one', values: [] })
  const r = await c.query(`SELECT name FROM pg_prepared_statements`)
  assert.deepEqual(r.rows.map((x) => x.name), ['plain'])
  await c.query('DEALLOCATE plain')
})

test('cancel reaches a prepared statement running through tidepool', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await tp.connect(t)
  const slow = c.query({ name: 'slow', text: 'SELECT pg_sleep($1)', values: [30] })
  await waitFor(async () => (await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep($1)' AND state = 'active'`))[0].n === 1, { timeoutMs: 5_000, what: 'the query to run' })
  await new Promise<void>((resolve, reject) => {
    const pgc = c as unknown as { processID: number; secretKey: number }
    const s = net.connect(tp.port, '127.0.0.1', () => s.end(build.cancelRequest(pgc.processID, pgc.secretKey)))
    s.on('close', () => resolve())
    s.on('error', reject)
  })
  await assert.rejects(slow, (e: any) => e.code === '57014')
  assert.equal((await c.query({ name: 'slow', text: 'SELECT pg_sleep($1)', values: [0] })).rows.length, 1)
})

test('server_reset_query_always with DISCARD ALL: statements are prepared again after each reset', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, server_reset_query_always: 1 } })
  const a = await tp.connect(t)
  const b = await tp.connect(t)
  for (let k = 0; k < 4; k++) {
    assert.equal((await a.query({ name: 'one', text: 'SELECT $1::int AS v', values: [k] })).rows[0].v, k)
    assert.equal((await b.query({ name: 'one', text: 'SELECT $1::int AS v', values: [k + 10] })).rows[0].v, k + 10)
  }
})

test('SQL DEALLOCATE of a protocol-prepared statement works in and out of transactions, as DBD::Pg and ruby-pg use it', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2, admin_users: pgi.user } })
  const c = await tp.connect(t)
  const other = await tp.connect(t)
  await c.query('CREATE TABLE IF NOT EXISTS dealloc_t (v int)')
  await c.query('TRUNCATE dealloc_t')
  const prep = (name: string) => c.query({ name, text: 'SELECT $1::int AS v', values: [7] })
  // Inside a transaction: the DEALLOCATE must not abort it (the rows of the transaction survive).
  await c.query('BEGIN')
  await prep('dbdpg_p1_1')
  await c.query('INSERT INTO dealloc_t VALUES (1)')
  const r = await c.query('DEALLOCATE dbdpg_p1_1')
  assert.equal(r.command, 'DEALLOCATE')
  await c.query('INSERT INTO dealloc_t VALUES (2)')
  await c.query('COMMIT')
  assert.deepEqual((await other.query('SELECT v FROM dealloc_t ORDER BY v')).rows.map((x) => x.v), [1, 2])
  // The name is gone for the client: a second DEALLOCATE goes to the server, which has no such name.
  await assert.rejects(c.query('DEALLOCATE dbdpg_p1_1'), (e: any) => e.code === '26000')
  // Outside a transaction, with a quoted name and DEALLOCATE PREPARE.
  await prep('Mixed Case')
  assert.equal((await c.query('DEALLOCATE PREPARE "Mixed Case";')).command, 'DEALLOCATE')
  // A name the client does not have goes to the server, which answers as PostgreSQL does.
  await assert.rejects(c.query('DEALLOCATE nosuch'), (e: any) => e.code === '26000')
  // In a failed transaction: 25P02, and the name stays.
  await prep('kept')
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  const port = (c as any).connection.stream.localPort as number
  assert.equal((await admin.query('SHOW CLIENTS')).rows.find((r) => Number(r.port) === port)?.prepared_statements, 1)
  await c.query('BEGIN')
  await assert.rejects(c.query('SELECT 1/0'), (e: any) => e.code === '22012')
  await assert.rejects(c.query('DEALLOCATE kept'), (e: any) => e.code === '25P02')
  await c.query('ROLLBACK')
  assert.equal((await c.query({ name: 'kept', text: 'SELECT $1::int AS v', values: [9] })).rows[0].v, 9)
  // The server went back to the pool after each answer given here.
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'servers released' })
})

test('an eviction skipped after an error, with a re-Parse of the evicted statement, leaves it usable', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, max_prepared_statements: 1 } })
  const c = await Raw.connect(tp.port)
  t.after(() => c.close())
  c.send(build.parse('a', 'SELECT 1 AS a', []), build.sync())
  assert.equal(types(await c.untilReady()), '1Z')
  // The Execute fails; tidepool then evicts `a` for `b` (limit 1) and puts a Parse of `a` ahead of
  // its Bind. The server skips all three to Sync, so `a` is still prepared there.
  c.send(build.parse('', 'SELECT 1/0', []), build.bind('', '', []), build.execute('', 0),
    build.parse('b', 'SELECT 2 AS b', []), build.bind('', 'a', []), build.execute('', 0), build.sync())
  const m = await c.untilReady()
  assert.equal(sqlstate(m), '22012')
  c.send(build.bind('', 'a', []), build.execute('', 0), build.sync())
  const again = await c.untilReady()
  assert.equal(types(again), '2DCZ', `a Bind of "a" works afterwards: ${errorText(again)}`)
})

test('DEALLOCATE ALL and DISCARD ALL drop the client\'s statements only when they succeed', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await Raw.connect(tp.port)
  t.after(() => c.close())
  const run = async (...msgs: Buffer[]) => {
    c.send(...msgs)
    return c.untilReady()
  }
  const bindS1 = () => run(build.bind('', 's1', []), build.execute('', 0), build.sync())
  assert.equal(types(await run(build.parse('s1', 'SELECT 1', []), build.sync())), '1Z')
  // DISCARD ALL cannot run in a transaction block (25001), also not in a Query's implicit one.
  await run(build.query('BEGIN'))
  assert.equal(sqlstate(await run(build.query('DISCARD ALL'))), '25001')
  await run(build.query('ROLLBACK'))
  assert.equal(sqlstate(await run(build.query('SELECT 1; DISCARD ALL'))), '25001')
  assert.equal(types(await bindS1()), '2DCZ', 'a failed DISCARD ALL keeps the statement')
  // In a failed transaction DEALLOCATE ALL answers 25P02 and drops nothing.
  await run(build.query('BEGIN'))
  assert.equal(sqlstate(await run(build.query('SELECT 1/0'))), '22012')
  assert.equal(sqlstate(await run(build.query('DEALLOCATE ALL'))), '25P02')
  await run(build.query('ROLLBACK'))
  assert.equal(types(await bindS1()), '2DCZ', 'a failed DEALLOCATE ALL keeps the statement')
  // A named statement whose text is DEALLOCATE ALL drops nothing when parsed, everything when run.
  assert.equal(types(await run(build.parse('d', 'DEALLOCATE ALL', []), build.sync())), '1Z')
  assert.equal(types(await bindS1()), '2DCZ')
  assert.equal(types(await run(build.bind('', 'd', []), build.execute('', 0), build.sync())), '2CZ')
  const m = await bindS1()
  assert.equal(sqlstate(m), '26000')
  assert.equal(errorText(m), 'prepared statement "s1" does not exist')
  assert.equal(errorText(await run(build.bind('', 'd', []), build.execute('', 0), build.sync())), 'prepared statement "d" does not exist')
  // DEALLOCATE is not transactional: a ROLLBACK does not bring the statements back. A statement
  // the client named "all" is no reason to take DEALLOCATE ALL for a DEALLOCATE of that one name.
  assert.equal(types(await run(build.parse('s1', 'SELECT 1', []), build.parse('all', 'SELECT 2', []), build.sync())), '11Z')
  await run(build.query('BEGIN'))
  assert.equal(types(await run(build.query('DEALLOCATE ALL'))), 'CZ')
  await run(build.query('ROLLBACK'))
  assert.equal(sqlstate(await bindS1()), '26000')
  assert.equal(errorText(await run(build.bind('', 'all', []), build.execute('', 0), build.sync())), 'prepared statement "all" does not exist')
  // DISCARD ALL on its own drops them; the server's copy is gone too, so a new Parse of the same text prepares it again.
  assert.equal(types(await run(build.parse('s1', 'SELECT 1', []), build.sync())), '1Z')
  assert.equal(types(await run(build.query('DISCARD ALL'))), 'CZ')
  assert.equal(sqlstate(await bindS1()), '26000')
  assert.equal(types(await run(build.parse('s1', 'SELECT 1', []), build.bind('', 's1', []), build.execute('', 0), build.sync())), '12DCZ')
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the server released' })
})

test('a DISCARD ALL pipelined ahead of the next statements (Npgsql, PgJDBC) leaves names and server statements right', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await Raw.connect(tp.port)
  t.after(() => c.close())
  const bindP1 = [build.bind('', '_p1', []), build.execute('', 0), build.sync()]
  c.send(build.parse('_p1', 'SELECT 1', []), build.sync())
  assert.equal(types(await c.untilReady()), '1Z')
  // Npgsql resets a pooled connection by sending DISCARD ALL in front of the next command, unawaited.
  c.send(build.query('DISCARD ALL'), build.parse('_p1', 'SELECT 1', []), ...bindP1)
  assert.equal(types(await c.untilReady()), 'CZ')
  let m = await c.untilReady()
  assert.equal(types(m), '12DCZ', `the statement is prepared again on the server: ${errorText(m)}`)
  // PgJDBC runs DISCARD ALL through the extended protocol; what follows its Sync waits for its outcome.
  c.send(build.parse('', 'DISCARD ALL', []), build.bind('', '', []), build.execute('', 0), build.sync(),
    build.parse('_p1', 'SELECT 1', []), ...bindP1)
  assert.equal(types(await c.untilReady()), '12CZ')
  m = await c.untilReady()
  assert.equal(types(m), '12DCZ', `after an extended-protocol DISCARD ALL: ${errorText(m)}`)
  // A pipelined DISCARD ALL that fails (in a transaction block) keeps the names for what follows it.
  c.send(build.query('BEGIN'), build.query('DISCARD ALL'), build.query('ROLLBACK'), ...bindP1)
  assert.equal(types(await c.untilReady()), 'CZ')
  assert.equal(sqlstate(await c.untilReady()), '25001')
  assert.equal(types(await c.untilReady()), 'CZ')
  m = await c.untilReady()
  assert.equal(types(m), '2DCZ', `the statement survived the failed DISCARD ALL: ${errorText(m)}`)
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the server released' })
})

test('SET max_prepared_statements = 0 stops mapping for live clients at their next transaction; RELOAD starts it again', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1, admin_users: pgi.user } })
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  const look = await tp.connect(t) // the pool's one server, seen from a pass-through session
  const onServer = async () => (await look.query('SELECT name FROM pg_prepared_statements ORDER BY name')).rows.map((r) => r.name as string)
  const c = await Raw.connect(tp.port)
  t.after(() => c.close())
  const run = async (...msgs: Buffer[]) => {
    c.send(...msgs)
    return c.untilReady()
  }
  assert.equal(types(await run(build.parse('mapped', 'SELECT 11', []), build.sync())), '1Z')
  assert.deepEqual((await onServer()).filter((n) => !n.startsWith('TP_')), [], 'mapped under tidepool\'s name')
  // Inside a transaction the client keeps mapping until it ends; the next one passes names through.
  await run(build.query('BEGIN'))
  await admin.query('SET max_prepared_statements = 0')
  assert.equal(types(await run(build.parse('late', 'SELECT 12', []), build.sync())), '1Z')
  await run(build.query('COMMIT'))
  assert.equal(types(await run(build.parse('plain', 'SELECT 13', []), build.sync())), '1Z')
  assert.deepEqual((await onServer()).filter((n) => !n.startsWith('TP_')), ['plain'], 'a new name goes to the server as it is')
  // A name mapped before is forgotten, as in PgBouncer: its Bind reaches the server under its own name.
  let m = await run(build.bind('', 'mapped', []), build.execute('', 0), build.sync())
  assert.equal(sqlstate(m), '26000')
  assert.equal(errorText(m), 'prepared statement "mapped" does not exist')
  m = await run(build.bind('', 'plain', []), build.execute('', 0), build.sync())
  assert.equal(types(m), '2DCZ')
  assert.equal(m[1][1].subarray(6).toString(), '13')
  // RELOAD reads the file again (the default, 200): the live client maps new names again.
  await run(build.query('DEALLOCATE plain'))
  await admin.query('RELOAD')
  assert.equal(types(await run(build.parse('again', 'SELECT 14', []), build.bind('', 'again', []), build.execute('', 0), build.sync())), '12DCZ')
  assert.deepEqual((await onServer()).filter((n) => !n.startsWith('TP_')), [], 'mapped again')
})
