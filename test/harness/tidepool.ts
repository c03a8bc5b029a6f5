// Runs tidepool for a test: in-process on port 0 (startTidepool) or as a child process when signals
// matter (spawnTidepool). Writes the ini and userlist into a temp dir, collects the log, prints it
// when the test fails, and stops everything in t.after().

import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import type { TestContext } from 'node:test'
import pg from 'pg'
import { loadConfig } from '../../src/config/load.ts'
import { Runtime } from '../../src/runtime.ts'
import { Logger } from '../../src/observe/log.ts'
import type { Pool } from '../../src/pool/pool.ts'
import type { PoolCounts } from '../../src/pool/control.ts'
import { TEST_USERS, type PgInstance } from './postgres.ts'
import { waitFor } from './clients.ts'

export interface TidepoolOptions {
  /** [pgbouncer] keys; listen_port=0, listen_addr=127.0.0.1 and unix_socket_dir= are the defaults. */
  settings?: Record<string, string | number>
  /** [databases] lines as name → connection string; default: app (and postgres) on the given PostgreSQL as its superuser. */
  databases?: Record<string, string>
  /** [users] lines. */
  users?: Record<string, string>
  /**
   * userlist.txt entries (user → password). Without it, under auth_type trust (the default), the
   * test PostgreSQL's users (TEST_USERS) and the admin_users/stats_users names are written: trust
   * admits only users auth_file (or auth_query) knows, as in PgBouncer.
   */
  userlist?: Record<string, string>
  /** [tidepool] keys. */
  tidepool?: Record<string, string | number>
  /** [peers] lines as peer id → connection string (host=... port=... pool_size=...). */
  peers?: Record<string, string>
  /** Extra files written next to the ini first (an auth_hba_file, say), by name. */
  files?: Record<string, string>
}

export interface TestTidepool {
  rt: Runtime
  port: number
  dir: string
  iniPath: string
  logs: string[]
  /** A logged-in pg.Client through tidepool, ended in t.after(). */
  connect(t: TestContext, opts?: { database?: string; user?: string; password?: string; application_name?: string }): Promise<pg.Client>
  pool(database: string, user: string): Pool | undefined
  /** SHOW POOLS' counts for one pool (the same Pool.counts() the console reads); all 0 without a pool. */
  poolCounts(database: string, user: string): PoolCounts
  /** Rewrites the ini with new settings (same databases unless given). */
  rewrite(opts: TidepoolOptions): void
}

const NO_POOL: PoolCounts = { cl_active: 0, cl_waiting: 0, cl_pinned: 0, sv_active: 0, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_being_canceled: 0, sv_login: 0, maxwait_ms: 0 }

export function writeConfig(dir: string, pgi: PgInstance | null, opts: TidepoolOptions): string {
  const settings: Record<string, string | number> = { listen_addr: '127.0.0.1', listen_port: 0, unix_socket_dir: '', auth_type: 'trust', pool_mode: 'transaction', ...opts.settings }
  const databases = opts.databases ?? (pgi === null ? {} : {
    app: `host=127.0.0.1 port=${pgi.port} dbname=app user=${pgi.user} password=${pgi.password}`,
    postgres: `host=127.0.0.1 port=${pgi.port} dbname=postgres user=${pgi.user} password=${pgi.password}`,
  })
  const lines = ['[databases]', ...Object.entries(databases).map(([k, v]) => `${k} = ${v}`), '', '[pgbouncer]']
  for (const [k, v] of Object.entries(settings)) lines.push(`${k} = ${v}`)
  const userlist = opts.userlist ?? (settings.auth_type === 'trust' ? defaultTrustUserlist(settings) : undefined)
  if (userlist !== undefined) {
    fs.writeFileSync(join(dir, 'userlist.txt'), Object.entries(userlist).map(([u, p]) => `"${u}" "${p}"`).join('\n') + '\n')
    lines.push('auth_file = userlist.txt')
  }
  if (opts.users !== undefined) {
    lines.push('', '[users]', ...Object.entries(opts.users).map(([k, v]) => `${k} = ${v}`))
  }
  if (opts.tidepool !== undefined) {
    lines.push('', '[tidepool]', ...Object.entries(opts.tidepool).map(([k, v]) => `${k} = ${v}`))
  }
  if (opts.peers !== undefined) {
    lines.push('', '[peers]', ...Object.entries(opts.peers).map(([k, v]) => `${k} = ${v}`))
  }
  for (const [name, text] of Object.entries(opts.files ?? {})) fs.writeFileSync(join(dir, name), text)
  const iniPath = join(dir, 'tidepool.ini')
  fs.writeFileSync(iniPath, lines.join('\n') + '\n')
  return iniPath
}

