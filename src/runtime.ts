// The running pooler: owns the frozen Config snapshot, the pools, the listeners and the janitor
// tick; RELOAD swaps the snapshot whole and applies what may change live; shutdown closes in order.
// Invariants: exactly one Config is current; pools read their settings from the last resolve.
// Must not: parse config (config/ does) or speak the protocol (proxy/ does).

import net from 'node:net'
import tls from 'node:tls'
import fs from 'node:fs'
import type { Config, DatabaseEntry, SettingValue, SourcePos, UserSecret } from './config/types.ts'
import { diffConfig, loadConfig } from './config/load.ts'
import { findSetting, SETTINGS, type Settings } from './config/settings.ts'
import { checkBuildSupport } from './config/build-support.ts'
import { entryFor, poolSettings } from './config/effective.ts'
import { TidepoolError } from './util/errors.ts'
import { consoleRows, poolRow, runConsoleQuery, type ConsoleView, type SetOutcome, type SocketFacts } from './admin/console.ts'
import { parseUserlist } from './config/userlist.ts'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Framer, INSPECT_ALL } from './protocol/framer.ts'
import { parseErrorFields } from './protocol/reader.ts'
import { startHttp } from './observe/http.ts'
import { socketPath } from './net/dial.ts'
import { ReadGate } from './net/read-gate.ts'
import { pollUntil } from './util/poll.ts'
import type http from 'node:http'
import { clientTlsFromConfig, serverTlsFromConfig, type ClientTls, type ServerTls } from './net/tls.ts'
import type { HbaFile } from './auth/hba.ts'
import { loadHba } from './auth/hba-load.ts'
import { AuthQuery } from './auth/auth-query.ts'
import { Backends, isWatched, attrsOf } from './ha/backends.ts'
import { checkHost } from './ha/checks.ts'
import type { Host } from './ha/hosts.ts'
import type { HostChange } from './ha/monitor.ts'
import { runSwitchover, type SwitchoverReport } from './ha/switchover.ts'
import { Logger } from './observe/log.ts'
import { Pool, SharedCount, type ServerFactory } from './pool/pool.ts'
import { sweepLoginClients, sweepPool } from './pool/janitor.ts'
import { PoolStats, averages, type StatsAverages } from './pool/stats.ts'
import { IntrusiveList } from './util/intrusive-list.ts'
import { ServerState, type PooledClient } from './pool/states.ts'
import { CancelRegistry } from './proxy/cancel.ts'
import { ClientConn } from './proxy/client-conn.ts'
import { ServerConn, type ServerTarget, type WatchedHost } from './proxy/server-conn.ts'
import type { ProxyContext } from './proxy/context.ts'
import { ClientErrors } from './protocol/client-errors.ts'

export interface RuntimeOptions {
  log?: Logger
}

interface PoolEntry {
  pool: Pool
  target: ServerTarget
  /** Turn among equally loaded hosts (leastconn ties). */
  nextHost: number
  /** Why the last attempt found no host (logged once per change), or null. */
  noHostReason: string | null
}

export class Runtime implements ProxyContext, ServerFactory {
  config: Config
  readonly log: Logger
  readonly cancels = new CancelRegistry()
  readonly loginClients = new IntrusiveList<PooledClient>()
  readonly clients = new Set<ClientConn>()
  readonly authQuery = new AuthQuery()
  /** Hosts of watched [databases] entries: health, role, and where new server connections go. */
  readonly backends: Backends
  /** Pools a switchover holds (apart from PAUSE, which an operator may lift meanwhile). */
  private readonly heldPools = new Set<Pool>()
  private heldHosts: readonly Host[] | null = null
  private switchoverRunning: string | null = null
  /** The last switchover of each database, for SHOW SWITCHOVER and /metrics. */
  readonly switchovers = new Map<string, SwitchoverReport>()
  readonly switchoverCounts = new Map<string, { ok: number; failed: number }>()
  /** Connections of health checks, destroyed at shutdown. */
  private readonly checkSockets = new Set<net.Socket>()
  readonly clientCounts = { byDb: new Map<string, number>(), byUser: new Map<string, number>() }
  isShuttingDown = false
  /** Rebuilt on every RELOAD: new certificates apply to new connections. */
  clientTls: ClientTls | null = null
  serverTls: ServerTls | null = null
  hba: HbaFile | null = null
  private readonly pools = new Map<string, PoolEntry>()
  /** ClientKeys learnt from SCRAM logins against stored verifiers, by user (PgBouncer keeps them too). */
  private readonly scramClientKeys = new Map<string, Buffer>()
  private readonly dbCounts = new Map<string, SharedCount>()
  private readonly userCounts = new Map<string, SharedCount>()
  private readonly listeners: net.Server[] = []
  private tick: NodeJS.Timeout | null = null
  private unixSocketPath: string | null = null
  private shutdownDone: Promise<void> | null = null
  /** PAUSE with no database, and PAUSE <db>: new transactions wait until RESUME. */
  private isPausedAll = false
  private readonly pausedDbs = new Set<string>()
  /** DISABLE db: new logins to these are refused. */
  readonly disabledDbs = new Set<string>()
  private readonly consoleView: ConsoleView
  /** Counters of pools that were dropped, so totals never go backwards. */
  private readonly retiredStats = new Map<string, PoolStats>()
  /** Totals at the start of the current stats_period, and the averages of the last one. */
  private statsBefore = new Map<string, PoolStats>()
  private statsAverages = new Map<string, StatsAverages>()
  private statsTimer: NodeJS.Timeout | null = null
  private httpServer: http.Server | null = null
  private readonly startTimeS = Date.now() / 1000

