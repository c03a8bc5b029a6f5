// Streaming replication for test/ha, from Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin): a
// primary and N hot standbys cloned with pg_basebackup -R. We run each postmaster ourselves, so a
// test can crash it (kill), promote it, stop and start it, or point it at a new primary (follow).
//
// Also the process plumbing that patroni.ts shares: Daemon (one long-running child and its log) and
// the cleanup that keeps any of them from outliving the test process:
//   - t.after() kills every process of the cluster and removes its dirs, pass or fail;
//   - an 'exit' listener does the same synchronously (for a test that never reached its t.after);
//   - every daemon runs under `setpriv --pdeathsig`, so a SIGKILLed test process still takes its
//     postmasters, Patroni and etcd down (Patroni stops its own postgres on SIGTERM);
//   - dirs are `<tmpdir>/tidepool-pg-<run id>-<pid>-XXXXXX` as in postgres.ts, and every daemon's
//     command line names its dir, so scripts/run-tests.mjs's sweep (pgrep -f on that marker) finds
//     whatever survived anyway, and reapStaleDirs removes dirs of dead test processes.
// As root, PostgreSQL and Patroni run as the OS user postgres (PostgreSQL refuses root). Daemons are
// spawned with its uid/gid rather than through runuser, so the pid we hold is the daemon's own and
// the parent-death signal reaches it; one-shot commands (initdb, pg_ctl...) go through runuser.
// Must not: touch a dir or process that another test process created.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { appendFileSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { reapStaleDirs } from '../../src/embedded/postgres.ts'
import { runCommand, waitFor, type RunResult } from './clients.ts'
import { freePort } from './ports.ts'
import { PG_DIR_PREFIX, STALE_DIR, TEST_DATABASE, TEST_USERS, runId, type PgInstance } from './postgres.ts'

export const PG_BIN = '/usr/lib/postgresql/15/bin'
export const HOST = '127.0.0.1'
export const SUPERUSER = TEST_USERS.superuser
export const REPLICATOR = { user: 'replicator', password: 'replicator-pw' } as const

const READY = /database system is ready to accept (read-only )?connections/
// What a standby logs when its WAL went past the point where the new primary's timeline forked.
const DIVERGED = /not in this server's history|forked off current database system timeline|is not a child of this server's history/

// --- the postgres OS user, dirs, and processes that must not outlive us --------------------------

let ids: { uid?: number; gid?: number } | null = null

export function postgresIds(): { uid?: number; gid?: number } {
  if (ids !== null) return ids
  if (process.getuid?.() !== 0) return (ids = {})
  const id = (flag: string): number => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error('no OS user postgres: install postgresql-15 (bash .ci/run does)')
    return Number.parseInt(r.stdout, 10)
  }
  return (ids = { uid: id('-u'), gid: id('-g') })
}

/** Fails with what to install, rather than with a spawn error deep in a start. */
export function requireBinaries(paths: string[]): void {
  const missing = paths.filter((p) => !existsSync(p))
  if (missing.length > 0) {
    throw new Error(`test/ha needs ${missing.join(', ')}: apt-get install postgresql-15 patroni etcd-server haproxy (bash .ci/run and scripts/run-tests.mjs do)`)
  }
}

export function chownToPostgres(path: string): void {
  const { uid, gid } = postgresIds()
  if (uid !== undefined && gid !== undefined) chownSync(path, uid, gid)
}

