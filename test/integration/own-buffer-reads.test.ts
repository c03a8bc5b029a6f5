// Client reads land in a buffer tidepool reuses (src/net/own-buffer-reads.ts) once the client is
// logged in. Reuse is safe only while no slice of the buffer is still held: queued on a server
// socket that cannot take more, or kept while the client waits for a server. These tests make
// exactly that happen and check every byte that arrives.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import fs from 'node:fs'
import { join } from 'node:path'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { startFaultProxy } from '../harness/fault-proxy.ts'
import { runPsql, waitFor } from '../harness/clients.ts'
import { rawClient, startupPacket } from '../harness/raw-client.ts'
import { query } from '../../src/protocol/build.ts'
import postgres from 'postgres'
import { readIntoOwnBuffer } from '../../src/net/own-buffer-reads.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const md5 = (s: string): string => createHash('md5').update(s).digest('hex')

test('this Node.js lets tidepool read accepted sockets into its own buffer', async () => {
  // Without it every client read is a new Buffer again: not wrong, but the CPU figures in
  // docs/bench.md would no longer hold, so a Node.js that drops the internals fails here.
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  const sock = await accepted
  const buf = Buffer.alloc(16)
  const got: string[] = []
  assert.equal(readIntoOwnBuffer(sock, { buffer: () => buf, callback(n, b) { got.push(Buffer.from(b.subarray(0, n)).toString()); return true } }), true)
  sock.resume()
  client.write('hello')
  await new Promise((r) => setTimeout(r, 200))
  assert.deepEqual(got, ['hello'])
  assert.equal(buf.subarray(0, 5).toString(), 'hello', 'the read landed in our buffer')
  client.destroy()
  sock.destroy()
  await new Promise((r) => server.close(r))
})

test('40 clients on a pool of 3: parameters from 1 byte to 300 kB come back intact', { timeout: 120_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'transaction', default_pool_size: 3 }, userlist: { [pgi.user]: pgi.password } })
  const sizes = [1, 200, 1023, 1024, 1025, 5000, 65_535, 65_536, 70_000, 300_000, 10, 3]
  // postgres.js pipelines: it sends the next query before the first answer, so chunks queue while
  // the client waits for a server and while the server socket is busy.
  const clients = Array.from({ length: 40 }, () => postgres({ host: '127.0.0.1', port: tp.port, user: pgi.user, pass: pgi.password, database: 'app', max: 1, prepare: false, onnotice: () => {} }))
  t.after(() => Promise.all(clients.map((c) => c.end({ timeout: 1 }))))
  await Promise.all(clients.map(async (sql, i) => {
    for (let round = 0; round < 3; round++) {
      const texts = sizes.map((n, k) => randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n) + `-${i}-${round}-${k}`)
      const results = await Promise.all(texts.map((s) => sql`SELECT ${s}::text AS v, md5(${s}::text) AS h`))
      results.forEach((r, k) => {
        assert.equal(r[0].h, md5(texts[k]), `client ${i} round ${round} size ${sizes[k]}: the server got other bytes`)
        assert.equal(r[0].v, texts[k])
      })
    }
  }))
})

test('a client that sends again while it waits for a server: both queries reach it as sent', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { pool_mode: 'transaction', default_pool_size: 1 }, userlist: { [pgi.user]: pgi.password } })
  const c = await rawClient(t, tp.port)
  c.sock.write(startupPacket({ user: pgi.user, database: 'app' }))
  await waitFor(() => c.hasReadyForQuery(), { timeoutMs: 10_000, what: 'login' })
  const holder = await tp.connect(t)
  await holder.query('BEGIN')
  const first = 'a'.repeat(300)
  const second = 'b'.repeat(300)
  // The first query is kept while the client waits; the second arrives in a read of its own.
  const from = c.received.length
  c.sock.write(query(`SELECT '${first}'`))
  await new Promise((r) => setTimeout(r, 300))
  c.sock.write(query(`SELECT '${second}'`))
  await new Promise((r) => setTimeout(r, 300))
  await holder.query('COMMIT')
  await waitFor(() => c.received.subarray(from).includes(second), { timeoutMs: 10_000, what: 'the second answer' })
  const answers = c.received.subarray(from).toString('latin1')
  assert.equal(c.error(from), null)
  assert.ok(answers.includes(first), 'the first query reached the server as sent')
  assert.ok(answers.indexOf(first) < answers.indexOf(second))
})

test('COPY into a server that reads slowly: every row arrives as sent', { timeout: 120_000 }, async (t) => {
  const fault = await startFaultProxy({ host: '127.0.0.1', port: pgi.port })
  t.after(() => fault.close())
  const tp = await startTidepool(t, pgi, {
    settings: { pool_mode: 'transaction', default_pool_size: 2 },
    userlist: { [pgi.user]: pgi.password },
    databases: { app: `host=127.0.0.1 port=${fault.port} dbname=app user=${pgi.user} password=${pgi.password}` },
  })
  const c = await tp.connect(t)
  await c.query('DROP TABLE IF EXISTS own_reads; CREATE TABLE own_reads (line text)')
  const lines = Array.from({ length: 300_000 }, (_, i) => `${i}:${randomBytes(24).toString('base64')}`)
  const file = join(tp.dir, 'rows.txt')
  fs.writeFileSync(file, lines.join('\n') + '\n')
  const copy = runPsql({ port: tp.port, user: pgi.user, password: pgi.password, db: 'app', sql: `\\copy own_reads FROM '${file}'` })
  // Stall the server side mid-COPY, twice, so tidepool's writes to it queue up (slices of its read buffer).
  for (let i = 0; i < 2; i++) {
    await new Promise((r) => setTimeout(r, 150))
    fault.set({ stall: true })
    await new Promise((r) => setTimeout(r, 700))
    fault.set({})
  }
  const done = await copy
  assert.equal(done.code, 0, done.stderr)
  const r = await c.query(`SELECT count(*)::int AS n, md5(string_agg(line, E'\\n' ORDER BY split_part(line, ':', 1)::int)) AS h FROM own_reads`)
  assert.equal(r.rows[0].n, lines.length)
  assert.equal(r.rows[0].h, md5(lines.join('\n')))
})