  private constructor(config: Config, opts: RuntimeOptions) {
    this.config = config
    this.log = opts.log ?? new Logger()
    this.applyLogSettings()
    this.consoleView = this.makeConsoleView()
    this.backends = new Backends(
      (spec, timeoutMs) => checkHost({ ...spec, login: spec.login === null ? null : this.backends.withKeys(spec.login) }, timeoutMs,
        { serverTls: this.serverTls, maxPacket: this.settings.max_packet_size, sockets: this.checkSockets }),
      (h, change) => this.onHostChange(h, change),
      (user) => this.scramClientKey(user),
    )
  }

  get settings() {
    return this.config.settings
  }

  /** Starts listeners and the janitor; resolves once every listener is bound. */
  static async start(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
    const support = checkBuildSupport(config)
    if (support.errors.length > 0) throw new TidepoolError('TP_CONFIG_INVALID', support.errors.join('\n'))
    const rt = new Runtime(config, opts)
    for (const w of support.warnings) rt.log.warn('config.warning', null, w)
    rt.clientTls = clientTlsFromConfig(config)
    rt.serverTls = serverTlsFromConfig(config)
    rt.hba = hbaFromConfig(config)
    rt.backends.apply(config)
    await rt.listen()
    await rt.startHttpIfConfigured()
    rt.startJanitor()
    rt.startStats()
    rt.writePidfile()
    rt.log.info('runtime.started', null, `listening on ${rt.describeListeners()}`)
    return rt
  }

  /** The TCP port actually bound (useful with listen_port = 0). */
  get port(): number {
    for (const l of this.listeners) {
      const a = l.address()
      if (a !== null && typeof a === 'object') return a.port
    }
    return 0
  }

  get poolList(): Pool[] {
    return [...this.pools.values()].map((e) => e.pool)
  }

  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer> {
    return runConsoleQuery(sql, this.consoleView, { isAdmin })
  }

  /** What the admin console reads and may ask for; it never touches pool lists itself. */
  private makeConsoleView(): ConsoleView {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const rt = this
    return {
      version: 'tidepool 0.1.0',
      hosts: () => rt.backends.monitor.all().map((host) => ({
        host,
        databases: [...rt.config.databases.values()].filter((e) => rt.backends.hostsOf(e).includes(host)).map((e) => e.name),
      })),
      switchover: (db, to, timeoutMs) => {
        const s = rt.config.settings
        // The deadline must be finite: it is what releases held traffic whatever happens.
        return rt.switchover(db, to, timeoutMs ?? (s.pause_timeout_ms > 0 ? s.pause_timeout_ms : 30_000))
      },
      switchovers: () => [...rt.switchovers.values()],
      pools: (nowMs) => rt.poolList.map((p) => poolRow(p, nowMs)),
      servers: () => rt.poolList.flatMap((p) => p.lists.allServers().map((s) => (s as ServerConn).info())),
      stats: () => rt.statsRows(),
      clients: () => [...rt.clients].map((c) => c.info()),
      config: () => rt.config,
      pause: (db) => rt.pause(db),
      resume: (db) => rt.resume(db),
      isPaused: (db) => (db === null ? rt.isPausedAll : rt.pausedDbs.has(db)),
      reload: () => rt.reload(),
      shutdown: (mode) => void rt.shutdown(mode).then(() => { if (rt.onShutdownComplete !== null) rt.onShutdownComplete() }),
      get isShuttingDown() { return rt.isShuttingDown },
      reconnect: (db) => rt.reconnect(db),
      waitClose: (db) => rt.waitClose(db),
      setDisabled: (db, isDisabled) => { if (isDisabled) rt.disabledDbs.add(db); else rt.disabledDbs.delete(db) },
      isDisabled: (db) => rt.disabledDbs.has(db),
      kill: (db) => rt.kill(db),
      killClient: (id) => rt.killClient(id),
      suspend: () => rt.suspend(),
      get isSuspended() { return rt.isSuspended },
      hasPausedDatabases: () => rt.pausedDbs.size > 0,
      set: (key, value) => rt.setSetting(key, value),
      sockets: () => rt.socketFacts(),
      listenerSockets: () => rt.listenerSockets(),
      memoryUsage: () => process.memoryUsage(),
    }
  }

  /** Called once a console SHUTDOWN has finished (the CLI exits the process). */
  onShutdownComplete: (() => void) | null = null

  /**
   * Resolves when no server of the paused pools is active any more. After pause_timeout_ms it
   * rejects with the pools still busy; the pause itself stays in effect (RESUME lifts it).
   */
  async pause(db: string | null): Promise<void> {
    if (db === null) this.isPausedAll = true
    else this.pausedDbs.add(db)
    const affected = this.poolsOf(db)
    for (const p of affected) p.isPaused = true
    const timeoutMs = this.config.settings.pause_timeout_ms
    const isDone = await pollUntil(() => affected.every((p) => p.lists.busyServerCount === 0), 20, timeoutMs)
    if (isDone) return
    const what = affected.filter((p) => p.lists.busyServerCount > 0).map((p) => `${p.database}/${p.user} (${p.lists.busyServerCount} active)`).join(', ')
    this.log.warn('pause.timed_out', null, `PAUSE gave up waiting after ${timeoutMs} ms for ${what}`)
    throw new Error(`PAUSE timed out after ${timeoutMs} ms (pause_timeout_ms) waiting for ${what}; still paused, RESUME to lift it`)
  }