/** A one-shot command as the postgres OS user, killed at the deadline; throws unless it exits 0. */
export async function runAsPostgres(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  const env = { PATH: process.env.PATH ?? '', LC_ALL: 'C' }
  const r = postgresIds().uid === undefined
    ? await runCommand(cmd, args, env, timeoutMs)
    : await runCommand('runuser', ['-u', 'postgres', '--', cmd, ...args], env, timeoutMs)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${r.stdout}${r.stderr}`)
  return r
}

const daemons = new Set<Daemon>()
const dirs = new Set<string>()
let exitHookInstalled = false

/** A dir of this run for one node (or etcd), owned by postgres; destroy() or the exit hook removes it. */
export function makeDir(): string {
  reapStaleDirs(STALE_DIR)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // Synchronous: nothing asynchronous runs after 'exit'.
    process.on('exit', () => {
      for (const d of daemons) d.kill()
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
    })
  }
  const dir = mkdtempSync(join(tmpdir(), `${PG_DIR_PREFIX}${runId()}-${process.pid}-`))
  chownToPostgres(dir)
  dirs.add(dir)
  return dir
}

/** Kills what remains of these daemons (bounded wait), then removes the dirs. Never throws. */
export async function destroy(ds: Daemon[], toRemove: string[]): Promise<void> {
  for (const d of ds) d.kill()
  await Promise.all(ds.map((d) => d.whenGone().catch(() => {})))
  for (const d of ds) daemons.delete(d)
  for (const dir of toRemove) {
    rmSync(dir, { recursive: true, force: true })
    dirs.delete(dir)
  }
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return true
  }
  // A zombie (its orphaned parent not reaped yet) holds no port and no shared memory.
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/** SIGKILLs `pid` and its children. Stopped first, so it cannot fork one between the listing and the kill. */
function killTree(pid: number): number[] {
  try { process.kill(pid, 'SIGSTOP') } catch { return [] }
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout
    .split('\n').map((s) => Number.parseInt(s, 10)).filter((n) => Number.isInteger(n))
  for (const p of [pid, ...children]) {
    try { process.kill(p, 'SIGKILL') } catch { /* gone */ }
  }
  return [pid, ...children]
}

/** The postmaster running in `dataDir`, by its postmaster.pid; the command line is checked, since a
 *  stale file may name a pid that now belongs to something else. */
export function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8'), 10)
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dataDir) ? pid : null
  } catch {
    return null
  }
}

/** Waits for `p` or `ms`, whichever comes first, and leaves no timer behind to hold the process. */
async function within(p: Promise<void>, ms: number): Promise<void> {
  const ac = new AbortController()
  await Promise.race([p, sleep(ms, undefined, { signal: ac.signal }).catch(() => {})])
  ac.abort()
}

/** One long-running child (postmaster, Patroni, etcd) and its output, kept across restarts. */
export class Daemon {
  private child: ChildProcess | null = null
  private exited: Promise<void> = Promise.resolve()
  private doomed: number[] = []
  private readonly lines: string[] = []
  private partial = ''

  constructor(private readonly o: {
    asPostgres: boolean
    /** what the daemon gets when the test process dies */
    deathSignal: 'QUIT' | 'TERM'
    env?: NodeJS.ProcessEnv
    /** a data dir whose postmaster dies with this daemon though it is not its child (Patroni's) */
    postmasterOf?: string
  }) {}

  spawn(cmd: string, args: string[]): void {
    daemons.add(this)
    const child = spawn('/usr/bin/setpriv', ['--pdeathsig', this.o.deathSignal, cmd, ...args], {
      ...(this.o.asPostgres ? postgresIds() : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.o.env ?? { PATH: process.env.PATH ?? '', LC_ALL: 'C' },
    })
    this.child = child
    this.exited = new Promise((resolve) => { child.once('exit', () => resolve()); child.once('error', () => resolve()) })
    for (const s of [child.stdout!, child.stderr!]) {
      s.on('data', (b: Buffer) => this.onOutput(b))
      ;(s as unknown as Socket).unref()
    }
    // Unref'd: a test that forgets a cluster still ends, and the exit hook kills it.
    child.unref()
  }

  private onOutput(b: Buffer): void {
    const parts = (this.partial + b.toString('utf8')).split('\n')
    this.partial = parts.pop() ?? ''
    this.lines.push(...parts)
  }

  running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null
  }

  /** A position in the log, for since(). */
  mark(): number {
    return this.lines.length
  }

  since(mark: number): string {
    return [...this.lines.slice(mark), this.partial].join('\n')
  }

  log(): string {
    return this.since(0)
  }

  /** SIGKILL to the daemon, its children and the postmaster it runs; whenGone() waits for them. */
  kill(): void {
    if (this.running()) this.doomed.push(...killTree(this.child!.pid!))
    const pm = this.o.postmasterOf === undefined ? null : postmasterPid(this.o.postmasterOf)
    if (pm !== null) this.doomed.push(...killTree(pm))
    this.child = null
  }

  async whenGone(timeoutMs = 10_000): Promise<void> {
    await within(this.exited, timeoutMs)
    await waitFor(() => this.doomed.every(isGone), { timeoutMs, what: `processes ${this.doomed.join(' ')} to die` })
    this.doomed = []
  }

  /** `signal`, up to graceMs for the daemon to exit, then kill() whatever is left. */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    if (this.running()) {
      this.child!.kill(signal)
      await within(this.exited, graceMs)
    }
    this.kill()
    await this.whenGone()
  }

  /** Resolves when `ready` shows in the log written since `mark`; throws if the daemon exits first
   *  or at the deadline, with that log. */
  async waitLog(mark: number, ready: RegExp, timeoutMs: number, what: string): Promise<void> {
    try {
      await waitFor(() => !this.running() || ready.test(this.since(mark)), { timeoutMs, what })
    } catch (err) {
      throw new Error(`${(err as Error).message}; log:\n${this.since(mark)}`)
    }
    if (!ready.test(this.since(mark))) throw new Error(`${what}: the process exited; log:\n${this.since(mark)}`)
  }
}

/** A daemon's last log lines, attached to every test: scripts/test-reporter.mjs shows them only
 *  for tests that failed. */
export function diagnostics(t: TestContext, what: string, log: () => string): void {
  t.after(() => t.diagnostic(`[log] ${what}, last 60 lines:\n${log().split('\n').slice(-60).join('\n')}`))
}

/** One query as the superuser, on a connection of its own, bounded. */
export async function pgQuery(port: number, sql: string, params?: unknown[], db = 'postgres'): Promise<any[]> {
  const c = new pg.Client({
    host: HOST, port, database: db, user: SUPERUSER.user, password: SUPERUSER.password,
    connectionTimeoutMillis: 5_000, query_timeout: 30_000,
  })
  c.on('error', () => { /* the awaited call reports it */ })
  try {
    await c.connect()
    return (await c.query(sql, params)).rows
  } finally {
    await c.end().catch(() => {})
  }
}

/** Waits until every named standby streams from the server on `port` (its pg_stat_replication). */
export async function waitStreaming(port: number, names: string[], timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => {
    const rows = await pgQuery(port, `SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'`)
    return names.every((n) => rows.some((r) => r.application_name === n))
  }, { timeoutMs, intervalMs: 100, what: `${names.join(', ')} to stream from 127.0.0.1:${port}` })
}

