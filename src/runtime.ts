// The running pooler: owns the frozen Config snapshot and wires the parts together (listener,
// pools, server factory, janitor tick, stats periods, health checks, console actions, HTTP);
// RELOAD swaps the snapshot whole and applies what may change live; shutdown closes in order.
// Invariants: exactly one Config is current; pools read their settings from the last resolve.
// Must not: parse config (config/ does), speak the protocol (proxy/ does), or carry out console
// commands (admin/actions.ts does, acting on pools through PoolControl).

import net from 'node:net'
import fs from 'node:fs'
import type http from 'node:http'
import type { Config } from './config/types.ts'
import { diffConfig, loadConfigWithShared, type SharedEntries } from './config/load.ts'
import { checkBuildSupport } from './config/build-support.ts'
import { TidepoolError } from './util/errors.ts'
import { runConsoleQuery, type ShutdownMode } from './admin/console.ts'
import { AdminActions } from './admin/actions.ts'
import { startHttp } from './observe/http.ts'
import { Listener, type AdoptedServer } from './net/listener.ts'
import { closeQuietly } from './net/socket-fd.ts'
import type { ClientHandoff } from './proxy/client-handoff.ts'
import { ReadGate } from './net/read-gate.ts'
import { clientTlsFromConfig, isSameServerTls, serverTlsFromConfig, type ClientTls, type ServerTls } from './net/tls.ts'
import type { HbaFile } from './auth/hba.ts'
import { loadHba } from './auth/hba-load.ts'
import { AuthQuery } from './auth/auth-query.ts'
import { Backends } from './ha/backends.ts'
import { checkHost } from './ha/checks.ts'
import { Switchovers, type SwitchoverReport } from './ha/switchover.ts'
import { Logger } from './observe/log.ts'
import { StatsPeriods } from './observe/stats-periods.ts'
import type { Pool } from './pool/pool.ts'
import { PoolSet } from './pool/pool-set.ts'
import { LocalPoolControl } from './pool/local-control.ts'
import { sweepLoginClients } from './pool/janitor.ts'
import { IntrusiveList } from './util/intrusive-list.ts'
import type { PooledClient } from './pool/states.ts'
import { CancelRegistry, cancelTimeoutMs } from './proxy/cancel.ts'
import { PeerPools, peerTable } from './proxy/peer-pools.ts'
import { ClientConn } from './proxy/client-conn.ts'
import type { WatchedHost } from './proxy/server-conn.ts'
import type { ClientSlots, ProxyContext } from './proxy/context.ts'
import { ClientErrors } from './protocol/client-errors.ts'
import { BackendServerFactory } from './runtime/server-factory.ts'
import type { WorkerRole } from './runtime/worker-role.ts'
import { numberConnectionsAsWorker } from './proxy/conn-ids.ts'
import type { FleetMember } from './ha/fleet/member.ts'
import type { SharedConfigFollower } from './ha/fleet/shared-config.ts'
import type { FleetCommands } from './ha/fleet/commands.ts'
import type { FleetBudget } from './ha/fleet/budget.ts'
import { FleetBudgetLease } from './ha/fleet/budget-lease.ts'
import { parseSharedConfig, type SharedConfigRecord } from './config/shared-record.ts'
import { configDigest } from './config/digest.ts'

export interface RuntimeOptions {
  log?: Logger
  /** Set when this process is one worker of several (src/workers/). */
  role?: WorkerRole
  /** Online restart, new process: the listening sockets the old one handed over, served instead of binding. */
  inherited?: Inherited
}

/** What an old process hands a new one before any client (runtime/takeover.ts). */
export interface Inherited {
  readonly listeners: readonly AdoptedServer[]
  readonly http: AdoptedServer | null
}

/** With shutdown_close_between_transactions, a client idle this long is closed; one that is busy
 *  is closed as its transaction ends. Not at once: a client that just finished a transaction is
 *  likely about to send the next, which would then fail. */
const IDLE_CLOSE_MS = 250