  private poolsOf(db: string | null): Pool[] {
    return this.poolList.filter((p) => db === null || p.database === db)
  }

  /** RECONNECT: servers close as they are released; idle ones at the next janitor sweep. */
  reconnect(db: string | null): void {
    for (const p of this.poolsOf(db)) {
      for (const s of p.lists.allServers()) s.closeOnRelease = true
    }
  }

  async waitClose(db: string | null): Promise<void> {
    await pollUntil(() => !this.poolsOf(db).some((p) => p.lists.allServers().some((s) => s.closeOnRelease)), 20)
  }

  /** KILL db: drop its clients and servers now, as PgBouncer's kill_pool; new clients wait until RESUME. */
  kill(db: string): void {
    this.pausedDbs.add(db)
    for (const p of this.poolsOf(db)) {
      p.isPaused = true
      for (const c of p.lists.allClients()) c.fail(ClientErrors.databaseRemoved)
      for (const s of p.lists.allServers()) s.close('database removed')
    }
  }

  killClient(id: number): boolean {
    for (const c of this.clients) {
      if (c.id === `C-${id}`) {
        c.fail(ClientErrors.killedByAdmin)
        return true
      }
    }
    return false
  }

  resume(db: string | null): void {
    if (db === null && this.isSuspended) this.unsuspend()
    if (db === null) {
      this.isPausedAll = false
      this.pausedDbs.clear()
    } else this.pausedDbs.delete(db)
    const now = Date.now()
    for (const p of this.poolList) {
      if (db !== null && p.database !== db) continue
      p.isPaused = this.isPausedAll || this.pausedDbs.has(p.database) || this.heldPools.has(p)
      if (!p.isPaused) p.kick(now)
    }
  }

  /**
   * SWITCHOVER db [TO host] [TIMEOUT s]: see ha/switchover.ts. One at a time per process; the
   * report of the last one per database stays for SHOW SWITCHOVER and /metrics.
   */
  async switchover(db: string, to: string | null, timeoutMs: number): Promise<SwitchoverReport> {
    const entry = this.config.databases.get(db)
    if (entry === undefined || !isWatched(entry) || entry.hosts.length < 2) {
      throw new Error(`database ${db} has no several hosts to switch over between`)
    }
    if (this.switchoverRunning !== null) throw new Error(`a switchover of ${this.switchoverRunning} is running`)
    this.switchoverRunning = db
    try {
      const report = await runSwitchover({
        log: this.log,
        backends: this.backends,
        poolsOn: (hosts) => this.poolList.filter((p) => this.isOnHosts(p, hosts)),
        hold: (hosts) => {
          this.heldHosts = hosts
          const now = Date.now()
          const released = [...this.heldPools]
          this.heldPools.clear()
          if (hosts !== null) for (const p of this.poolList) this.holdIfOnHeldHosts(p)
          for (const p of released) {
            p.isPaused = this.isPausedAll || this.pausedDbs.has(p.database) || this.heldPools.has(p)
            if (!p.isPaused) p.kick(now)
          }
        },
        cancelActive: (pools) => {
          let n = 0
          for (const p of pools) {
            for (const s of [...p.lists.activeServers]) {
              if (s.isReady) continue
              s.close('switchover: transaction still running at the drain deadline')
              n++
            }
          }
          return n
        },
      }, { database: db, entry, to, timeoutMs })
      this.switchovers.set(db, report)
      const count = this.switchoverCounts.get(db) ?? { ok: 0, failed: 0 }
      if (report.ok) count.ok++
      else count.failed++
      this.switchoverCounts.set(db, count)
      return report
    } finally {
      this.switchoverRunning = null
    }
  }

  rememberScramClientKey(user: string, clientKey: Buffer): void {
    this.scramClientKeys.set(user, clientKey)
  }

  scramClientKey(user: string): Buffer | null {
    return this.scramClientKeys.get(user) ?? null
  }

  // ---- pools ----

  poolFor(database: string, user: string): Pool | null {
    const key = `${database}\u0000${user}`
    const existing = this.pools.get(key)
    if (existing !== undefined) return existing.pool
    const entry = entryFor(this.config, database)
    if (entry === undefined) return null
    const dbCount = counter(this.dbCounts, database)
    const userCount = counter(this.userCounts, user)
    const pool = new Pool(database, user, poolSettings(this.config, entry, user), dbCount, userCount, this)
    pool.isPaused = this.isPausedAll || this.pausedDbs.has(database)
    this.holdIfOnHeldHosts(pool)
    this.pools.set(key, { pool, target: this.resolveTarget(entry, database, user, 0), nextHost: 0, noHostReason: null })
    this.log.debug('pool.created', null, `new pool ${database}/${user}`)
    return pool
  }

