// What the admin console and the HTTP API may do to the running pooler, as one ConsoleView: the
// reads they show (pools, stats, clients, hosts, sockets) and the commands they give. Everything
// done to pools goes through PoolControl, so the same commands can later reach worker processes
// and fleet nodes. It also owns SUSPEND (held reads, queued connections), and gives the HTTP server
// its view, whose actions run as the console commands they mirror (one set of checks and texts).
// Must not: change pool state itself (PoolControl does), or put a config in force (Runtime adopts).

import type net from 'node:net'
import tls from 'node:tls'
import type { Config } from '../config/types.ts'
import { withSetting } from '../config/set-setting.ts'
import type { Backends } from '../ha/backends.ts'
import type { Switchovers } from '../ha/switchover.ts'
import type { FleetMember } from '../ha/fleet/member.ts'
import type { PeerPools } from '../proxy/peer-pools.ts'
import { FLEET_OPS, type FleetCommandResult, type FleetCommands, type FleetOp, type FleetSwitchoverResult } from '../ha/fleet/commands.ts'
import type { Listener } from '../net/listener.ts'
import type { ReadGate } from '../net/read-gate.ts'
import { fdOf } from '../net/socket-fd.ts'
import type { Logger } from '../observe/log.ts'
import type { StatsPeriods } from '../observe/stats-periods.ts'
import type { PoolCommand, PoolControl } from '../pool/control.ts'
import type { PoolSet } from '../pool/pool-set.ts'
import { ClientErrors } from '../protocol/client-errors.ts'
import { Framer, INSPECT_ALL } from '../protocol/framer.ts'
import { parseErrorFields } from '../protocol/reader.ts'
import type { ClientConn } from '../proxy/client-conn.ts'
import type { ServerConn } from '../proxy/server-conn.ts'
import { pollUntil } from '../util/poll.ts'
import type { HttpView } from '../observe/http.ts'
import type { DashboardSnapshot } from '../observe/dashboard.ts'
import { isWatched } from '../ha/backends.ts'
import { LATENCY_BUCKETS_S } from '../pool/stats.ts'
import { fleetMissingText, fleetSwitchoverError } from './commands/fleet.ts'
import { consoleRows, type ConsoleView, type SetOutcome, type ShutdownMode, type SocketFacts } from './console.ts'

const CONSOLE_DB = 'pgbouncer'

/** What the actions need of the running pooler; Runtime hands them over. */
export interface ActionDeps {
  config(): Config
  log: Logger
  clients: ReadonlySet<ClientConn>
  /** Read only: SHOW POOLS and pause state. Commands go through `control`. */
  pools: PoolSet
  control: PoolControl
  stats: StatsPeriods
  backends: Backends
  switchovers: Switchovers
  /** This node's fleet membership; null without fleet_etcd. */
  fleet(): FleetMember | null
  /** [peers] and the fleet's peers, with their cancel pools. */
  peers: PeerPools
  /** This node's side of fleet commands; null without fleet_etcd. */
  fleetCommands(): FleetCommands | null
  listener: Listener
  readGate: ReadGate
  isShuttingDown(): boolean
  reload(): Promise<{ ok: boolean; errors: string[] }>
  /** Starts the shutdown; must not wait for it. */
  shutdown(mode: ShutdownMode): void
  /** Puts a checked Config in force as RELOAD does; the error, or null. `announce` runs just before the swap. */
  adopt(next: Config, announce: () => void): string | null
  /** The console as clients reach it (with workers: for all of them); HTTP actions run through it. */
  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer>
  /** With workers: ends a SUSPEND in every worker (this one's console clients are gone). */
  resumeEverywhere: (() => void) | null
}

export class AdminActions {
  readonly view: ConsoleView
  private isSuspendedNow = false
  /** With workers: another worker's console suspended this one; that worker resumes everyone. */
  private isSuspendedFromElsewhere = false

