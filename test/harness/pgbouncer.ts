// Debian's PgBouncer (/usr/sbin/pgbouncer, 1.18 on Debian 12) started by a test, on a free port in
// front of a harness PostgreSQL: the reference that tidepool's console is compared with, and a
// "foreign" pooler that the suite must leave running. Its files live in a dir named like the
// harness's clusters (PG_DIR_PREFIX + run id), so scripts/run-tests.mjs sweeps it if a test dies.
// Must not: listen on a Unix socket or a fixed port (a real PgBouncer on the machine owns those).

import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pg from 'pg'
import { freePort } from './ports.ts'
import { PG_DIR_PREFIX, runId, type PgInstance } from './postgres.ts'
import { waitFor } from './clients.ts'

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer'

export interface TestPgBouncer {
  port: number
  proc: ChildProcess
  /** A console client (database pgbouncer) as the harness superuser; ended after the test. */
  console(): Promise<pg.Client>
  log(): string
  stop(): Promise<void>
}

/**
 * Starts PgBouncer with one database `app` pointing at `pgi`; stopped after the test. `foreign`:
 * outside this run's dirs, as a PgBouncer that the machine runs for someone else would be.
 */
export async function startPgBouncer(t: TestContext, pgi: PgInstance, opts: { foreign?: boolean } = {}): Promise<TestPgBouncer> {
  const prefix = opts.foreign === true ? 'foreign-pgbouncer-' : `${PG_DIR_PREFIX}${runId()}-${process.pid}-pgbouncer-`
  const dir = mkdtempSync(join(tmpdir(), prefix))
  // As root PgBouncer needs -u; the harness's postgres OS user exists then (it runs PostgreSQL).
  const asRoot = userInfo().uid === 0
  if (asRoot) chmodSync(dir, 0o777)
  const port = await freePort()
  const ini = join(dir, 'pgbouncer.ini')
  writeFileSync(join(dir, 'userlist.txt'), `"${pgi.user}" "${pgi.password}"\n`, { mode: 0o644 })
  writeFileSync(ini, [
    '[databases]',
    `app = host=127.0.0.1 port=${pgi.port} dbname=app`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    "unix_socket_dir = ''",
    'auth_type = md5',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    `admin_users = ${pgi.user}`,
    `logfile = ${join(dir, 'pgbouncer.log')}`,
    `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    '',
  ].join('\n'), { mode: 0o644 })
  const args = asRoot ? ['-u', 'postgres', ini] : [ini]
  const proc = spawn(PGBOUNCER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout?.on('data', (d) => { out += String(d) })
  proc.stderr?.on('data', (d) => { out += String(d) })
  const log = (): string => {
    let file = ''
    try { file = readFileSync(join(dir, 'pgbouncer.log'), 'utf8') } catch { /* not yet */ }
    return out + file
  }
  const clients: pg.Client[] = []
  const stop = async (): Promise<void> => {
    for (const c of clients) await c.end().catch(() => {})
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGINT')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  t.after(stop)
  t.after(() => { t.diagnostic(`[log] pgbouncer log:\n${log()}`) })
  const connectConsole = async (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, database: 'pgbouncer', user: pgi.user, password: pgi.password })
    c.on('error', () => {})
    await c.connect()
    clients.push(c)
    return c
  }
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`pgbouncer exited with ${proc.exitCode}:\n${log()}`)
    try {
      const c = await connectConsole()
      await c.query('SHOW VERSION')
      return true
    } catch {
      return false
    }
  }, { timeoutMs: 15_000, intervalMs: 100, what: 'pgbouncer to accept console logins' })
  return { port, proc, console: connectConsole, log, stop }
}