// --- one node -----------------------------------------------------------------------------------

export interface ReplNode extends PgInstance {
  readonly name: string
  isRunning(): boolean
  isInRecovery(): Promise<boolean>
  /** pg_ctl promote, then waits until pg_is_in_recovery() is false */
  promote(): Promise<void>
  /** SIGKILL of the postmaster and its children: a crash */
  kill(): void
  stop(mode?: 'fast' | 'immediate'): Promise<void>
  /** on the same port; a standby resumes streaming from its primary_conninfo */
  start(): Promise<void>
  /** Re-points a standby at `primary`; a node that is or was a primary (no standby.signal), or one
   *  whose WAL went past the new timeline's fork, is rebuilt with pg_basebackup. Waits until it streams. */
  follow(primary: ReplNode): Promise<void>
  log(): string
}

const SETTINGS: Record<string, string> = {
  listen_addresses: HOST,
  unix_socket_directories: '',
  max_connections: '100',
  shared_buffers: '16MB',
  // A process crash loses nothing with fsync off (the OS keeps the writes); a machine crash would.
  fsync: 'off',
  wal_level: 'replica',
  hot_standby: 'on',
  max_wal_senders: '10',
  // Enough WAL kept that a standby re-pointed after a failover finds what it needs without slots.
  wal_keep_size: '64MB',
  // A standby that lost its primary retries (and notices a promote request) after this, 5 s by default.
  wal_retrieve_retry_interval: '500ms',
  log_line_prefix: '%m [%p] %q%u@%d ',
}

