// Real PostgreSQL clients for tests (psql, pgbench) and the bounded wait that replaces sleeps.
// Every run has a deadline: a hung psql or pgbench is killed, never left to hang the suite.
// Must not: inherit the caller's PG* environment (PGSERVICE, PGSSLMODE...), which would make a
// test depend on the machine it runs on. libpq defaults stay (sslmode=prefer sends SSLRequest
// first), because that is what users' clients do.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TestContext } from 'node:test'
import pg from 'pg'
import type { PgInstance } from './postgres.ts'

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface PsqlArgs {
  port: number
  host?: string
  user: string
  db: string
  password?: string
  sql?: string
  file?: string
  extraArgs?: string[]
  timeoutMs?: number
  /** libpq variables on top of the clean environment (PGOPTIONS, say). */
  env?: Record<string, string>
}

export interface PgbenchArgs {
  port: number
  host?: string
  user: string
  db: string
  password?: string
  args: string[]
  timeoutMs?: number
}

export interface PgbenchResult extends RunResult {
  /** from pgbench's `tps = N` line; null when it printed none (failed run) */
  tps: number | null
}

/** A node-postgres client straight to `pgi` as its superuser (setup, and what the server itself sees); ended after the test. */
export async function connectDirect(t: TestContext, pgi: PgInstance, database = 'app'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: pgi.port, user: pgi.user, password: pgi.password, database })
  await c.connect()
  t.after(() => c.end())
  return c
}

const binaryCache = new Map<string, boolean>()

/** Whether `name` is on PATH (or in /usr/sbin, where Debian puts pgbouncer). */
export function hasBinary(name: string): boolean {
  let found = binaryCache.get(name)
  if (found === undefined) {
    const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], {
      env: { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` }, stdio: 'ignore',
    })
    found = r.status === 0
    binaryCache.set(name, found)
  }
  return found
}

function pgEnv(password: string | undefined, timeoutMs: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v
  if (password !== undefined) env.PGPASSWORD = password
  // psql and pgbench take whole seconds here; at least 2, since libpq treats 1 as 2 anyway.
  env.PGCONNECT_TIMEOUT = String(Math.max(2, Math.min(30, Math.ceil(timeoutMs / 1000))))
  env.PGAPPNAME = 'tidepool-test'
  return env
}

/** Runs `cmd`, collecting output; SIGKILLs it at the deadline (code null, a note in stderr).
 *  onSpawn lets a caller track the child, to kill it should the caller itself be stopped. */
export function runCommand(
  cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, onSpawn?: (child: ChildProcess) => void,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    onSpawn?.(child)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('close', (code) => {
      clearTimeout(timer)
      if (timedOut) stderr += `\n[${cmd} killed after ${timeoutMs} ms]`
      resolve({ code: timedOut ? null : code, stdout, stderr })
    })
  })
}

/** psql -X -v ON_ERROR_STOP=1 -At: no psqlrc, stop at the first error, unaligned tuples only. */
export function runPsql(a: PsqlArgs): Promise<RunResult> {
  const timeoutMs = a.timeoutMs ?? 30_000
  const args = ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', a.host ?? '127.0.0.1', '-p', String(a.port), '-U', a.user, '-d', a.db]
  if (a.password === undefined) args.push('-w') // never prompt: there is no terminal
  if (a.sql !== undefined) args.push('-c', a.sql)
  if (a.file !== undefined) args.push('-f', a.file)
  args.push(...(a.extraArgs ?? []))
  return runCommand('psql', args, { ...pgEnv(a.password, timeoutMs), ...a.env }, timeoutMs)
}

export async function runPgbench(a: PgbenchArgs): Promise<PgbenchResult> {
  const timeoutMs = a.timeoutMs ?? 120_000
  const args = ['-h', a.host ?? '127.0.0.1', '-p', String(a.port), '-U', a.user, ...a.args, a.db]
  const r = await runCommand('pgbench', args, pgEnv(a.password, timeoutMs), timeoutMs)
  return { ...r, tps: parseTps(r.stdout) }
}

/** The `tps = 1234.56 (without initial connection time)` line; pgbench 14+ prints exactly one. */
export function parseTps(stdout: string): number | null {
  const m = /^tps = ([0-9.]+)/m.exec(stdout)
  return m ? Number.parseFloat(m[1]!) : null
}

/** Polls `cond` until it holds; throws naming `what` at the deadline. A throwing cond counts as false. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; what?: string },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs
  const intervalMs = opts.intervalMs ?? 20
  let lastError: unknown = null
  for (;;) {
    try {
      if (await cond()) return
      lastError = null
    } catch (err) {
      lastError = err
    }
    if (Date.now() >= deadline) break
    await sleep(intervalMs)
  }
  const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : ''
  throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what ?? 'condition'}${cause}`)
}
