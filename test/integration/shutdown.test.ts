// The console's SHUTDOWN WAIT_FOR_SERVERS as PgBouncer documents it (issue 16, item 10): waiting
// clients, and any client that asks for a server later, are closed with "server shutting down"
// while running transactions finish.
// lifecycle.test.ts and signals.test.ts drive the same shutdowns with signals.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { sharedPostgres, type PgInstance } from '../harness/postgres.ts'
import { startTidepool } from '../harness/tidepool.ts'
import { waitFor } from '../harness/clients.ts'

let pgi: PgInstance
before(async () => {
  pgi = await sharedPostgres()
})

/** Settles to the result or the error, so a rejection is asserted on rather than left unhandled. */
function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.then((r) => r, (e: unknown) => e as Error)
}

function isServerShuttingDown(e: unknown): boolean {
  const err = e as { code?: string; message?: string; severity?: string }
  return err.code === '08P01' && err.message === 'server shutting down' && err.severity === 'FATAL'
}

test('SHUTDOWN WAIT_FOR_SERVERS: waiting clients and idle ones that start a transaction are closed with "server shutting down"', { timeout: 60_000 }, async (t) => {
  const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, default_pool_size: 1 } })
  const busy = await tp.connect(t)
  const idle = await tp.connect(t)
  const waiter = await tp.connect(t)
  const admin = await tp.connect(t, { database: 'pgbouncer' })
  await idle.query('SELECT 1')
  await busy.query('BEGIN')
  const waiting = settle(waiter.query('SELECT 2'))
  await waitFor(() => tp.poolCounts('app', pgi.user).cl_waiting === 1, { timeoutMs: 10_000, what: 'a waiting client' })

  assert.equal((await admin.query('SHUTDOWN WAIT_FOR_SERVERS')).command, 'SHUTDOWN')
  assert.ok(isServerShuttingDown(await waiting), `the waiting client: ${String(await waiting)}`)
  // Absence cannot be awaited: give a wrong eager close ample time to happen.
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.equal(tp.rt.clients.size, 3, 'the idle client and the console are still connected')
  const late = await settle(idle.query('SELECT 3'))
  assert.ok(isServerShuttingDown(late), `the idle client that asked for a server: ${String(late)}`)
  assert.ok(tp.logs.some((l) => l.includes('closing because: server shutting down')), 'the log names the reason')

  assert.equal((await busy.query('SELECT 4 AS four')).rows[0].four, 4, 'the running transaction goes on')
  assert.equal(tp.rt.isShuttingDown, true)
  await busy.query('COMMIT')
  await waitFor(() => tp.logs.some((l) => l.includes('shutdown complete')), { timeoutMs: 10_000, what: 'the shutdown to finish once the server is free' })
})