  constructor(private readonly d: ActionDeps) {
    this.view = this.makeView()
  }

  get isSuspended(): boolean {
    return this.isSuspendedNow
  }

  private makeView(): ConsoleView {
    const d = this.d
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const a = this
    return {
      version: 'tidepool 0.1.0',
      hosts: () => d.backends.monitor.all().map((host) => ({
        host,
        databases: [...d.config().databases.values()].filter((e) => d.backends.hostsOf(e).includes(host)).map((e) => e.name),
      })),
      switchover: (db, to, timeoutMs) => d.switchovers.run(db, to, timeoutMs ?? a.switchoverTimeoutMs()),
      switchovers: () => [...d.switchovers.last.values()],
      fleet: () => d.fleet()?.rows() ?? [],
      peers: () => d.peers.rows(),
      peerPools: () => d.peers.poolRows(),
      fleetCommand: (op, db) => a.fleetCommand(op, db),
      fleetSwitchover: (db, to, timeoutMs) => a.fleetSwitchover(db, to, timeoutMs),
      pools: (nowMs) => d.pools.list().map((p) => p.row(nowMs)),
      servers: () => d.pools.list().flatMap((p) => p.lists.allServers().map((s) => (s as ServerConn).info())),
      stats: () => d.stats.rows(),
      clients: () => [...d.clients].map((c) => c.info()),
      config: () => d.config(),
      pause: (db) => a.pause(db),
      resume: (db) => a.resume(db),
      isPaused: (db) => d.pools.isPaused(db),
      reload: () => d.reload(),
      shutdown: (mode) => d.shutdown(mode),
      get isShuttingDown() { return d.isShuttingDown() },
      reconnect: (db) => a.reconnect(db),
      waitClose: (db) => a.ask({ op: 'wait_close', database: db }),
      setDisabled: (db, isDisabled) => a.tell(isDisabled ? { op: 'disable', database: db } : { op: 'enable', database: db }),
      isDisabled: (db) => d.pools.disabledDbs.has(db),
      kill: (db) => a.tell({ op: 'kill', database: db }),
      killClient: (id) => a.killClient(id),
      suspend: () => a.suspend(),
      get isSuspended() { return a.isSuspended },
      hasPausedDatabases: () => d.pools.hasPausedDatabases(),
      set: (key, value) => a.set(key, value),
      sockets: () => a.socketFacts(),
      listenerSockets: () => d.listener.sockets(),
      memoryUsage: () => process.memoryUsage(),
    }
  }

  /** Resolves when the command is acknowledged; rejects with its error otherwise. */
  private async ask(cmd: PoolCommand): Promise<void> {
    const ack = await this.d.control.run(cmd)
    if (!ack.ok) throw new Error(ack.error)
  }

  /**
   * A command the console answers at once. Here it takes effect before run() returns (local
   * control); a failed acknowledgement is logged, as nobody waits for it.
   */
  private tell(cmd: PoolCommand): void {
    this.ask(cmd).catch((err: unknown) => this.d.log.error('admin.failed', null, `${cmd.op} failed: ${(err as Error).message}`))
  }

  /**
   * Resolves when no server of the paused pools is active any more. After pause_timeout_ms it
   * rejects with the pools still busy; the pause itself stays in effect (RESUME lifts it).
   */
  pause(db: string | null): Promise<void> {
    return this.ask({ op: 'pause', database: db, timeoutMs: this.d.config().settings.pause_timeout_ms })
  }

  /** RESUME; with no database it also ends a SUSPEND. */
  resume(db: string | null): void {
    if (db === null && this.isSuspended) this.unsuspend()
    this.tell({ op: 'resume', database: db })
  }

  /** RECONNECT: idle servers close now, busy ones as they are released; no client gets one again. */
  reconnect(db: string | null): void {
    this.tell({ op: 'reconnect', database: db })
  }