export class Runtime implements ProxyContext {
  config: Config
  readonly log: Logger
  readonly cancels: CancelRegistry
  /** Where cancel requests for other peers go ([peers], and the fleet's nodes). */
  readonly peerPools: PeerPools
  readonly role: WorkerRole | null
  readonly clientSlots: ClientSlots | null
  readonly loginClients = new IntrusiveList<PooledClient>()
  readonly clients = new Set<ClientConn>()
  readonly authQuery = new AuthQuery()
  readonly readGate = new ReadGate()
  /** Hosts of watched [databases] entries: health, role, and where new server connections go. */
  readonly backends: Backends
  readonly pools: PoolSet
  readonly admin: AdminActions
  /** PoolControl over this process's pools (with workers, the console's reaches every worker). */
  readonly localControl: LocalPoolControl
  private readonly servers: BackendServerFactory
  private readonly listener: Listener
  private readonly stats: StatsPeriods
  private readonly switchoverRunner: Switchovers
  /** Connections of health checks, destroyed at shutdown. */
  private readonly checkSockets = new Set<net.Socket>()
  readonly clientCounts = { byDb: new Map<string, number>(), byUser: new Map<string, number>() }
  isShuttingDown = false
  isWaitingForServers = false
  /** Set while an online restart drains this process (runtime/takeover.ts). */
  onClientFree: ((c: PooledClient) => void) | null = null
  isClosingBetweenTransactions = false
  /** Rebuilt on every RELOAD: new certificates apply to new connections. */
  clientTls: ClientTls | null = null
  serverTls: ServerTls | null = null
  hba: HbaFile | null = null
  /** ClientKeys learnt from SCRAM logins against stored verifiers, by user (PgBouncer keeps them too). */
  private readonly scramClientKeys = new Map<string, Buffer>()
  private tick: NodeJS.Timeout | null = null
  private shutdownDone: Promise<void> | null = null
  private httpServer: http.Server | null = null
  /** The HTTP listening socket an old process handed over (online restart); httpServer serves its connections. */
  private httpInherited: net.Server | null = null
  /** Fleet membership through etcd (fleet_etcd); null without it. */
  private fleet: FleetMember | null = null
  private sharedFollower: SharedConfigFollower | null = null
  private fleetCommands: FleetCommands | null = null
  /** fleet_budget: the pools' leaser (every lease 0 until the budget agent grants), and the agent. */
  private readonly budgetLease: FleetBudgetLease | null
  private budget: FleetBudget | null = null
  /** The fleet's shared config in force (tidepool fleet push), merged into every RELOAD; null: the ini alone. */
  private shared: (SharedEntries & { version: number }) | null = null
  readonly startTimeS = Date.now() / 1000
  /** Called once a console SHUTDOWN has finished (the CLI exits the process). */
  onShutdownComplete: (() => void) | null = null

  private constructor(config: Config, opts: RuntimeOptions) {
    this.config = config
    this.log = opts.log ?? new Logger()
    const role = opts.role ?? null
    this.role = role
    this.clientSlots = role?.clientSlots ?? null
    this.peerPools = new PeerPools({
      log: this.log,
      timeoutMs: () => cancelTimeoutMs(this.settings),
      waitMs: () => this.settings.cancel_wait_timeout * 1000,
    })
    this.cancels = new CancelRegistry(
      undefined,
      role === null ? null : { index: role.index, forward: (owner, pid, secret) => role.forwardCancel(owner, pid, secret) },
      { ownId: () => this.peerId, forward: (peerId, pid, secret) => this.peerPools.forward(peerId, pid, secret) },
    )
    this.applyPeers()
    if (role !== null) numberConnectionsAsWorker(role.index, role.count)
    this.applyLogSettings()
    this.backends = new Backends(
      (spec, timeoutMs) => checkHost({ ...spec, login: spec.login === null ? null : this.backends.withKeys(spec.login) }, timeoutMs,
        { serverTls: this.serverTls, maxPacket: this.settings.max_packet_size, sockets: this.checkSockets }),
      (h, change) => this.servers.onHostChange(h, change),
      (user) => this.scramClientKey(user),
    )
    this.servers = new BackendServerFactory(this, this.backends, () => this.pools.list())
    this.stats = new StatsPeriods(() => this.pools.list(), this.log)
    const s0 = config.settings
    // Only a node that joins a fleet (one worker) has a fleet budget; its pools start with none.
    this.budgetLease = role === null && s0.fleet_budget && s0.fleet_etcd.length > 0 ? new FleetBudgetLease() : null
    this.pools = new PoolSet({
      config: () => this.config,
      log: this.log,
      factory: this.servers,
      isOnHosts: (pool, hosts) => this.servers.isOnHosts(pool, hosts),
      onCreated: (pool) => this.servers.onPoolCreated(pool),
      onDropped: (pool) => this.stats.retire(pool),
      lease: role?.serverLease((db, user) => this.pools.existing(db, user)) ?? this.budgetLease,
    })
    const control = new LocalPoolControl(this.pools, this.log)
    this.localControl = control
    this.switchoverRunner = new Switchovers({ log: this.log, backends: this.backends, pools: role?.poolControl(control) ?? control }, (db) => this.config.databases.get(db))
    this.listener = new Listener((socket, isUnix) => new ClientConn(socket, this, isUnix), () => this.settings, this.log, role?.listen ?? null)
    this.admin = new AdminActions({
      config: () => this.config,
      log: this.log,
      clients: this.clients,
      pools: this.pools,
      control,
      stats: this.stats,
      backends: this.backends,
      switchovers: this.switchoverRunner,
      fleet: () => this.fleet,
      fleetCommands: () => this.fleetCommands,
      peers: this.peerPools,
      listener: this.listener,
      readGate: this.readGate,
      isShuttingDown: () => this.isShuttingDown,
      reload: () => this.reload(),
      shutdown: (mode) => role !== null
        ? role.shutdownAll(mode)
        : void this.shutdown(mode).then(() => { if (this.onShutdownComplete !== null) this.onShutdownComplete() }),
      adopt: (next, announce) => this.adopt(next, announce),
      consoleQuery: (sql, isAdmin) => this.consoleQuery(sql, isAdmin),
      resumeEverywhere: role === null ? null : () => role.resumeEverywhere(),
    })
  }

