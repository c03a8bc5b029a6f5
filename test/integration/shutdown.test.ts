// The console's SHUTDOWN WAIT_FOR_SERVERS and WAIT_FOR_CLIENTS as PgBouncer documents them (issue
// 16, items 10 and 13): waiting clients, and any client that asks for a server later, are closed
// with "server shutting down" while running transactions finish; the unix socket stays open during
// the shutdown and takes only admin console logins, so the console is still reachable.
// lifecycle.test.ts and signals.test.ts drive the same shutdowns with signals.
import { test, before, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
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

/** A pg client of the console over tidepool's unix socket in `dir`. */
function overUnix(t: TestContext, dir: string, port: number, database: string): pg.Client {
  const c = new pg.Client({ host: dir, port, database, user: pgi.user, password: pgi.password })
  c.on('error', () => {})
  t.after(() => c.end().catch(() => {}))
  return c
}

for (const mode of ['WAIT_FOR_SERVERS', 'WAIT_FOR_CLIENTS'] as const) {
  test(`SHUTDOWN ${mode}: the unix socket stays open for the admin console only, TCP stops accepting`, { timeout: 60_000 }, async (t) => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'tp-sock-'))
    fs.chmodSync(dir, 0o777)
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const tp = await startTidepool(t, pgi, { settings: { admin_users: pgi.user, unix_socket_dir: dir } })
    const busy = await tp.connect(t)
    await busy.query('BEGIN') // keeps either shutdown waiting
    const admin = await tp.connect(t, { database: 'pgbouncer' })
    await admin.query(`SHUTDOWN ${mode}`)
    await waitFor(() => tp.logs.some((l) => l.includes('[runtime.stopping]')), { timeoutMs: 10_000, what: 'the shutdown to start' })

    await assert.rejects(tp.connect(t), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED', 'TCP accepts nobody')
    const console2 = overUnix(t, dir, tp.port, 'pgbouncer')
    await console2.connect()
    const state = (await console2.query('SHOW POOLS')).rows.find((r) => r.database === 'app')
    assert.equal(Number(state.sv_active), 1, 'a new console session over the unix socket answers')
    const app = overUnix(t, dir, tp.port, 'app')
    await assert.rejects(app.connect(), (e: { message?: string }) => e.message === 'pooler is shutting down', 'only the console is accepted')
    assert.equal((await admin.query('SHOW STATE')).rows.length > 0, true, 'the console session that asked goes on')

    await busy.query('COMMIT')
    if (mode === 'WAIT_FOR_CLIENTS') await busy.end()
    // The consoles are clients too: WAIT_FOR_CLIENTS waits for them as PgBouncer does.
    if (mode === 'WAIT_FOR_CLIENTS') await Promise.all([admin.end(), console2.end()])
    await waitFor(() => tp.logs.some((l) => l.includes('shutdown complete')), { timeoutMs: 10_000, what: 'the shutdown to finish' })
    await waitFor(() => !fs.existsSync(join(dir, `.s.PGSQL.${tp.port}`)), { timeoutMs: 5_000, what: 'the socket file removed at the end' })
  })
}
