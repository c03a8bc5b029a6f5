// Data that must stream, not buffer: COPY in and out, large rows, slow readers; and cancel requests.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor, runPsql } from '../harness/clients.ts'
import * as build from '../../src/protocol/build.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test('COPY FROM STDIN and COPY TO STDOUT stream through psql', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const c = await tp.connect(t)
  await c.query('DROP TABLE IF EXISTS copy_rt; CREATE TABLE copy_rt (id int, label text)')
  const rows = Array.from({ length: 50_000 }, (_, i) => `${i}\tlabel-${i}`).join('\n') + '\n'
  const fs = await import('node:fs')
  const file = `${tp.dir}/rows.tsv`
  fs.writeFileSync(file, rows)
  const load = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: `\\copy copy_rt FROM '${file}'` })
  assert.equal(load.code, 0, load.stderr)
  const out = await runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: 'COPY (SELECT * FROM copy_rt ORDER BY id) TO STDOUT' })
  assert.equal(out.code, 0, out.stderr)
  assert.equal(out.stdout, rows)
  assert.equal(tp.poolCounts('app', pgi.user).sv_active, 0)
})

test('a 64 MB row and 200k rows arrive intact', { timeout: 120_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const c = await tp.connect(t)
  const big = await c.query(`SELECT repeat('x', 64 * 1024 * 1024) AS v, md5(repeat('x', 64 * 1024 * 1024)) AS h`)
  assert.equal(big.rows[0].v.length, 64 * 1024 * 1024)
  const many = await c.query('SELECT g AS i, md5(g::text) AS h FROM generate_series(1, 200000) g')
  assert.equal(many.rowCount, 200000)
  assert.equal(many.rows[199999].i, 200000)
})

test('a client that does not read makes tidepool stop reading the server (no buffering)', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const sock = net.connect({ host: '127.0.0.1', port: tp.port })
  t.after(() => sock.destroy())
  let got = 0
  sock.on('data', (d) => { got += d.length })
  sock.on('error', () => {})
  await new Promise<void>((r) => sock.once('connect', () => r()))
  sock.write(build.startupMessage({ user: pgi.user, database: 'app' }))
  await waitFor(() => got > 0, { timeoutMs: 5_000, what: 'login' })
  await new Promise((r) => setTimeout(r, 200))
  sock.pause()
  const rssBefore = process.memoryUsage().rss
  // ~400 MB of result; a buffering proxy would hold most of it.
  sock.write(build.query(`SELECT repeat('y', 1000) FROM generate_series(1, 400000)`))
  await new Promise((r) => setTimeout(r, 3000))
  const held = process.memoryUsage().rss - rssBefore
  const server = tp.pool('app', pgi.user)?.lists.activeServers.first as any
  assert.ok(server !== null && server !== undefined, 'the server is still busy: the result did not drain into memory')
  assert.ok(held < 100 * 1024 * 1024, `tidepool held ${Math.round(held / 1048576)} MB for a paused client`)
  sock.resume()
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 30_000, what: 'result fully delivered' })
  assert.ok(got > 400_000 * 1000, 'every row arrived')
})

test('cancel from pg reaches the right server query', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2 } })
  const c = await tp.connect(t)
  const other = await tp.connect(t)
  const running = c.query('SELECT pg_sleep(20)')
  await waitFor(async () => (await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'`))[0].n === 1, { timeoutMs: 5_000, what: 'query running' })
  // What libpq and pg do: a CancelRequest with the key from login, on a connection of its own.
  const key = c as unknown as { processID: number; secretKey: number }
  const cs = net.connect({ host: '127.0.0.1', port: tp.port })
  cs.on('error', () => {})
  await new Promise<void>((r) => cs.once('connect', () => r()))
  cs.end(build.cancelRequest(key.processID, key.secretKey))
  const started = Date.now()
  await assert.rejects(running, (e: any) => e.code === '57014')
  assert.ok(Date.now() - started < 5000)
  assert.equal((await other.query('SELECT 1 AS one')).rows[0].one, 1, 'the other client was not cancelled')
  assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2, 'the cancelled client goes on')
})

test('a cancel for a client that has gone is dropped safely (pgbouncer#801)', { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const sock = net.connect({ host: '127.0.0.1', port: tp.port })
  let buf = Buffer.alloc(0)
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]) })
  await new Promise<void>((r) => sock.once('connect', () => r()))
  sock.write(build.startupMessage({ user: pgi.user, database: 'app' }))
  await waitFor(() => buf.includes(0x5a), { timeoutMs: 5_000, what: 'login' })
  const at = buf.indexOf(0x4b)
  const pid = buf.readInt32BE(at + 5)
  const secret = buf.readInt32BE(at + 9)
  sock.end(Buffer.from([0x58, 0, 0, 0, 4]))
  await waitFor(() => tp.rt.clients.size === 0, { timeoutMs: 5_000, what: 'client gone' })
  for (const key of [[pid, secret], [pid, secret ^ 1], [12345, 678]]) {
    const cs = net.connect({ host: '127.0.0.1', port: tp.port })
    cs.on('error', () => {})
    await new Promise<void>((r) => cs.once('connect', () => r()))
    cs.end(build.cancelRequest(key[0], key[1]))
    await new Promise<void>((r) => cs.once('close', () => r()))
  }
  const c = await tp.connect(t)
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'tidepool is alive and well')
})

test('a 1 GB row streams through without tidepool holding it', { timeout: 180_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 1 } })
  const sock = net.connect({ host: '127.0.0.1', port: tp.port })
  t.after(() => sock.destroy())
  let got = 0
  let tail = Buffer.alloc(0)
  // Count bytes, keep only the last few: the client holds nothing either.
  sock.on('data', (d: Buffer) => { got += d.length; tail = Buffer.from(d.subarray(Math.max(0, d.length - 16))) })
  sock.on('error', () => {})
  await new Promise<void>((r) => sock.once('connect', () => r()))
  sock.write(build.startupMessage({ user: pgi.user, database: 'app' }))
  await waitFor(() => got > 0 && tail.includes(0x5a), { timeoutMs: 5_000, what: 'login' })
  const loginBytes = got
  const rssBefore = process.memoryUsage().rss
  let rssPeak = rssBefore
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage().rss) }, 50)
  t.after(() => clearInterval(sampler))
  const size = 1_000_000_000
  sock.write(build.query(`SELECT repeat('x', ${size})`))
  // ReadyForQuery(idle) is the last 6 bytes of the answer.
  await waitFor(() => got - loginBytes > size && tail.subarray(-6).equals(build.readyForQuery(0x49)), { timeoutMs: 150_000, intervalMs: 200, what: 'the whole row and ReadyForQuery' })
  clearInterval(sampler)
  assert.ok(got - loginBytes > size, `received ${got - loginBytes} bytes`)
  const grew = rssPeak - rssBefore
  assert.ok(grew < 200 * 1024 * 1024, `tidepool's process grew by ${Math.round(grew / 1048576)} MB while streaming 1 GB`)
  assert.equal(tp.poolCounts('app', pgi.user).sv_active, 0)
})