  openServer(pool: Pool): ServerConn | null {
    const e = this.pools.get(`${pool.database}\u0000${pool.user}`) as PoolEntry
    const entry = entryFor(this.config, pool.database)
    if (entry === undefined || !isWatched(entry)) return new ServerConn(pool, e.target, this)
    const pick = this.backends.pick(entry, e.nextHost++, Date.now())
    if (typeof pick === 'string') {
      // Clients wait (query_wait_timeout bounds them) until a check finds a fitting host.
      if (e.noHostReason !== pick) this.log.warn('pool.no_host', null, `${pool.database}/${pool.user}: no server connection opened: ${pick} (target_session_attrs ${attrsOf(entry)})`)
      e.noHostReason = pick
      return null
    }
    e.noHostReason = null
    return new ServerConn(pool, { ...this.resolveTarget(entry, pool.database, pool.user, pick.index), watchedHost: pick.host }, this)
  }

  private holdIfOnHeldHosts(p: Pool): void {
    if (this.heldHosts === null || !this.isOnHosts(p, this.heldHosts)) return
    this.heldPools.add(p)
    p.isPaused = true
  }

  private isOnHosts(p: Pool, hosts: readonly Host[]): boolean {
    const e = entryFor(this.config, p.database)
    return e !== undefined && this.backends.hostsOf(e).some((h) => hosts.includes(h))
  }

  hostFailed(h: WatchedHost, reason: string): void {
    const host = h as Host // openServer only ever hands out monitor hosts
    this.backends.monitor.ban(host.host, host.port, reason)
  }

  /**
   * A watched host changed health or role. Servers that no longer fit their entry (on a host
   * that went down, or lost the primary role) leave: idle ones now, busy ones when their client
   * releases them, so a transaction in flight finishes where it began. Then waiting clients get
   * servers on whichever host fits now.
   */
  private onHostChange(h: Host, change: HostChange): void {
    const now = Date.now()
    const parts: string[] = []
    if (change.upChanged) parts.push(h.isUsable(now) ? 'up' : h.health(now))
    if (change.roleChanged) parts.push(`role ${h.role}`)
    if (h.isConflicted) parts.push('role sources disagree')
    const msg = `host ${h.key}: ${parts.join(', ')}${h.isUsable(now) || h.lastError === null ? '' : ` (${h.lastError})`}`
    if (h.isUsable(now)) this.log.info('host.changed', null, msg)
    else this.log.warn('host.changed', null, msg)
    for (const e of this.pools.values()) {
      const entry = entryFor(this.config, e.pool.database)
      if (entry === undefined || !isWatched(entry) || !this.backends.hostsOf(entry).includes(h)) continue
      for (const s of e.pool.lists.allServers()) {
        const t = (s as ServerConn).target
        if (this.backends.fits(entry, t.host, t.port, now)) continue
        if (s.state === ServerState.Active) s.closeOnRelease = true
        else (s as ServerConn).close(`host ${t.host}:${t.port} no longer fits target_session_attrs ${attrsOf(entry)}`, false)
      }
      e.pool.kick(now)
    }
  }

  private resolveTarget(db: DatabaseEntry, database: string, user: string, hostIndex: number): ServerTarget {
    const s = this.config.settings
    const host = db.hosts.length > 0 ? db.hosts[hostIndex % db.hosts.length] : (s.unix_socket_dir || '/tmp')
    const port = db.ports.length > 0 ? db.ports[hostIndex % db.ports.length] : 5432
    const startupParams: Record<string, string> = {}
    if (db.client_encoding !== null) startupParams.client_encoding = db.client_encoding
    if (db.datestyle !== null) startupParams.DateStyle = db.datestyle
    if (db.timezone !== null) startupParams.TimeZone = db.timezone
    if (db.application_name !== null) startupParams.application_name = db.application_name
    const serverUser = db.user ?? user
    const password = db.password ?? this.config.userlist.get(serverUser)?.password ?? null
    return { host, port, database: db.dbname ?? database, user: serverUser, password, startupParams, connectQuery: db.connect_query }
  }

  // ---- listeners ----

