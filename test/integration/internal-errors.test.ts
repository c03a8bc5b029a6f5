// tidepool's own broken invariants are not someone else's bad bytes: an exception thrown by
// tidepool's code while it reads a server must be logged as an internal error with its stack and
// close the connections cleanly, not be reported as the server's protocol error (nor ban its host).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

test("an exception in tidepool's code while reading a server is logged as an internal error with its stack", { timeout: 30_000 }, async (t) => {
  const tp = await startTidepool(t, pgi)
  const app = await tp.connect(t)
  app.on('error', () => {})
  const conn = [...tp.rt.clients].find((c) => c.database === 'app')
  assert.ok(conn !== undefined, 'the client connection is registered')
  // Stands in for a bug of ours: the server side calls this for the ParameterStatus a SET sends back.
  conn.onServerParameter = () => {
    throw new TypeError('test: broken invariant')
  }
  await assert.rejects(app.query("SET application_name = 'broken'"))
  await waitFor(() => tp.logs.some((l) => l.includes('[server.internal_error]')), { timeoutMs: 5_000, what: 'the internal error to be logged' })
  const line = tp.logs.find((l) => l.includes('[server.internal_error]')) as string
  assert.match(line, /TypeError: test: broken invariant/)
  assert.match(line, /\n\s+at /, 'the stack is logged')
  assert.ok(!tp.logs.some((l) => l.includes('server protocol error')), 'not blamed on the server')
  // Closed cleanly: the pool has no server left linked, and a new client works.
  await waitFor(() => tp.poolCounts('app', pgi.user).sv_active === 0, { timeoutMs: 5_000, what: 'the server to be closed' })
  const next = await tp.connect(t)
  assert.equal((await next.query('SELECT 1 AS n')).rows[0].n, 1)
})