  /** FLEET <op> [db], from the console or HTTP: the console's checks on the database, then every live node runs it. */
  fleetCommand(op: FleetOp, db: string | null): Promise<FleetCommandResult> {
    const cmds = this.d.fleetCommands()
    if (cmds === null) return Promise.reject(new Error('not in a fleet: [tidepool] fleet_etcd is not set'))
    if (db === null ? op === 'enable' || op === 'disable' : op === 'reload') return Promise.reject(new Error('bad arguments'))
    if (db !== null) {
      const dbs = this.d.config().databases
      if (db === CONSOLE_DB) return Promise.reject(new Error(`cannot use admin db: ${db}`))
      if (!dbs.has(db) && !dbs.has('*')) return Promise.reject(new Error(`no such database: ${db}`))
    }
    return cmds.issue(op, db, this.d.config().settings.fleet_command_timeout_ms)
  }

  /** A switchover's deadline when none is given: it must be finite, as it is what releases held traffic whatever happens. */
  switchoverTimeoutMs(): number {
    const s = this.d.config().settings
    return s.pause_timeout_ms > 0 ? s.pause_timeout_ms : 30_000
  }

  /** FLEET SWITCHOVER db [TO host] [TIMEOUT s], from the console or HTTP. */
  fleetSwitchover(db: string, to: string | null, timeoutMs: number | null): Promise<FleetSwitchoverResult> {
    const cmds = this.d.fleetCommands()
    if (cmds === null) return Promise.reject(new Error('not in a fleet: [tidepool] fleet_etcd is not set'))
    return cmds.issueSwitchover(db, to, timeoutMs ?? this.switchoverTimeoutMs())
  }

  killClient(id: number): boolean {
    for (const c of this.d.clients) {
      if (c.id === `C-${id}`) {
        c.fail(ClientErrors.killedByAdmin)
        return true
      }
    }
    return false
  }

  /**
   * SUSPEND, as PgBouncer's: no new client is served and no client or server socket (console
   * clients aside) is read any more; resolves once what was written to them has been flushed.
   * After suspend_timeout (> 0) the connections that still have output waiting are closed.
   */
  async suspend(isFromElsewhere = false): Promise<void> {
    this.isSuspendedNow = true
    this.isSuspendedFromElsewhere = isFromElsewhere
    this.d.listener.hold()
    this.d.log.info('admin.suspend', null, 'SUSPEND command issued')
    const conns: Array<{ socket: net.Socket; close(reason: string): void }> = []
    for (const c of this.d.clients) if (c.database !== CONSOLE_DB) conns.push(c)
    for (const p of this.d.pools.list()) for (const s of p.lists.allServers()) conns.push(s as ServerConn)
    for (const c of conns) this.d.readGate.hold(c.socket)
    const timeoutMs = this.d.config().settings.suspend_timeout * 1000
    const isFlushed = (c: { socket: net.Socket }) => c.socket.destroyed || c.socket.writableLength === 0
    if (await pollUntil(() => !this.isSuspended || conns.every(isFlushed), 20, timeoutMs)) return
    for (const c of conns) if (!isFlushed(c)) c.close('suspend_timeout')
  }

  /** Ends a SUSPEND: held reads go on, queued connections start. */
  unsuspend(): void {
    this.isSuspendedNow = false
    this.d.readGate.releaseAll()
    this.d.listener.release(this.d.isShuttingDown())
    this.d.log.info('admin.resume', null, 'resumed after SUSPEND')
  }

  /** PgBouncer: when the last console client leaves a suspended pooler, it resumes by itself. */
  resumeIfConsoleGone(): void {
    if (this.isSuspendedFromElsewhere) return
    for (const c of this.d.clients) if (c.database === CONSOLE_DB) return
    this.d.log.info('admin.resume', null, 'admin disappeared when suspended, doing RESUME')
    if (this.d.resumeEverywhere !== null) this.d.resumeEverywhere()
    else this.unsuspend()
  }

