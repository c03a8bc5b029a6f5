// Log lines operators grep for, in PgBouncer's words: "taking connection from reserve_pool" when a
// pool goes past pool_size, "new connection to server (from addr:port)" for every server
// connection with log_connections, "pooler error: ..." for every error tidepool itself sends
// (log_pooler_errors), and the lines that explain an error written before the client can read it.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { startTidepool } from '../harness/tidepool.ts'
import { Logger, fileSink } from '../../src/observe/log.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const fast = { janitor_interval_ms: 100 }
const userlist = { vera: 'vera-pw' }
const db = () => ({ app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}` })

function connectVera(port: number, password = 'vera-pw'): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: 'vera', password })
  c.on('error', () => {})
  return c
}

async function ended(t: TestContext, c: pg.Client): Promise<pg.Client> {
  t.after(() => c.end().catch(() => {}))
  await c.connect()
  return c
}

test('a pool that takes a server from the reserve says so, naming the waiter, as PgBouncer does', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    databases: db(), userlist,
    settings: { auth_type: 'md5', default_pool_size: 1, reserve_pool_size: 1, reserve_pool_timeout: 1 },
    tidepool: fast,
  })
  const holder = await ended(t, connectVera(tp.port))
  await holder.query('BEGIN')
  await holder.query('SELECT 1')
  assert.ok(!tp.logs.some((l) => l.includes('reserve_pool')), 'no reserve while the pool is within pool_size')
  const waiter = await ended(t, connectVera(tp.port))
  const waiterPort = (waiter as any).connection.stream.localPort as number
  assert.equal((await waiter.query('SELECT 2 AS two')).rows[0].two, 2)
  const lines = tp.logs.filter((l) => l.includes('taking connection from reserve_pool'))
  assert.equal(lines.length, 1, tp.logs.join('\n'))
  assert.match(lines[0], new RegExp(` WARNING C-\\d+ app/vera@127\\.0\\.0\\.1:${waiterPort} taking connection from reserve_pool \\[pool\\.reserve_used\\]$`))
  await holder.query('COMMIT')
})

test('log_connections: one "new connection to server" line per server connection, none when off', { timeout: 30_000 }, async (t) => {
  for (const on of [1, 0]) {
    const tp = await startTidepool(t, pgi, {
      databases: db(), userlist,
      settings: { auth_type: 'md5', default_pool_size: 3, log_connections: on },
      tidepool: fast,
    })
    const clients = await Promise.all([1, 2, 3].map(() => ended(t, connectVera(tp.port))))
    await Promise.all(clients.map((c) => c.query('BEGIN')))
    await Promise.all(clients.map((c) => c.query('SELECT 1')))
    const lines = tp.logs.filter((l) => l.includes('new connection to server'))
    if (on === 0) {
      assert.deepEqual(lines, [])
      continue
    }
    assert.equal(lines.length, 3, tp.logs.join('\n'))
    for (const l of lines) assert.match(l, new RegExp(` LOG S-\\d+ app/${pgi.user}@127\\.0\\.0\\.1:${pgi.port} new connection to server \\(from 127\\.0\\.0\\.1:\\d+\\) \\[server\\.connected\\]$`))
    // "from" names the local end of each connection: the client port PostgreSQL sees for its session.
    const from = lines.map((l) => Number(/from 127\.0\.0\.1:(\d+)/.exec(l)?.[1]))
    const seen = await pgi.query('SELECT client_port FROM pg_stat_activity WHERE client_port = ANY($1)', [from])
    assert.equal(seen.length, 3)
    for (const c of clients) await c.query('COMMIT')
  }
})

test('log_pooler_errors: "pooler error: ..." for each error tidepool sends, none when off', { timeout: 30_000 }, async (t) => {
  for (const on of [1, 0]) {
    const tp = await startTidepool(t, pgi, { databases: db(), userlist, settings: { auth_type: 'md5', log_pooler_errors: on } })
    await assert.rejects(connectVera(tp.port, 'wrong').connect(), (e: any) => e.code === '28P01')
    const lines = tp.logs.filter((l) => l.includes('pooler error'))
    if (on === 0) assert.deepEqual(lines, [])
    else assert.ok(lines.some((l) => / WARNING C-\d+ app\/vera@127\.0\.0\.1:\d+ pooler error: password authentication failed for user "vera" \[client\.pooler_error\]$/.test(l)), tp.logs.join('\n'))
  }
})

test('the lines that explain an error are logged before the error is written to the client', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, {
    databases: db(), userlist,
    settings: { auth_type: 'md5', default_pool_size: 1, query_wait_timeout: 1 },
    tidepool: fast,
  })
  // The client connections watched, and at each of their lines how many bytes tidepool had
  // handed to the client's socket so far.
  type Conn = { id: string; socket: { bytesWritten: number; remotePort?: number } }
  const watched = new Map<string, Conn>()
  const writtenAtLog = new Map<string, number[]>()
  const sink = tp.rt.log.sink
  tp.rt.log.sink = (line) => {
    const conn = watched.get(/ (C-\d+) /.exec(line)?.[1] ?? '')
    const what = /closing because|pooler error/.exec(line)?.[0]
    if (conn !== undefined && what !== undefined) writtenAtLog.set(`${conn.id} ${what}`, [conn.socket.bytesWritten])
    sink(line)
  }
  const connOf = (port: number): Conn | undefined => {
    const conn = [...tp.rt.clients].find((c) => c.socket.remotePort === port)
    if (conn !== undefined) watched.set(conn.id, conn)
    return conn
  }
  const check = (id: string, finalBytes: number) => {
    for (const what of ['closing because', 'pooler error']) {
      const at = writtenAtLog.get(`${id} ${what}`)
      assert.ok(at !== undefined, `${id}: no "${what}" line`)
      assert.ok(at[0] < finalBytes, `${id}: "${what}" was logged after the error went out (${at[0]} of ${finalBytes} bytes written)`)
    }
  }

  // An error at login: the wrong password.
  const wrong = connectVera(tp.port, 'wrong')
  let loginConn: Conn | undefined
  wrong.connection.once('authenticationMD5Password', () => { loginConn = connOf((wrong as any).connection.stream.localPort) })
  await assert.rejects(wrong.connect(), (e: any) => e.code === '28P01')
  assert.ok(loginConn !== undefined)
  check(loginConn.id, loginConn.socket.bytesWritten)

  // A janitor timeout in the work phase.
  const holder = await ended(t, connectVera(tp.port))
  await holder.query('BEGIN')
  const waiter = await ended(t, connectVera(tp.port))
  const waiterConn = connOf((waiter as any).connection.stream.localPort)
  assert.ok(waiterConn !== undefined)
  await assert.rejects(waiter.query('SELECT 1'), (e: any) => e.message === 'query_wait_timeout')
  check(waiterConn.id, waiterConn.socket.bytesWritten)
})

test('logfile: a line is in the file when the call that logs it returns', { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-logfile-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'tidepool.log')
  const log = new Logger(fileSink(path, false))
  for (let i = 0; i < 3; i++) {
    log.warn('client.pooler_error', null, `pooler error: number ${i}`)
    // What a script sees the moment the client got its error: the line is already there.
    assert.equal(fs.readFileSync(path, 'utf8').split('\n').filter((l) => l.includes('pooler error')).length, i + 1)
  }
})
