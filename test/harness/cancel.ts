// Cancel requests as clients send them, for the cancel tests (workers, peers, fleet): a node-postgres
// client that exposes its BackendKeyData, a CancelRequest on a connection of its own (libpq's
// PQcancel), a wait for PostgreSQL to show the queries that are to be cancelled, and psql's own
// cancel (SIGINT).

import net from 'node:net'
import { spawn } from 'node:child_process'
import pg from 'pg'
import * as build from '../../src/protocol/build.ts'
import type { PgInstance } from './postgres.ts'
import { waitFor } from './clients.ts'

/** node-postgres keeps the BackendKeyData it was given. */
export type KeyedClient = pg.Client & { processID: number; secretKey: number }

/** A logged-in client of `database` through the pooler on `port`, ended in t.after(). */
export async function connectKeyed(t: { after(fn: () => unknown): void }, pgi: PgInstance, port: number, database = 'app'): Promise<KeyedClient> {
  const c = new pg.Client({ host: '127.0.0.1', port, database, user: pgi.user, password: pgi.password }) as KeyedClient
  c.on('error', () => {})
  await c.connect()
  t.after(() => c.end().catch(() => {}))
  return c
}

/** A CancelRequest on a connection of its own; resolves, with how many bytes came back, once the other side closes. */
export function sendCancelRequest(port: number, pid: number, secret: number): Promise<number> {
  return new Promise((resolve) => {
    let bytes = 0
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(build.cancelRequest(pid, secret)))
    s.on('data', (d) => { bytes += d.length })
    s.on('error', () => s.destroy())
    s.on('close', () => resolve(bytes))
  })
}

/** Waits until PostgreSQL shows `n` sessions of the app database running pg_sleep. */
export async function waitSleeping(pgi: PgInstance, n: number): Promise<void> {
  await waitFor(async () => {
    const r = await pgi.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'app' AND query LIKE 'SELECT pg_sleep%' AND state = 'active'`)
    return r[0].n === n
  }, { timeoutMs: 10_000, what: `${n} sleeping queries` })
}

/**
 * psql runs `SELECT pg_sleep(30)` through `port` and gets SIGINT once PostgreSQL shows it sleeping,
 * so psql sends its own CancelRequest; resolves with psql's exit code and stderr.
 */
export async function psqlInterrupted(t: { after(fn: () => unknown): void }, pgi: PgInstance, port: number): Promise<{ code: number | null; stderr: string }> {
  const psql = spawn('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', pgi.user, '-d', 'app', '-c', 'SELECT pg_sleep(30)'], {
    env: { ...process.env, PGPASSWORD: pgi.password }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  psql.stderr.on('data', (d) => { stderr += String(d) })
  const exited = new Promise<number | null>((resolve) => psql.on('exit', (code) => resolve(code)))
  t.after(() => psql.kill('SIGKILL'))
  await waitSleeping(pgi, 1)
  psql.kill('SIGINT')
  return { code: await exited, stderr }
}