  private async listen(): Promise<void> {
    const s = this.config.settings
    const onConnection = (socket: net.Socket) => {
      socket.on('error', () => {}) // ClientConn installs the real handler; this covers the gap.
      if (this.isSuspended) this.queueConnection(socket)
      else new ClientConn(socket, this)
    }
    const addrs = s.listen_addr.split(',').map((a) => a.trim()).filter((a) => a !== '')
    for (const addr of addrs) {
      const server = net.createServer(onConnection)
      const host = addr === '*' ? undefined : addr
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host, port: s.listen_port, backlog: s.listen_backlog }, () => {
          server.off('error', reject)
          resolve()
        })
      })
      server.on('error', (err) => this.log.error('listener.failed', null, `listener error: ${err.message}`))
      this.listeners.push(server)
    }
    if (s.unix_socket_dir !== '') {
      const path = socketPath(s.unix_socket_dir, this.port || s.listen_port)
      try {
        fs.unlinkSync(path)
      } catch {
        // No stale socket file: nothing to remove.
      }
      const server = net.createServer(onConnection)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ path, backlog: s.listen_backlog }, () => resolve())
      })
      fs.chmodSync(path, s.unix_socket_mode)
      if (s.unix_socket_group !== '') fs.chownSync(path, -1, groupId(s.unix_socket_group))
      this.unixSocketPath = path
      this.listeners.push(server)
    }
  }

  private describeListeners(): string {
    const parts: string[] = []
    for (const l of this.listeners) {
      const a = l.address()
      parts.push(typeof a === 'string' ? `unix:${a}` : a === null ? '?' : `${a.address}:${a.port}`)
    }
    return parts.join(', ') || '(nothing)'
  }

  // ---- janitor ----

  private startJanitor(): void {
    if (this.tick !== null) clearInterval(this.tick)
    this.tick = setInterval(() => this.sweep(), this.config.settings.janitor_interval_ms)
    this.tick.unref()
  }

  /** One janitor pass over every pool; exposed so tests can run it without waiting. */
  sweep(): void {
    // PgBouncer does no maintenance while suspended: no timeout may close what SUSPEND froze.
    if (this.isSuspended) return this.resumeIfConsoleGone()
    const now = Date.now()
    const s = this.config.settings
    try {
      sweepLoginClients(this.loginClients, s, now)
      for (const [key, e] of this.pools) {
        sweepPool(e.pool, s, now)
        this.dropIfIdle(key, e.pool, now)
      }
    } catch (err) {
      // A sweep must never take the process down; a broken invariant is logged loudly instead.
      this.log.error('janitor.failed', null, `janitor sweep failed: ${(err as Error).stack ?? String(err)}`)
    }
  }

  /**
   * Pools are made on demand per (database, user); one that has had no clients and no servers for
   * autodb_idle_timeout is dropped, so clients trying many names cannot grow memory without bound.
   */
  private dropIfIdle(key: string, pool: Pool, now: number): void {
    const limit = this.config.settings.autodb_idle_timeout
    if (pool.lists.clientCount > 0 || pool.lists.serverCount > 0) {
      pool.emptySinceMs = 0
      return
    }
    if (pool.emptySinceMs === 0) pool.emptySinceMs = now
    else if (limit > 0 && now - pool.emptySinceMs > limit * 1000) {
      pool.detach()
      this.pools.delete(key)
      pool.stats.addTo(statsFor(this.retiredStats, pool.database))
      this.log.debug('pool.dropped', null, `dropped idle pool ${pool.database}/${pool.user}`)
    }
  }

  // ---- HTTP ----

  private async startHttpIfConfigured(): Promise<void> {
    const s = this.config.settings
    if (s.http_listen_port <= 0) return
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const rt = this
    this.httpServer = await startHttp({
      pools: () => rt.poolList,
      stats: () => rt.statsRows(),
      isPaused: () => rt.isPausedAll,
      isShuttingDown: () => rt.isShuttingDown,
      clientCount: () => rt.clients.size,
      maxClientConn: () => rt.config.settings.max_client_conn,
      startTimeS: rt.startTimeS,
      hosts: () => rt.backends.monitor.all(),
      switchovers: () => ({ last: [...rt.switchovers.values()], counts: rt.switchoverCounts }),
      readiness: () => rt.readiness(),
      json: (what) => consoleRows(what, rt.consoleView),
      act: (action, db, args) => rt.consoleAction(action, db, args),
      token: () => rt.config.settings.http_token,
    }, s.http_listen_addr, s.http_listen_port)
    this.log.info('http.started', null, `HTTP on ${s.http_listen_addr}:${this.httpPort}`)
  }

  get httpPort(): number {
    const a = this.httpServer?.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  /**
   * An HTTP action runs as the console command would, so both share every check and error text;
   * an ErrorResponse in the reply becomes the action's error.
   */
  async consoleAction(action: string, db: string | null, args: URLSearchParams = new URLSearchParams()): Promise<{ error: string | null; rows?: unknown[] }> {
    if (action === 'switchover') {
      // The console's SWITCHOVER, with its phases as the JSON answer.
      if (db === null) return { error: 'switchover needs ?db=<database>' }
      const t = args.get('timeout')
      const timeoutMs = t === null ? null : Number(t) * 1000
      if (timeoutMs !== null && !(timeoutMs > 0)) return { error: 'timeout must be a number of seconds above 0' }
      try {
        const r = await this.consoleView.switchover(db, args.get('to'), timeoutMs)
        return { error: r.ok ? null : `switchover of ${db} failed: ${r.error ?? 'unknown reason'}`, rows: r.phases }
      } catch (err) {
        return { error: (err as Error).message }
      }
    }
    const sql = db === null ? action.toUpperCase() : `${action.toUpperCase()} ${db.replaceAll(/[^A-Za-z0-9_.-]/g, '')}`
    const reply = await runConsoleQuery(sql, this.consoleView, { isAdmin: true })
    const f = new Framer()
    f.inspect = INSPECT_ALL
    f.push(reply)
    while (f.next()) {
      if (f.code === 0x45) return { error: parseErrorFields(f.buf, f.start + 5, f.end).message }
    }
    return { error: null }
  }

  /** What /ready says: not while shutting down or paused as a whole. */
  readiness(): { ready: boolean; reason: string } {
    if (this.isShuttingDown) return { ready: false, reason: 'shutting down' }
    if (this.isPausedAll) return { ready: false, reason: 'paused' }
    if (this.isSuspended) return { ready: false, reason: 'suspended' }
    // No usable backend: pools exist, none has a server, and every one's last login failed within
    // server_login_retry. A node with no pools yet is ready (nothing has been tried).
    const pools = this.poolList
    const now = Date.now()
    if (pools.length > 0 && pools.every((p) => p.lists.serverCount === 0 && p.lastLoginFailMs !== 0 && now - p.lastLoginFailMs < Math.max(1, p.settings.server_login_retry) * 1000)) {
      return { ready: false, reason: 'no usable backend' }
    }
    // Monitored hosts: every one of them is down or banned.
    const hosts = this.backends.monitor.all()
    if (hosts.length > 0 && hosts.every((h) => h.isChecked && !h.isUsable(now))) return { ready: false, reason: 'no usable backend host' }
    return { ready: true, reason: 'ready' }
  }

  // ---- stats ----

  /** Totals per database: live pools plus dropped ones. */
  statsTotals(): Map<string, PoolStats> {
    const m = new Map<string, PoolStats>()
    for (const [db, st] of this.retiredStats) st.addTo(statsFor(m, db))
    for (const e of this.pools.values()) e.pool.stats.addTo(statsFor(m, e.pool.database))
    return m
  }

  statsRows(): Array<{ database: string; totals: PoolStats; averages: StatsAverages }> {
    const zero = averages(new PoolStats(), new PoolStats(), 1)
    return [...this.statsTotals()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([database, totals]) => ({ database, totals, averages: this.statsAverages.get(database) ?? zero }))
  }

  private startStats(): void {
    if (this.statsTimer !== null) clearInterval(this.statsTimer)
    const periodS = Math.max(1, this.config.settings.stats_period)
    this.statsTimer = setInterval(() => this.closeStatsPeriod(periodS), periodS * 1000)
    this.statsTimer.unref()
  }

  private closeStatsPeriod(periodS: number): void {
    const now = this.statsTotals()
    const next = new Map<string, StatsAverages>()
    for (const [db, st] of now) next.set(db, averages(st, this.statsBefore.get(db) ?? new PoolStats(), periodS))
    this.statsAverages = next
    this.statsBefore = now
    if (this.config.settings.log_stats) {
      for (const [db, a] of next) {
        this.log.info('stats.period', null, `stats: ${db}: ${a.xacts} xacts/s, ${a.queries} queries/s, ${a.serverAssignments} server assignments/s, in ${a.received} B/s, out ${a.sent} B/s, xact ${a.xactTimeUs} us, query ${a.queryTimeUs} us, wait ${a.waitTimeUs} us`)
      }
    }
  }

  // ---- admin console: SUSPEND, SET, socket facts ----

  private isSuspendedNow = false
  readonly readGate = new ReadGate()
  /** Connections that arrived during SUSPEND: their sessions start at RESUME (a backlog of our own). */
  private readonly queuedConnections: net.Socket[] = []

  get isSuspended(): boolean {
    return this.isSuspendedNow
  }

  /**
   * SUSPEND, as PgBouncer's: no new client is served and no client or server socket (console
   * clients aside) is read any more; resolves once what was written to them has been flushed.
   * After suspend_timeout (> 0) the connections that still have output waiting are closed.
   */
  async suspend(): Promise<void> {
    this.isSuspendedNow = true
    this.log.info('admin.suspend', null, 'SUSPEND command issued')
    const conns: Array<{ socket: net.Socket; close(reason: string): void }> = []
    for (const c of this.clients) if (c.database !== CONSOLE_DB) conns.push(c)
    for (const p of this.poolList) for (const s of p.lists.allServers()) conns.push(s as ServerConn)
    for (const c of conns) this.readGate.hold(c.socket)
    const timeoutMs = this.config.settings.suspend_timeout * 1000
    const isFlushed = (c: { socket: net.Socket }) => c.socket.destroyed || c.socket.writableLength === 0
    if (await pollUntil(() => !this.isSuspended || conns.every(isFlushed), 20, timeoutMs)) return
    for (const c of conns) if (!isFlushed(c)) c.close('suspend_timeout')
  }

  private unsuspend(): void {
    this.isSuspendedNow = false
    this.readGate.releaseAll()
    for (const socket of this.queuedConnections.splice(0)) {
      if (socket.destroyed) continue
      if (this.isShuttingDown) socket.destroy()
      else new ClientConn(socket, this)
    }
    this.log.info('admin.resume', null, 'resumed after SUSPEND')
  }

  private queueConnection(socket: net.Socket): void {
    // The kernel's backlog would refuse past listen_backlog; so does ours.
    if (this.queuedConnections.length >= this.config.settings.listen_backlog) socket.destroy()
    else this.queuedConnections.push(socket)
  }

  /** PgBouncer: when the last console client leaves a suspended pooler, it resumes by itself. */
  private resumeIfConsoleGone(): void {
    for (const c of this.clients) if (c.database === CONSOLE_DB) return
    this.log.info('admin.resume', null, 'admin disappeared when suspended, doing RESUME')
    this.unsuspend()
  }

  /**
   * SET key = value from the console: parsed by the settings table and applied the way RELOAD
   * applies a changed file (one new frozen Config, swapped whole or not at all). Restart-only
   * settings are refused; PgBouncer ignores them silently. The value lasts until the next RELOAD,
   * which re-reads the file.
   */
  setSetting(key: string, text: string): SetOutcome {
    const row = findSetting(key)
    if (row === undefined) return { ok: false, reason: `unknown parameter: ${key}` }
    if (row.apply !== 'live') return { ok: false, reason: `${row.name} cannot be changed at runtime; set it in the config file and restart` }
    const parsed = row.type.parse(text)
    if (!parsed.ok) return { ok: false, reason: `${row.name}: ${parsed.error}` }
    const prev = this.config
    const settings: Record<string, SettingValue> = { ...prev.settings }
    const positions = new Map<string, SourcePos>(prev.positions)
    const value = Array.isArray(parsed.value) ? Object.freeze([...parsed.value]) : parsed.value
    // Aliases share one value, as in load.ts.
    const linked = [row.name, ...(row.aliasOf === null ? [] : [row.aliasOf]), ...SETTINGS.filter((x) => x.aliasOf === row.name).map((x) => x.name)]
    for (const name of linked) {
      settings[name] = value
      positions.set(name, SET_POS)
    }
    let userlist = prev.userlist
    if (row.name === 'auth_file') {
      const r = readUserlist(prev.file, value as string)
      if (typeof r === 'string') return { ok: false, reason: r }
      userlist = r
    }
    const next: Config = Object.freeze({ ...prev, settings: Object.freeze(settings) as unknown as Settings, positions, userlist })
    if (next.settings.auth_type === 'pam') return { ok: false, reason: 'auth_type pam is not supported' }
    const support = checkBuildSupport(next)
    if (support.errors.length > 0) return { ok: false, reason: support.errors.join('\n') }
    // Only the warnings this SET brought, without the position prefix that means nothing here.
    const before = new Set(checkBuildSupport(prev).warnings)
    const prefix = `${SET_POS.file}:${SET_POS.line}: `
    const warnings = support.warnings.filter((w) => !before.has(w)).map((w) => (w.startsWith(prefix) ? w.slice(prefix.length) : w))
    const error = this.adopt(next, () => this.log.info('config.set', null, `SET ${row.name}=${row.isSecret ? '********' : text} from the admin console`))
    return error === null ? { ok: true, warnings } : { ok: false, reason: error }
  }

  /** What the console shows of every client and server socket, read from Node's sockets. */
  socketFacts(): Map<string, SocketFacts> {
    const m = new Map<string, SocketFacts>()
    const add = (id: string, socket: net.Socket, params: ReadonlyMap<string, string>) => {
      m.set(id, {
        fd: fdOf(socket),
        pendingIn: socket.readableLength,
        pendingOut: socket.writableLength,
        remoteAddr: socket.remoteAddress ?? '',
        isTls: socket instanceof tls.TLSSocket,
        params,
      })
    }
    for (const c of this.clients) add(c.id, c.socket, c.params)
    for (const p of this.poolList) {
      for (const s of p.lists.allServers()) {
        const sc = s as ServerConn
        add(sc.id, sc.socket, sc.params)
      }
    }
    return m
  }

  listenerSockets(): Array<{ fd: number; addr: string; port: number }> {
    return this.listeners.map((l) => {
      const a = l.address()
      const fd = fdOf(l as unknown as net.Socket)
      return typeof a === 'string' || a === null ? { fd, addr: 'unix', port: this.port } : { fd, addr: a.address, port: a.port }
    })
  }

  // ---- reload ----

  /** Re-reads the config file; a file with any error is rejected whole and the old config stays. */
  async reload(): Promise<{ ok: boolean; errors: string[] }> {
    const loaded = await loadConfig(this.config.file)
    const support = loaded.ok ? checkBuildSupport(loaded.config) : { errors: [], warnings: [] }
    const r = loaded.ok && support.errors.length > 0
      ? { ok: false as const, errors: support.errors, warnings: [...loaded.warnings, ...support.warnings] }
      : loaded.ok ? { ...loaded, warnings: [...loaded.warnings, ...support.warnings] } : loaded
    for (const w of r.warnings) this.log.warn('config.warning', null, w)
    if (!r.ok) {
      for (const e of r.errors) this.log.error('config.rejected', null, e)
      this.log.error('config.rejected', null, 'RELOAD failed: keeping the old configuration')
      return { ok: false, errors: r.errors }
    }
    const error = this.adopt(r.config)
    if (error !== null) {
      this.log.error('config.rejected', null, `RELOAD failed: ${error}; keeping the old configuration`)
      return { ok: false, errors: [error] }
    }
    return { ok: true, errors: [] }
  }

  /**
   * Puts a validated config in force (RELOAD, SET): its TLS contexts and hba file are built first,
   * and if any of them fails nothing changes and the error is returned. `announce` runs just
   * before the swap.
   */
  private adopt(next: Config, announce?: () => void): string | null {
    let clientTls: ClientTls | null
    let serverTls: ServerTls | null
    let hba: HbaFile | null
    try {
      clientTls = clientTlsFromConfig(next)
      serverTls = serverTlsFromConfig(next)
      hba = hbaFromConfig(next)
    } catch (err) {
      return (err as Error).message
    }
    announce?.()
    this.clientTls = clientTls
    this.serverTls = serverTls
    this.hba = hba
    this.applyConfig(next)
    return null
  }

  applyConfig(next: Config): void {
    const diff = diffConfig(this.config, next)
    const prev = this.config
    this.config = next
    this.applyLogSettings()
    this.backends.apply(next)
    if (prev.settings.janitor_interval_ms !== next.settings.janitor_interval_ms) this.startJanitor()
    if (prev.settings.stats_period !== next.settings.stats_period) this.startStats()
    for (const e of this.pools.values()) {
      const entry = entryFor(next, e.pool.database)
      if (entry === undefined) {
        for (const c of e.pool.lists.allClients()) c.fail(ClientErrors.databaseRemoved)
        continue
      }
      e.pool.settings = poolSettings(next, entry, e.pool.user)
      const target = this.resolveTarget(entry, e.pool.database, e.pool.user, 0)
      if (JSON.stringify(target) !== JSON.stringify(e.target)) {
        e.target = target
        for (const s of e.pool.lists.activeServers) s.closeOnRelease = true
        for (const s of [...e.pool.lists.idleServers, ...e.pool.lists.usedServers]) s.close('database configuration changed')
        e.pool.welcome = null
      }
    }
    if (diff.restart.length > 0) {
      this.log.warn('config.restart_needed', null, `changed settings need a restart to take effect: ${diff.restart.join(', ')}`)
    }
    this.log.info('config.reloaded', null, `configuration reloaded; changed: ${[...diff.live, ...diff.restart].join(', ') || '(nothing)'}`)
  }

  private applyLogSettings(): void {
    const s = this.config.settings
    this.log.format = s.log_format
    this.log.debugEnabled = s.verbose > 0
  }

  // ---- lifecycle ----

  private writePidfile(): void {
    const p = this.config.settings.pidfile
    if (p !== '') fs.writeFileSync(p, `${process.pid}\n`)
  }

  /**
   * 'immediate' closes everything now. 'transactions' (PgBouncer's SIGINT) stops new logins and
   * waits for active servers to be released. 'clients' (SIGTERM, PgBouncer 1.23+) waits for every
   * client to leave. Resolves when done; a second call with 'immediate' cuts a wait short.
   */
  shutdown(mode: 'immediate' | 'transactions' | 'clients'): Promise<void> {
    if (this.shutdownDone !== null && mode !== 'immediate') return this.shutdownDone
    this.isShuttingDown = true
    if (this.isSuspended) this.unsuspend()
    for (const l of this.listeners) l.close()
    if (this.tick !== null && mode === 'immediate') {
      clearInterval(this.tick)
      this.tick = null
    }
    let isFinished = false
    const finish = () => {
      if (isFinished) return
      isFinished = true
      for (const c of [...this.clients]) c.fail(ClientErrors.shuttingDown)
      for (const e of this.pools.values()) {
        for (const s of e.pool.lists.allServers()) s.close('pooler shutdown')
      }
      this.authQuery.abortAll()
      this.backends.stop()
      for (const s of this.checkSockets) s.destroy()
      if (this.tick !== null) clearInterval(this.tick)
      this.tick = null
      if (this.statsTimer !== null) clearInterval(this.statsTimer)
      this.statsTimer = null
      this.httpServer?.close()
      this.httpServer?.closeAllConnections()
      if (this.unixSocketPath !== null) fs.rmSync(this.unixSocketPath, { force: true })
      const pid = this.config.settings.pidfile
      if (pid !== '') fs.rmSync(pid, { force: true })
      this.log.info('runtime.stopped', null, 'shutdown complete')
    }
    if (mode === 'immediate') {
      finish()
      this.shutdownDone = Promise.resolve()
      return this.shutdownDone
    }
    this.log.info('runtime.stopping', null, mode === 'clients' ? 'waiting for clients to disconnect' : 'waiting for transactions to finish')
    // Idle clients in 'transactions' mode are let go at once; active ones when their server is released.
    this.shutdownDone = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        let busy = 0
        for (const e of this.pools.values()) busy += e.pool.lists.busyServerCount
        if (mode === 'transactions') {
          for (const c of [...this.clients]) if (c.server === null) c.fail(ClientErrors.shuttingDown)
        }
        const done = mode === 'clients' ? this.clients.size === 0 : busy === 0
        if (done || this.tick === null) {
          clearInterval(check)
          finish()
          resolve()
        }
      }, 50)
    })
    return this.shutdownDone
  }
}