  get settings() {
    return this.config.settings
  }

  /** This process's peer id: peer_id when set, else the one its fleet assigned; 0 is no peering. */
  get peerId(): number {
    return this.settings.peer_id > 0 ? this.settings.peer_id : this.fleet?.peerId ?? 0
  }

  /** The peer table from [peers] and the fleet's nodes ([peers] wins on an id both name). */
  private applyPeers(): void {
    this.peerPools.setPeers(peerTable(this.config.peers, this.fleet?.peers() ?? [], this.settings.default_pool_size))
  }

  /** Starts listeners and the janitor; resolves once every listener is bound. */
  static async start(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
    const support = checkBuildSupport(config)
    if (support.errors.length > 0) throw new TidepoolError('TP_CONFIG_INVALID', support.errors.join('\n'))
    const rt = new Runtime(config, opts)
    for (const w of support.warnings) rt.log.warn('config.warning', null, w)
    rt.clientTls = clientTlsFromConfig(config)
    rt.serverTls = serverTlsFromConfig(config)
    rt.hba = loadHba(config)
    rt.backends.apply(config)
    if (opts.inherited !== undefined) rt.listener.adopt(opts.inherited.listeners)
    else await rt.listener.listen()
    await rt.startHttpIfConfigured(opts.inherited?.http ?? null)
    rt.startJanitor()
    rt.startStats()
    await rt.joinFleetIfConfigured()
    // A worker's start is one part of the pooler's: the primary logs runtime.started once all are up.
    if (rt.role === null) {
      rt.writePidfile()
      rt.log.info('runtime.started', null, `listening on ${rt.listener.describe()}`)
    } else {
      rt.log.info('worker.started', null, `worker ${rt.role.index} listening on ${rt.listener.describe()}`)
    }
    return rt
  }

  /** The TCP port actually bound (useful with listen_port = 0). */
  get port(): number {
    return this.listener.port
  }