  /** SET key = value: a new Config with that value, put in force as RELOAD would. */
  set(key: string, text: string): SetOutcome {
    const change = withSetting(this.d.config(), key, text)
    if (!change.ok) return change
    const error = this.d.adopt(change.next, () => this.d.log.info('config.set', null, `SET ${change.what} from the admin console`))
    return error === null ? { ok: true, warnings: change.warnings } : { ok: false, reason: error }
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
    for (const c of this.d.clients) add(c.id, c.socket, c.params)
    for (const p of this.d.pools.list()) {
      for (const s of p.lists.allServers()) {
        const sc = s as ServerConn
        add(sc.id, sc.socket, sc.params)
      }
    }
    return m
  }

  /**
   * An HTTP action runs as the console command would, so both share every check and error text;
   * an ErrorResponse in the reply becomes the action's error.
   */
  async act(action: string, db: string | null, args: URLSearchParams = new URLSearchParams()): Promise<{ error: string | null; rows?: unknown[] }> {
    if (action === 'switchover') {
      // The console's SWITCHOVER, with its phases as the JSON answer.
      if (db === null) return { error: 'switchover needs ?db=<database>' }
      const t = args.get('timeout')
      const timeoutMs = t === null ? null : Number(t) * 1000
      if (timeoutMs !== null && !(timeoutMs > 0)) return { error: 'timeout must be a number of seconds above 0' }
      try {
        const r = await this.view.switchover(db, args.get('to'), timeoutMs)
        return { error: r.ok ? null : `switchover of ${db} failed: ${r.error ?? 'unknown reason'}`, rows: r.phases }
      } catch (err) {
        return { error: (err as Error).message }
      }
    }
    if (action === 'fleet') {
      // POST /api/fleet?cmd=pause[&db=app]: one row per node, as FLEET PAUSE answers.
      const op = args.get('cmd')?.toLowerCase() ?? ''
      if (op === 'switchover') {
        // POST /api/fleet?cmd=switchover&db=app[&to=host][&timeout=s]: one row per node, as FLEET SWITCHOVER answers.
        if (db === null) return { error: 'fleet switchover needs ?db=<database>' }
        const t = args.get('timeout')
        const timeoutMs = t === null ? null : Number(t) * 1000
        if (timeoutMs !== null && !(timeoutMs > 0)) return { error: 'timeout must be a number of seconds above 0' }
        try {
          const r = await this.view.fleetSwitchover(db, args.get('to'), timeoutMs)
          return { error: fleetSwitchoverError(db, r), rows: r.rows }
        } catch (err) {
          return { error: (err as Error).message }
        }
      }
      if (!(FLEET_OPS as readonly string[]).includes(op)) return { error: `fleet needs ?cmd=${FLEET_OPS.join('|')}|switchover` }
      try {
        const r = await this.view.fleetCommand(op as FleetOp, db)
        return { error: r.missing.length > 0 ? fleetMissingText(op as FleetOp, r) : null, rows: r.rows }
      } catch (err) {
        return { error: (err as Error).message }
      }
    }
    const sql = db === null ? action.toUpperCase() : `${action.toUpperCase()} ${db.replaceAll(/[^A-Za-z0-9_.-]/g, '')}`
    const reply = await this.d.consoleQuery(sql, true)
    const f = new Framer()
    f.inspect = INSPECT_ALL
    f.push(reply)
    while (f.next()) {
      if (f.code === 0x45) return { error: parseErrorFields(f.buf, f.start + 5, f.end).message }
    }
    return { error: null }
  }