function conninfo(port: number, appName: string): string {
  return `host=${HOST} port=${port} user=${REPLICATOR.user} password=${REPLICATOR.password} application_name=${appName}`
}

class Node implements ReplNode {
  readonly host = HOST
  readonly user = SUPERUSER.user
  readonly password = SUPERUSER.password
  readonly dataDir: string
  readonly daemon = new Daemon({ asPostgres: true, deathSignal: 'QUIT' })

  constructor(readonly name: string, readonly dir: string, public port: number) {
    this.dataDir = join(dir, 'data')
  }

  url(db = 'postgres', user: string = this.user, password?: string): string {
    const pw = password ?? (user === this.user ? this.password : '')
    return `postgresql://${encodeURIComponent(user)}${pw === '' ? '' : `:${encodeURIComponent(pw)}`}@${HOST}:${this.port}/${encodeURIComponent(db)}`
  }

  log(): string { return this.daemon.log() }
  logs(): string { return this.daemon.log() }
  isRunning(): boolean { return this.daemon.running() }
  query(sql: string, params?: unknown[]): Promise<any[]> { return pgQuery(this.port, sql, params) }
  kill(): void { this.daemon.kill() }

  async isInRecovery(): Promise<boolean> {
    return (await this.query('SELECT pg_is_in_recovery() AS r'))[0].r === true
  }

  /** false: the port was taken since freePort() chose it (only the first start picks another). */
  async launch(): Promise<boolean> {
    await this.daemon.whenGone()
    const mark = this.daemon.mark()
    const args = ['-D', this.dataDir, '-p', String(this.port)]
    for (const [k, v] of Object.entries(SETTINGS)) args.push('-c', `${k}=${v}`)
    this.daemon.spawn(join(PG_BIN, 'postgres'), args)
    try {
      await this.daemon.waitLog(mark, READY, 60_000, `${this.name} (127.0.0.1:${this.port}) to accept connections`)
      return true
    } catch (err) {
      if (/could not bind|Address already in use/.test(this.daemon.since(mark))) return false
      throw err
    }
  }

  async start(): Promise<void> {
    if (this.isRunning()) return
    if (!(await this.launch())) throw new Error(`${this.name}: port ${this.port} is taken:\n${this.log()}`)
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.daemon.stop(mode === 'fast' ? 'SIGINT' : 'SIGQUIT', 15_000)
  }

  async promote(): Promise<void> {
    await runAsPostgres(join(PG_BIN, 'pg_ctl'), ['promote', '-D', this.dataDir, '-w', '-t', '30'], 40_000)
    await waitFor(async () => !(await this.isInRecovery()), { timeoutMs: 30_000, intervalMs: 50, what: `${this.name} to leave recovery` })
  }

  /** pg_basebackup -R of `from` into an empty data dir. */
  async cloneFrom(from: ReplNode): Promise<void> {
    rmSync(this.dataDir, { recursive: true, force: true })
    await runAsPostgres(join(PG_BIN, 'pg_basebackup'), [
      '-D', this.dataDir, '-d', conninfo(from.port, this.name), '-R', '-X', 'stream', '-c', 'fast', '--no-sync',
    ], 120_000)
  }

  async follow(primary: ReplNode): Promise<void> {
    if (primary === this) throw new Error(`${this.name} cannot follow itself`)
    if (existsSync(join(this.dataDir, 'standby.signal'))) {
      await this.stop('fast')
      // The last primary_conninfo in the file wins.
      appendFileSync(join(this.dataDir, 'postgresql.auto.conf'), `primary_conninfo = '${conninfo(primary.port, this.name)}'\n`)
      const mark = this.daemon.mark()
      await this.start()
      if (await this.waitStream(primary, mark)) return
    }
    await this.stop('immediate')
    await this.cloneFrom(primary)
    const mark = this.daemon.mark()
    await this.start()
    if (!(await this.waitStream(primary, mark))) throw new Error(`${this.name} diverged from ${primary.name} right after a clone`)
  }