  get httpPort(): number {
    const a = (this.httpInherited ?? this.httpServer)?.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  get poolList(): Pool[] {
    return this.pools.list()
  }

  // ---- ProxyContext ----

  poolFor(database: string, user: string): Pool | null {
    return this.pools.poolFor(database, user)
  }

  get disabledDbs(): ReadonlySet<string> {
    return this.pools.disabledDbs
  }

  consoleQuery(sql: string, isAdmin: boolean): Promise<Buffer> {
    return this.role === null ? this.localConsoleQuery(sql, isAdmin) : this.role.consoleQuery(sql, isAdmin)
  }

  /** The console of this process alone (with workers: what a command does in each worker). */
  localConsoleQuery(sql: string, isAdmin: boolean): Promise<Buffer> {
    return runConsoleQuery(sql, this.admin.view, { isAdmin })
  }

  hostFailed(h: WatchedHost, reason: string): void {
    this.servers.hostFailed(h, reason)
  }

  rememberScramClientKey(user: string, clientKey: Buffer): void {
    this.scramClientKeys.set(user, clientKey)
  }

  scramClientKey(user: string): Buffer | null {
    return this.scramClientKeys.get(user) ?? null
  }

  // ---- switchover (the console's SWITCHOVER, also called by the CLI and the tests) ----

  switchover(db: string, to: string | null, timeoutMs: number): Promise<SwitchoverReport> {
    return this.switchoverRunner.run(db, to, timeoutMs)
  }

  /** The last switchover of each database, for SHOW SWITCHOVER and /metrics. */
  get switchovers(): ReadonlyMap<string, SwitchoverReport> {
    return this.switchoverRunner.last
  }

  // ---- timers: janitor, stats, HTTP ----

  private startJanitor(): void {
    if (this.tick !== null) clearInterval(this.tick)
    this.tick = setInterval(() => this.sweep(), this.config.settings.janitor_interval_ms)
    this.tick.unref()
  }

  /** One janitor pass over every pool; exposed so tests can run it without waiting. */
  sweep(): void {
    // PgBouncer does no maintenance while suspended: no timeout may close what SUSPEND froze.
    if (this.admin.isSuspended) return this.admin.resumeIfConsoleGone()
    const now = Date.now()
    const s = this.config.settings
    try {
      sweepLoginClients(this.loginClients, s, now)
      this.pools.sweep(s, now)
      this.peerPools.sweep(now)
      this.role?.sweep(this.pools.list())
    } catch (err) {
      // A sweep must never take the process down; a broken invariant is logged loudly instead.
      this.log.error('janitor.failed', null, `janitor sweep failed: ${(err as Error).stack ?? String(err)}`)
    }
  }

  private startStats(): void {
    this.stats.start(this.config.settings.stats_period, () => this.config.settings.log_stats)
  }

  private async startHttpIfConfigured(inherited: AdoptedServer | null): Promise<void> {
    const s = this.config.settings
    if (s.http_listen_port <= 0) return
    const local = this.admin.httpView(this.startTimeS)
    this.httpServer = await startHttp(this.role?.httpView(local) ?? local, s.http_listen_addr, s.http_listen_port, inherited)
    this.httpInherited = inherited?.server ?? null
    this.log.info('http.started', null, `HTTP on ${s.http_listen_addr}:${this.httpPort}`)
  }

  // ---- fleet ----

  private async joinFleetIfConfigured(): Promise<void> {
    const s = this.config.settings
    if (s.fleet_etcd.length === 0) return
    if (this.role !== null) {
      // Each worker would report only its own clients under one name; the fleet waits for a primary-side member.
      this.log.warn('fleet.unsupported', null, 'fleet_etcd is ignored with workers > 1 for now: run one worker to join a fleet')
      return
    }
    // Loaded here only: a node without a fleet never loads the etcd client (gRPC, protobufs).
    const { FleetMember } = await import('./ha/fleet/member.ts')
    this.fleet = new FleetMember({
      settings: s,
      log: this.log,
      version: this.admin.view.version.replace(/^tidepool /, ''),
      listenPort: this.port,
      load: () => {
        let servers = 0
        let tps = 0
        for (const p of this.pools.list()) servers += p.lists.serverCount
        for (const r of this.stats.rows()) tps += r.averages.xacts
        return { clients: this.clients.size, servers, tps, configVersion: this.configVersion }
      },
      staticPeerIds: () => new Set(this.config.peers.keys()),
      onPeersChanged: () => this.applyPeers(),
      budgetShares: () => this.budget?.shareTotals() ?? null,
      budgetStatus: () => (this.budget === null ? null : { isFenced: this.budget.fenced, pools: this.budget.ownShares() }),
    })
    const { SharedConfigFollower } = await import('./ha/fleet/shared-config.ts')
    const follower = new SharedConfigFollower({ client: this.fleet.client, fleetName: s.fleet_name, log: this.log, apply: (rec) => this.applyShared(rec) })
    this.sharedFollower = follower
    follower.start()
    this.fleet.onBeat(() => follower.poll())
    const { FleetCommands } = await import('./ha/fleet/commands.ts')
    const member = this.fleet
    const commands = new FleetCommands({
      client: member.client, fleetName: s.fleet_name, node: member.name, nodesPrefix: member.prefix, log: this.log,
      // Each node runs it as its own console would: the same checks, texts and (with workers) fan-out.
      execute: async (op, db) => (await this.admin.act(op, db)).error,
      switchovers: this.switchoverRunner,
    })
    this.fleetCommands = commands
    commands.start()
    member.onBeat(() => commands.poll())
    member.start()
    if (this.budgetLease !== null) {
      const { FleetBudget } = await import('./ha/fleet/budget.ts')
      this.budget = new FleetBudget({
        client: member.client, member, fleetName: s.fleet_name, ttlS: s.fleet_lease_ttl, log: this.log,
        pools: () => this.pools.list(), lease: this.budgetLease, floor: s.fleet_budget_floor,
      })
      this.budget.start()
    }
  }

  /** What SHOW FLEET says this node runs: the shared config's version, or a digest of its own ini. */
  get configVersion(): string {
    return this.shared !== null ? String(this.shared.version) : configDigest(this.config)
  }

  /** A value of the fleet's shared config: checked, then put in force as a RELOAD with it. */
  private async applyShared(value: string): Promise<{ ok: true; record: SharedConfigRecord } | { ok: false; error: string }> {
    const p = parseSharedConfig(value)
    if (!p.ok) return { ok: false, error: p.reason }
    const rec = p.record
    const shared = { source: `etcd:${this.settings.fleet_name}/config version ${rec.version}`, entries: rec.entries, version: rec.version }
    const r = await this.reloadWith(shared, `shared config version ${rec.version}`)
    if (!r.ok) return { ok: false, error: `version ${rec.version}: ${r.errors.join('; ')}` }
    this.shared = shared
    this.fleet?.beatSoon()
    return { ok: true, record: rec }
  }

  // ---- reload ----

  /**
   * Re-reads the config file (with the fleet's shared config in force, if any); a file with any
   * error is rejected whole and the old config stays.
   */
  reload(): Promise<{ ok: boolean; errors: string[] }> {
    return this.reloadWith(this.shared, 'RELOAD')
  }

  private async reloadWith(shared: SharedEntries | null, what: string): Promise<{ ok: boolean; errors: string[] }> {
    const loaded = await loadConfigWithShared(this.config.file, shared)
    const support = loaded.ok ? checkBuildSupport(loaded.config) : { errors: [], warnings: [] }
    const r = loaded.ok && support.errors.length > 0
      ? { ok: false as const, errors: support.errors, warnings: [...loaded.warnings, ...support.warnings] }
      : loaded.ok ? { ...loaded, warnings: [...loaded.warnings, ...support.warnings] } : loaded
    for (const w of r.warnings) this.log.warn('config.warning', null, w)
    if (!r.ok) {
      for (const e of r.errors) this.log.error('config.rejected', null, e)
      this.log.error('config.rejected', null, `${what} failed: keeping the old configuration`)
      return { ok: false, errors: r.errors }
    }
    const error = this.adopt(r.config)
    if (error !== null) {
      this.log.error('config.rejected', null, `${what} failed: ${error}; keeping the old configuration`)
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
      hba = loadHba(next)
    } catch (err) {
      return (err as Error).message
    }
    announce?.()
    const isServerTlsSame = isSameServerTls(this.serverTls, serverTls)
    this.clientTls = clientTls
    this.serverTls = serverTls
    this.hba = hba
    this.applyConfig(next)
    if (!isServerTlsSame) {
      // Old connections keep the TLS they were opened with, possibly weaker: retire them, as PgBouncer does.
      this.log.info('config.server_tls_changed', null, 'server TLS settings changed: server connections opened before are retired')
      this.pools.retireAll('server TLS settings changed', Date.now())
    }
    return null
  }

  applyConfig(next: Config): void {
    const diff = diffConfig(this.config, next)
    const prev = this.config
    this.config = next
    this.applyLogSettings()
    this.backends.apply(next)
    this.applyPeers()
    if (prev.settings.janitor_interval_ms !== next.settings.janitor_interval_ms) this.startJanitor()
    if (prev.settings.stats_period !== next.settings.stats_period) this.startStats()
    this.pools.reconfigure(next, (pool) => this.servers.retarget(pool), Date.now())
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

  // ---- online restart (runtime/takeover.ts) ----

  /**
   * Old process: the listening sockets (and HTTP's) to send to the new process; what this process
   * still accepts goes to `to` from now on. Nothing here closes them or removes the socket file or
   * the pidfile any more: they are the new process's.
   */
  handOver(to: (socket: net.Socket, isUnix: boolean) => void): Array<{ server: net.Server; kind: 'tcp' | 'unix' | 'http' }> {
    const out: Array<{ server: net.Server; kind: 'tcp' | 'unix' | 'http' }> = this.listener.handOver(to).map((l) => ({ server: l.server, kind: l.isUnix ? 'unix' : 'tcp' }))
    if (this.httpServer !== null && this.httpServer.listening) out.push({ server: this.httpServer, kind: 'http' })
    return out
  }

  /** The listening servers (the HTTP one too), to hand over: an old worker sends their handles. */
  listeningServers(): Array<{ server: net.Server; kind: 'tcp' | 'unix' | 'http' }> {
    const out: Array<{ server: net.Server; kind: 'tcp' | 'unix' | 'http' }> = this.listener.listening.map((l) => ({ server: l.server, kind: l.isUnix ? 'unix' : 'tcp' }))
    const http = this.httpInherited ?? this.httpServer
    if (http !== null && http.listening) out.push({ server: http, kind: 'http' })
    return out
  }

  /** Old worker of an online restart: the new workers accept now; this one no longer does. */
  stopAccepting(): void {
    this.listener.stopAccepting()
    const http = this.httpInherited ?? this.httpServer
    if (http !== null) closeQuietly(http)
  }

  /** New process: a connection the old one accepted and did not read. */
  acceptHanded(socket: net.Socket, isUnix: boolean): void {
    socket.on('error', () => {})
    if (this.isShuttingDown) return void socket.destroy()
    new ClientConn(socket, this, isUnix)
  }

  /** New process: a logged-in client of the old one, between transactions, with its session. */
  resumeClient(socket: net.Socket, h: ClientHandoff): void {
    socket.on('error', () => {})
    if (this.isShuttingDown) return void socket.destroy()
    new ClientConn(socket, this, h.isUnix).resumeSession(h)
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
  shutdown(mode: ShutdownMode): Promise<void> {
    if (this.shutdownDone !== null && mode !== 'immediate') return this.shutdownDone
    this.isShuttingDown = true
    if (this.admin.isSuspended) this.admin.unsuspend()
    this.listener.closeTcp()
    if (this.tick !== null && mode === 'immediate') {
      clearInterval(this.tick)
      this.tick = null
    }
    let isFinished = false
    // Leaving the fleet (revoking the lease) is the one step that waits on the network; bounded in FleetMember.stop.
    let left: Promise<void> = Promise.resolve()
    const finish = () => {
      if (isFinished) return
      isFinished = true
      const budget = this.budget
      budget?.stop()
      this.budget = null
      const parts = [this.sharedFollower, this.fleetCommands, budget === null ? null : { stop: () => budget.leave() }]
      this.sharedFollower = null
      this.fleetCommands = null
      const fleet = this.fleet
      if (fleet !== null) left = Promise.all(parts.map((p) => p?.stop())).then(() => fleet.stop())
      this.fleet = null
      for (const c of [...this.clients]) c.fail(ClientErrors.shuttingDown)
      this.pools.closeAllServers('pooler shutdown')
      this.authQuery.abortAll()
      this.backends.stop()
      for (const s of this.checkSockets) s.destroy()
      if (this.tick !== null) clearInterval(this.tick)
      this.tick = null
      this.stats.stop()
      this.httpServer?.close()
      this.httpServer?.closeAllConnections()
      this.httpInherited?.close()
      this.listener.close()
      this.listener.removeSocketFile()
      const pid = this.config.settings.pidfile
      if (pid !== '' && this.role === null && !this.listener.isHandedOver) fs.rmSync(pid, { force: true })
      this.log.info('runtime.stopped', null, 'shutdown complete')
    }
    if (mode === 'immediate') {
      finish()
      this.shutdownDone = left
      return this.shutdownDone
    }
    this.log.info('runtime.stopping', null, mode === 'clients' ? 'waiting for clients to disconnect' : 'waiting for transactions to finish')
    if (mode === 'transactions') {
      // As PgBouncer: clients waiting for a server are closed now, and so is any client that asks
      // for one later; the others keep their session (and transaction) until the servers are free.
      this.isWaitingForServers = true
      this.pools.failWaiters(ClientErrors.serverShuttingDown)
    }
    // For a floating address: the clients leave between transactions, and reconnect to the node that
    // takes the address over, before the move would cut their connections.
    this.isClosingBetweenTransactions = mode === 'clients' && this.settings.shutdown_close_between_transactions
    this.shutdownDone = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (this.isClosingBetweenTransactions) {
          const idleSinceMs = Date.now() - IDLE_CLOSE_MS
          for (const c of [...this.clients]) c.closeIfIdle(idleSinceMs)
        }
        const done = mode === 'clients' ? this.clients.size === 0 : this.pools.busyServerCount() === 0
        if (done || this.tick === null) {
          clearInterval(check)
          finish()
          void left.then(resolve)
        }
      }, 50)
    })
    return this.shutdownDone
  }
}