/** A group's id from its name or number, read from /etc/group (Node has no getgrnam). */
export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group)
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':')
    if (f[0] === group && f.length >= 3) return Number(f[2])
  }
  throw new TidepoolError('TP_CONFIG_INVALID', `unix_socket_group: no such group: ${group}`)
}

const CONSOLE_DB = 'pgbouncer'
/** Where a value SET from the console came from, for checkBuildSupport's messages. */
const SET_POS: SourcePos = Object.freeze({ file: 'SET', line: 0 })

/** Node exposes a socket's descriptor only on its handle; -1 where there is none (TLS). */
function fdOf(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  return typeof fd === 'number' ? fd : -1
}

/** auth_file set from the console: read as load.ts reads it (relative to the config's directory). */
function readUserlist(configFile: string, authFile: string): ReadonlyMap<string, UserSecret> | string {
  if (authFile === '') return new Map()
  const path = isAbsolute(authFile) ? authFile : resolve(dirname(configFile), authFile)
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (err) {
    return `auth_file: cannot read ${path}: ${(err as Error).message}`
  }
  const r = parseUserlist(text, path)
  if (r.errors.length > 0) return r.errors.join('\n')
  return new Map([...r.users].map(([k, v]) => [k, Object.freeze(v)] as const))
}

function counter(m: Map<string, SharedCount>, key: string): SharedCount {
  let c = m.get(key)
  if (c === undefined) {
    c = new SharedCount()
    m.set(key, c)
  }
  return c
}

function statsFor(m: Map<string, PoolStats>, db: string): PoolStats {
  let s = m.get(db)
  if (s === undefined) {
    s = new PoolStats()
    m.set(db, s)
  }
  return s
}

/** auth_hba_file (and auth_ident_file) for auth_type hba; any error rejects the config (start or RELOAD). */
export function hbaFromConfig(config: Config): HbaFile | null {
  return loadHba(config)
}
