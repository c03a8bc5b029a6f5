// Time-boxed fuzzing of the client side of a live tidepool: random and mutated byte streams, cut
// at random points, before and after login. Whatever arrives, tidepool must stay up, never reuse a
// server in an unknown state, and keep serving a well-behaved client.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import fc from 'fast-check'
import * as build from '../../src/protocol/build.ts'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

const FUZZ_MS = Number(process.env.TIDEPOOL_FUZZ_MS ?? 8000)

async function send(port: number, chunks: Buffer[], waitMs: number): Promise<void> {
  const sock = net.connect({ host: '127.0.0.1', port })
  sock.on('error', () => {})
  await new Promise<void>((resolve) => { sock.once('connect', () => resolve()); sock.once('error', () => resolve()) })
  for (const c of chunks) {
    if (sock.destroyed) break
    sock.write(c)
  }
  await new Promise((r) => setTimeout(r, waitMs))
  sock.destroy()
}

const validMessages = fc.constantFrom(
  build.query('SELECT 1'), build.query('BEGIN'), build.query('COMMIT'), build.query('SELECT pg_sleep(0.01)'),
  build.parse('', 'SELECT $1::int', [23]), build.bind('', '', [Buffer.from('7')]), build.execute('', 0), build.sync(),
  build.flush(), build.query('COPY (SELECT 1) TO STDOUT'), Buffer.from([0x58, 0, 0, 0, 4]),
)

const mutation = fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) })

test(`fuzz: ${FUZZ_MS} ms of mutated client streams leave tidepool healthy`, { timeout: FUZZ_MS + 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { default_pool_size: 2, max_packet_size: 1_000_000 } })
  const login = build.startupMessage({ user: pgi.user, database: 'app' })
  const deadline = Date.now() + FUZZ_MS
  let runs = 0
  await fc.assert(
    fc.asyncProperty(
      fc.boolean(), fc.array(validMessages, { maxLength: 8 }), fc.array(mutation, { maxLength: 3 }),
      fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 4 }),
      async (withLogin, msgs, muts, junk, cuts) => {
        if (Date.now() > deadline) return
        runs++
        const body = Buffer.concat([...msgs, Buffer.from(junk)])
        for (const m of muts) if (body.length > 0) body[m.at % body.length] = m.byte
        const stream = withLogin ? Buffer.concat([login, body]) : body
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b)
        const chunks: Buffer[] = []
        let prev = 0
        for (const p of points) { chunks.push(stream.subarray(prev, p)); prev = p }
        chunks.push(stream.subarray(prev))
        await send(tp.port, chunks, 30)
      },
    ),
    { numRuns: 100_000, interruptAfterTimeLimit: FUZZ_MS },
  )
  assert.ok(runs > 10, `fuzzed ${runs} streams`)
  await waitFor(() => tp.rt.clients.size === 0, { timeoutMs: 10_000, what: 'every fuzz client to be gone' })
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 10_000, what: 'no server left linked' })
  const c = await tp.connect(t)
  const r = await c.query(`SELECT now() = statement_timestamp() AS autocommit, current_setting('TimeZone') AS tz`)
  assert.equal(r.rows[0].autocommit, true, 'the server handed out is not inside a leftover transaction')
  const c2 = await tp.connect(t)
  assert.equal((await c2.query('SELECT 42 AS x')).rows[0].x, 42)
})