/** The users a trust config knows when a test gives no userlist: TEST_USERS, then the console's users. */
function defaultTrustUserlist(settings: Record<string, string | number>): Record<string, string> {
  const list: Record<string, string> = {}
  for (const u of Object.values(TEST_USERS)) list[u.user] = u.password
  for (const key of ['admin_users', 'stats_users']) {
    for (const name of String(settings[key] ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '')) list[name] ??= `${name}-pw`
  }
  return list
}

export async function startTidepool(t: TestContext, pgi: PgInstance, opts: TidepoolOptions = {}): Promise<TestTidepool> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-test-'))
  const iniPath = writeConfig(dir, pgi, opts)
  const r = await loadConfig(iniPath)
  if (!r.ok) throw new Error(`test config rejected:\n${r.errors.join('\n')}`)
  const logs: string[] = []
  const log = new Logger((l) => logs.push(l))
  const rt = await Runtime.start(r.config, { log })
  const clients: pg.Client[] = []
  t.after(async () => {
    for (const c of clients) await c.end().catch(() => {})
    await rt.shutdown('immediate')
    fs.rmSync(dir, { recursive: true, force: true })
  })
  t.after(() => {
    // Attached to every test; scripts/test-reporter.mjs shows them only for tests that failed.
    t.diagnostic(`[log] tidepool log:\n${logs.join('\n')}`)
    t.diagnostic(`[log] PostgreSQL log (last 40 lines):\n${pgi.logs().split('\n').slice(-40).join('\n')}`)
    if (process.env.TIDEPOOL_TEST_LOG === '1') process.stderr.write(logs.join('\n') + '\n')
  })
  const tp: TestTidepool = {
    rt,
    port: rt.port,
    dir,
    iniPath,
    logs,
    async connect(tc, o = {}) {
      const c = new pg.Client({ host: '127.0.0.1', port: rt.port, database: o.database ?? 'app', user: o.user ?? pgi.user, password: o.password ?? pgi.password, application_name: o.application_name })
      c.on('error', () => {})
      await c.connect()
      clients.push(c)
      void tc
      return c
    },
    pool(database, user) {
      return rt.poolList.find((p) => p.database === database && p.user === user)
    },
    poolCounts(database, user) {
      return tp.pool(database, user)?.counts(Date.now()) ?? NO_POOL
    },
    rewrite(o) {
      writeConfig(dir, pgi, o)
    },
  }
  return tp
}

export interface ChildTidepool {
  proc: ChildProcess
  port: number
  dir: string
  iniPath: string
  output(): string
  waitExit(timeoutMs: number): Promise<number | null>
}

/**
 * tidepool as a child process (for signal tests): `node --import tsx src/main.ts <ini>`, or with
 * `bin` the command as installed, `node bin/tidepool.mjs <ini>` (the compiled dist/), run from `cwd`.
 */
export async function spawnTidepool(t: TestContext, pgi: PgInstance, opts: TidepoolOptions & { port: number; bin?: boolean; cwd?: string; env?: Record<string, string> }): Promise<ChildTidepool> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'tidepool-child-'))
  const iniPath = writeConfig(dir, pgi, { ...opts, settings: { ...opts.settings, listen_port: opts.port } })
  const root = join(import.meta.dirname, '..', '..')
  const args = opts.bin === true ? [join(root, 'bin', 'tidepool.mjs'), iniPath] : ['--import', 'tsx', join(root, 'src', 'main.ts'), iniPath]
  const proc = spawn(process.execPath, args, { cwd: opts.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env === undefined ? process.env : { ...process.env, ...opts.env } })
  let out = ''
  proc.stdout?.on('data', (d) => { out += String(d) })
  proc.stderr?.on('data', (d) => { out += String(d) })
  let exitCode: number | null | undefined
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => { exitCode = code; resolve(code) }))
  t.after(() => t.diagnostic(`[log] tidepool output:\n${out}`))
  t.after(async () => {
    if (exitCode === undefined) {
      proc.kill('SIGKILL')
      await exited
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })
  await waitFor(() => out.includes('[runtime.started]') || exitCode !== undefined, { timeoutMs: 20_000, what: 'tidepool child to start' })
  if (exitCode !== undefined) throw new Error(`tidepool exited early (${exitCode}):\n${out}`)
  return {
    proc,
    port: opts.port,
    dir,
    iniPath,
    output: () => out,
    waitExit: (timeoutMs) => Promise.race([exited, new Promise<number | null>((_, rej) => setTimeout(() => rej(new Error(`tidepool did not exit in ${timeoutMs} ms:\n${out}`)), timeoutMs).unref())]),
  }
}