  /** true once this standby streams from `primary` on the primary's timeline; false if it finds its
   *  WAL went past that timeline's fork. Watching the standby's side, since a diverged standby
   *  does stream (the old timeline's tail) for a moment before it notices. */
  private async waitStream(primary: ReplNode, mark: number): Promise<boolean> {
    let diverged = false
    await waitFor(async () => {
      diverged = DIVERGED.test(this.daemon.since(mark))
      if (diverged) return true
      const [p] = await primary.query(`SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tli`)
      const [r] = await this.query('SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver')
      return r?.status === 'streaming' && r.sender_port === primary.port && r.received_tli === p.tli
    }, { timeoutMs: 30_000, intervalMs: 100, what: `${this.name} to stream from ${primary.name}` })
    return !diverged
  }
}

async function newNode(name: string): Promise<Node> {
  return new Node(name, makeDir(), await freePort())
}

/** The first start, retried on another port should someone take ours meanwhile. */
async function firstStart(node: Node): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await node.launch()) return
    node.port = await freePort()
  }
  throw new Error(`${node.name}: no free port after 5 attempts:\n${node.log()}`)
}

async function initPrimary(node: Node): Promise<void> {
  const pwFile = join(node.dir, 'pwfile')
  writeFileSync(pwFile, SUPERUSER.password + '\n', { mode: 0o600 })
  chownToPostgres(pwFile)
  await runAsPostgres(join(PG_BIN, 'initdb'), [
    '-D', node.dataDir, `--username=${SUPERUSER.user}`, `--pwfile=${pwFile}`, '--auth=scram-sha-256',
    '--locale=C', '--encoding=UTF8', '--no-sync', '--no-instructions',
  ], 60_000)
  rmSync(pwFile)
  // Overwriting keeps initdb's owner and mode. Standbys copy it with the rest.
  writeFileSync(join(node.dataDir, 'pg_hba.conf'), [
    `host all all ${HOST}/32 scram-sha-256`,
    `host replication ${REPLICATOR.user} ${HOST}/32 scram-sha-256`,
    '',
  ].join('\n'))
  await firstStart(node)
  await node.query(`CREATE ROLE ${REPLICATOR.user} REPLICATION LOGIN PASSWORD '${REPLICATOR.password}'`)
  await node.query(`CREATE DATABASE ${TEST_DATABASE}`)
}

export interface ReplicatedCluster {
  /** the primary at start; after a promotion, the test knows which node leads */
  primary: ReplNode
  replicas: ReplNode[]
  nodes: ReplNode[]
}

/** A primary `pg0` and standbys `pg1`..`pgN` (their application_name too), each on its own free
 *  loopback port, with the database `app`; the superuser is TEST_USERS.superuser. Returns once
 *  every standby streams. Everything is killed and removed in t.after(). */
export async function startReplicatedCluster(t: TestContext, opts: { replicas: number }): Promise<ReplicatedCluster> {
  requireBinaries([`${PG_BIN}/postgres`, `${PG_BIN}/pg_basebackup`])
  const nodes: Node[] = []
  t.after(() => destroy(nodes.map((n) => n.daemon), nodes.map((n) => n.dir)))
  const add = (n: Node): void => {
    nodes.push(n)
    diagnostics(t, n.name, () => n.log())
  }
  const primary = await newNode('pg0')
  add(primary)
  await initPrimary(primary)
  const replicas = await Promise.all(Array.from({ length: opts.replicas }, async (_, i) => {
    const r = await newNode(`pg${i + 1}`)
    add(r)
    await r.cloneFrom(primary)
    await firstStart(r)
    return r
  }))
  await waitStreaming(primary.port, replicas.map((r) => r.name))
  return { primary, replicas, nodes: [primary, ...replicas] }
}