  /** What the HTTP server reads (/metrics, /ready, /api) and may do (actions, as the console would). */
  httpView(startTimeS: number): HttpView {
    const d = this.d
    return {
      pools: (nowMs) => d.pools.list().map((p) => p.row(nowMs)),
      process: () => {
        const cpu = process.cpuUsage()
        const mem = process.memoryUsage()
        return { cpuUs: cpu.user + cpu.system, rss: mem.rss, heapUsed: mem.heapUsed }
      },
      stats: () => d.stats.rows(),
      isPaused: () => d.pools.isPausedAll,
      isShuttingDown: () => d.isShuttingDown(),
      clientCount: () => d.clients.size,
      maxClientConn: () => d.config().settings.max_client_conn,
      startTimeS,
      hosts: () => d.backends.monitor.all(),
      switchovers: () => ({ last: [...d.switchovers.last.values()], counts: d.switchovers.counts }),
      fleet: () => d.fleet()?.status() ?? null,
      readiness: () => this.readiness(),
      json: (what) => consoleRows(what, this.view),
      act: (action, db, args) => this.act(action, db, args),
      token: () => d.config().settings.http_token,
      allowedHosts: () => d.config().settings.http_allowed_hosts,
      dashboard: () => this.dashboard(startTimeS),
    }
  }

  /** GET /api/dashboard.json: counters and counts of every pool, hosts and switchovers, read now. */
  dashboard(startTimeS: number): DashboardSnapshot {
    const d = this.d
    const now = Date.now()
    const cfg = d.config()
    const readiness = this.readiness()
    return {
      at_ms: now,
      version: this.view.version,
      started_s: startTimeS,
      actions: cfg.settings.http_token !== '',
      state: { paused: d.pools.isPausedAll, suspended: this.isSuspended, shutting_down: d.isShuttingDown(), ready: readiness.reason },
      clients: d.clients.size,
      max_client_conn: cfg.settings.max_client_conn,
      wait_buckets_s: LATENCY_BUCKETS_S,
      pools: d.pools.list().map((p) => ({
        database: p.database,
        user: p.user,
        pool_mode: p.settings.pool_mode,
        paused: p.isPaused,
        ...p.counts(now),
        xacts: p.stats.xacts,
        queries: p.stats.queries,
        server_assignments: p.stats.serverAssignments,
        wait_us: p.stats.waitTimeUs,
        wait_hist: [...p.stats.waitHist.counts],
      })).sort((a, b) => (a.database === b.database ? (a.user < b.user ? -1 : 1) : a.database < b.database ? -1 : 1)),
      databases: [...cfg.databases.values()].map((e) => ({
        name: e.name,
        hosts: e.hosts.length,
        paused: d.pools.isPaused(e.name) || d.pools.isPausedAll,
        disabled: d.pools.disabledDbs.has(e.name),
        can_switch_over: isWatched(e) && e.hosts.length > 1,
      })).sort((a, b) => (a.name < b.name ? -1 : 1)),
      hosts: consoleRows('hosts', this.view) ?? [],
      switchovers: [...d.switchovers.last.values()],
    }
  }

  /** What /ready says: not while shutting down, paused as a whole, suspended, or with no usable backend. */
  readiness(): { ready: boolean; reason: string } {
    if (this.d.isShuttingDown()) return { ready: false, reason: 'shutting down' }
    if (this.d.pools.isPausedAll) return { ready: false, reason: 'paused' }
    if (this.isSuspended) return { ready: false, reason: 'suspended' }
    // No usable backend: pools exist, none has a server, and every one's last login failed within
    // server_login_retry. A node with no pools yet is ready (nothing has been tried).
    const pools = this.d.pools.list()
    const now = Date.now()
    if (pools.length > 0 && pools.every((p) => p.lists.serverCount === 0 && p.lastLoginFailMs !== 0 && now - p.lastLoginFailMs < Math.max(1, p.settings.server_login_retry) * 1000)) {
      return { ready: false, reason: 'no usable backend' }
    }
    // Monitored hosts: every one of them is down or banned.
    const hosts = this.d.backends.monitor.all()
    if (hosts.length > 0 && hosts.every((h) => h.isChecked && !h.isUsable(now))) return { ready: false, reason: 'no usable backend host' }
    return { ready: true, reason: 'ready' }
  }
}
