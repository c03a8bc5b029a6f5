// One Pool per (database, user): which clients wait, which servers are login, idle, used, active
// or tested, how many more may be opened, and the parameters new clients are welcomed with.
// Invariants: a connection's state names the one list it is on (states.ts moves them); a server is
// linked to at most one client and vice versa; waiters are served in arrival order; a server goes
// back for reuse only through release() or ready(), never while linked.
// Must not: touch sockets or start timers; time comes in as arguments (janitor.ts owns the clock).

import type { PoolSettings } from '../config/effective.ts'
import type { PoolCounts, PoolRow } from './control.ts'
import { ClientState, PoolLists, ServerState, type ClientFailure, type PooledClient, type PooledServer } from './states.ts'
import { PoolStats } from './stats.ts'
import { ClientErrors } from '../protocol/client-errors.ts'
import { SqlState } from '../protocol/pg-error.ts'

/** Counts shared by all pools of one database or one user (max_db_connections, max_user_connections). */
export class SharedCount {
  servers = 0
  /**
   * Servers this node may have open for the database or user over all its pools: unlimited, or with
   * fleet_budget this node's share of the fleet-wide max_db_connections / max_user_connections.
   */
  cap = Infinity
  /** The pools sharing this count, so one at its limit can take an idle server from a sibling. */
  readonly pools = new Set<Pool>()
}

/** How a pool gets a new server connection; proxy/ implements it. */
export interface ServerFactory {
  /**
   * Start connecting; the returned server is in Login state and reports back through the pool.
   * Null when no backend host may be used now (none healthy, no primary known): the pool keeps
   * its waiters and tries again at its next kick. `reserveFor`: the server is taken from
   * reserve_pool_size for this waiter (PgBouncer logs it).
   */
  openServer(pool: Pool, reserveFor: PooledClient | null): PooledServer | null
}

/**
 * With workers the right to open server connections is leased from the primary, so that pool_size,
 * reserve_pool_size, max_db_connections and max_user_connections hold over all workers together
 * (src/workers/lease.ts). Absent in a single process, where the pool's own counts are the totals.
 */
export interface ServerLease {
  /** The pool is at its lease and could use `target` servers in all; `reserve`: a waiter qualifies for the reserve pool. */
  want(pool: Pool, target: number, reserve: boolean): void
  /** A server of the pool finished its login (the primary keeps its cancel key, for when this worker dies). */
  serverUp(pool: Pool, s: PooledServer): void
  /** A server of the pool closed: a slot it no longer needs may go back. */
  serverClosed(pool: Pool, s: PooledServer): void
  /** The pool is dropped: every slot it holds goes back. */
  dropped(pool: Pool): void
  /** This worker's part of a pool's min_pool_size, so that the parts add up to it. */
  minShare(min: number): number
  /** Why a released server above the lease closes (the log's close reason); absent: another worker took the slot. */
  readonly overLeaseReason?: string
}

export class Pool {
  readonly lists = new PoolLists()
  /** ParameterStatus values of the first server that logged in: what clients are welcomed with. */
  welcome: Map<string, string> | null = null
  /** When a server login last failed (ms), for server_login_retry; 0 = never. */
  lastLoginFailMs = 0
  /** The message of the last server login failure, kept for the clients it turns away. */
  lastLoginError: ClientFailure | null = null
  isPaused = false
  /** An online restart drains this pooler: a server no client here waits for closes, its slot goes to the new one. */
  isHandingOver = false
  /** Its database entry names the server-side user (user=): the pool is one whatever the client's name. */
  isForcedUser = false
  settings: PoolSettings
  readonly stats = new PoolStats()
  /** Since when the pool has had no clients and no servers (ms); 0 while it has any. */
  emptySinceMs = 0
  /**
   * Clients that keep their server between transactions because of session state (LISTEN, a
   * session advisory lock, ...). Their servers stay on activeServers, so they count against
   * pool_size like any linked server; the proxy keeps this count.
   */
  pinnedClients = 0
  /**
   * Servers this pool may have open (login ones included): unlimited in one process; with workers,
   * the slots leased from the primary. Lowered when the primary takes slots back for another worker:
   * servers above it close when released.
   */
  lease: number

  constructor(
    readonly database: string,
    readonly user: string,
    settings: PoolSettings,
    readonly dbCount: SharedCount,
    readonly userCount: SharedCount,
    readonly factory: ServerFactory,
    readonly leaser: ServerLease | null = null,
  ) {
    this.settings = settings
    this.lease = leaser === null ? Infinity : 0
    dbCount.pools.add(this)
  }

  get isReady(): boolean {
    return this.welcome !== null
  }

  // ---- clients ----

  /** A client starts logging in to this pool. It finishes once the pool has welcome parameters. */
  addLoginClient(c: PooledClient, nowMs: number): void {
    this.lists.moveClient(c, ClientState.Login)
    if (this.welcome === null) this.launchIfNeeded(nowMs)
  }

  clientLoggedIn(c: PooledClient): void {
    this.lists.moveClient(c, ClientState.Active)
  }

  /**
   * The client has a query and no server. Links it to a free server and returns true, or queues it
   * (Waiting, FIFO) and returns false; the pool calls c.onServerAssigned() later. Also false when
   * the client was failed with a recent server login error (failingLogin).
   */
  acquire(c: PooledClient, nowMs: number): boolean {
    if (c.server !== null) throw new Error('pool: acquire by a client that has a server')
    if (!this.isPaused && this.lists.waitingClients.size === 0) {
      const s = this.takeReadyServer()
      if (s !== null) {
        this.link(c, s)
        return true
      }
    }
    if (!this.isPaused) {
      const failing = this.failingLogin(nowMs)
      if (failing !== null) {
        c.fail(failing)
        return false
      }
    }
    c.waitSinceMs = nowMs
    c.isWaitNoticeSent = false
    this.lists.moveClient(c, ClientState.Waiting)
    if (!this.isPaused) {
      this.checkUsedServer()
      this.launchIfNeeded(nowMs)
    }
    return false
  }

  /** The client is gone; `server` handling is the caller's (release or close it first). */
  removeClient(c: PooledClient): void {
    if (c.server !== null) throw new Error('pool: removing a client that still has a server')
    this.lists.moveClient(c, ClientState.Closed)
  }

  // ---- servers ----

  /**
   * Welcome parameters another tidepool's pool had (a client handed over by an online restart
   * brings them): taken only while this pool has none, and clients logging in go on with them.
   */
  adoptWelcome(params: Map<string, string>): void {
    if (this.welcome !== null || params.size === 0) return
    this.welcome = params
    for (const c of this.lists.loginClients) c.onPoolReady()
  }

  /** The server finished login: remember the welcome parameters, then offer it for use. */
  serverLoggedIn(s: PooledServer, params: Map<string, string>, nowMs: number): void {
    this.leaser?.serverUp(this, s)
    this.lastLoginFailMs = 0
    this.lastLoginError = null
    if (this.welcome === null) {
      this.welcome = params
      for (const c of this.lists.loginClients) c.onPoolReady()
    }
    this.ready(s, nowMs)
  }

  /**
   * A server login failed. `failure` is what the login itself was told (a wrong password, a
   * NOLOGIN role, no such database) or null for a connection that never got that far (refused,
   * timed out). As PgBouncer's kill_pool_logins: when the pool has no usable server (none
   * connected, or none since RECONNECT or a new target), every client waiting for one, logging in
   * or queued, gets that failure now rather than waiting out a retry that would fail the same way;
   * a server still starting up (57P03) is retried instead. The failure is kept for
   * server_login_retry, so later clients are answered at once (failingLogin).
   * `isHostBanned`: the failure took its host out of rotation (a watched entry with other hosts),
   * so the next server may go elsewhere at once: nothing is kept and nobody fails.
   */
  serverLoginFailed(s: PooledServer, failure: ClientFailure | null, nowMs: number, isHostBanned = false): void {
    this.serverClosed(s)
    if (isHostBanned) return
    this.lastLoginFailMs = nowMs
    if (failure === null) return
    this.lastLoginError = failure
    if (failure.code === SqlState.CannotConnectNow) return
    if (this.welcome !== null && this.lists.serverCount > this.lists.loginServers.size) return
    for (const c of [...this.lists.loginClients, ...this.lists.waitingClients]) c.fail(failure)
  }

  /**
   * PgBouncer's check_fast_fail: within server_login_retry of a failed login, with no server but
   * those still logging in, a client that needs one is told the kept error instead of queueing
   * behind logins the pool will not retry yet. Null when the client may wait.
   */
  failingLogin(nowMs: number): ClientFailure | null {
    const failed = this.lastLoginError
    if (failed === null || nowMs - this.lastLoginFailMs >= this.settings.server_login_retry * 1000) return null
    if (this.lists.serverCount > this.lists.loginServers.size) return null
    return ClientErrors.serverLoginRetry(failed.message)
  }

  /**
   * The linked client is done with the server (ReadyForQuery idle in transaction mode, or the client
   * left in session mode). Unlinks, then resets, checks or reuses it.
   */
  release(s: PooledServer, nowMs: number): void {
    const c = s.client
    if (c !== null) {
      c.server = null
      s.client = null
    }
    const st = this.settings
    const retire = this.retireReason(s, nowMs, false)
    if (retire !== null) {
      s.close(retire)
      return
    }
    if (s.cancelsInFlight > 0) {
      // A cancel for the last client's query may still reach PostgreSQL: another client's query
      // here would be the one it stops. Back to the pool once they are done (cancelsDone).
      this.lists.moveServer(s, ServerState.BeingCanceled)
      return
    }
    const needsReset = st.server_reset_query !== '' && (st.pool_mode === 'session' || st.server_reset_query_always)
    if (needsReset) {
      this.lists.moveServer(s, ServerState.Tested)
      s.runInternal(st.server_reset_query, (ok) => {
        if (s.state !== ServerState.Tested) return
        if (ok) this.ready(s, Date.now())
        else s.close('server_reset_query failed')
      })
      return
    }
    this.ready(s, nowMs)
  }

  /** The last cancel in flight for `s` is done: a server held back for it is released now. */
  cancelsDone(s: PooledServer, nowMs: number): void {
    if (s.state === ServerState.BeingCanceled && s.cancelsInFlight === 0) this.release(s, nowMs)
  }

  /** This pool as the console and PoolControl report it, with maxwait counted to `nowMs`. */
  row(nowMs: number): PoolRow {
    return {
      database: this.database,
      user: this.user,
      pool_mode: this.settings.pool_mode,
      pool_size: this.settings.pool_size,
      paused: this.isPaused,
      counts: this.counts(nowMs),
      databaseServers: this.dbCount.servers,
      userServers: this.userCount.servers,
    }
  }

  counts(nowMs: number): PoolCounts {
    const l = this.lists
    const first = l.waitingClients.first
    return {
      cl_active: l.activeClients.size,
      cl_waiting: l.waitingClients.size + l.loginClients.size,
      cl_pinned: this.pinnedClients,
      sv_active: l.activeServers.size,
      sv_idle: l.idleServers.size,
      sv_used: l.usedServers.size,
      sv_tested: l.testedServers.size,
      sv_being_canceled: l.beingCanceledServers.size,
      sv_login: l.loginServers.size,
      maxwait_ms: first === null ? 0 : Math.max(0, nowMs - first.waitSinceMs),
    }
  }

  /**
   * Why a server no client holds must close rather than be reused; null keeps it. At release only
   * what ends a server's life counts; the janitor's sweep of idle and used servers also closes them
   * for PAUSE (as PgBouncer lets go of servers while paused) and server_idle_timeout above min_pool_size.
   */
  retireReason(s: PooledServer, nowMs: number, isSweep: boolean): string | null {
    const st = this.settings
    if (s.closeOnRelease) return 'database configuration changed'
    if (s.isCancelUnsure) return 'a cancel request for it was not confirmed'
    if (this.isHandingOver && this.lists.waitingClients.size === 0) return 'online restart: the new pooler serves'
    if (this.lists.serverCount > this.lease) return this.leaser?.overLeaseReason ?? 'slot handed to another worker'
    if (this.dbCount.servers > this.dbCount.cap || this.userCount.servers > this.userCount.cap) return this.leaser?.overLeaseReason ?? 'above this node\'s share'
    if (isSweep) {
      if (this.isPaused) return 'pause mode'
      const min = this.minServers()
      if (st.server_idle_timeout > 0 && nowMs - s.idleSinceMs > st.server_idle_timeout * 1000 && this.lists.serverCount > min) return 'server idle timeout'
    }
    if (nowMs - s.connectedAtMs >= st.server_lifetime * 1000 * s.lifetimeFactor) return 'server lifetime over'
    if (s.retireAtMs !== 0 && nowMs >= s.retireAtMs) return 'a preferred host is back'
    return null
  }

  /**
   * Every server of the pool is out of date (RECONNECT, a new target, new server TLS settings):
   * no client may get one again. As PgBouncer's tag_pool_dirty: idle ones close now, and so do
   * logins under way (not a failed login: no server_login_retry); busy ones close when released
   * (or after the reset or check query they run); new clients wait for a fresh login's parameters.
   */
  retireServers(reason: string, nowMs: number, keepWelcome = false): void {
    // The servers' parameters may differ after it; an online restart keeps it for the clients it hands over.
    if (!keepWelcome) this.welcome = null
    for (const s of this.lists.allServers()) {
      // A server whose cancels are still on the way goes back through release() when they are done.
      if (s.state === ServerState.Active || s.state === ServerState.Tested || s.state === ServerState.BeingCanceled) s.closeOnRelease = true
      else s.close(reason, false)
    }
    this.kick(nowMs)
  }

  /** A clean server: give it to the first waiter, or keep it (LIFO, or FIFO with server_round_robin). */
  ready(s: PooledServer, nowMs: number): void {
    if (s.closeOnRelease) {
      // Marked while it was busy (a reset or check query, a login): retired, never handed out.
      s.close('database configuration changed', false)
      return
    }
    s.idleSinceMs = nowMs
    const waiter = this.isPaused ? null : this.lists.waitingClients.first
    if (waiter !== null) {
      const waitedUs = (nowMs - waiter.waitSinceMs) * 1000
      this.stats.waitTimeUs += waitedUs
      this.stats.waitHist.observe(waitedUs)
      this.lists.moveClient(waiter, ClientState.Active)
      this.link(waiter, s)
      waiter.onServerAssigned(s)
      return
    }
    if (this.settings.server_check_delay <= 0 && this.settings.server_check_query !== null) {
      this.lists.moveServer(s, ServerState.Used)
    } else {
      this.lists.moveServer(s, ServerState.Idle, !this.settings.server_round_robin)
    }
  }

  /** An idle server passed server_check_delay: it gets server_check_query before its next use. */
  markUsed(s: PooledServer): void {
    if (s.state === ServerState.Idle) this.lists.moveServer(s, ServerState.Used)
  }

  /** The server's connection is gone. The proxy tells its client before calling this. */
  serverClosed(s: PooledServer): void {
    if (s.state === ServerState.Closed) return
    const c = s.client
    if (c !== null) {
      c.server = null
      s.client = null
    }
    this.lists.moveServer(s, ServerState.Closed)
    this.dbCount.servers--
    this.userCount.servers--
    this.leaser?.serverClosed(this, s)
  }

  link(c: PooledClient, s: PooledServer): void {
    if (s.client !== null || c.server !== null) throw new Error('pool: link of a linked connection')
    c.server = s
    s.client = c
    this.stats.serverAssignments++
    this.lists.moveServer(s, ServerState.Active)
  }

  /** Serve waiters and open servers as limits allow; called after anything that frees capacity. */
  kick(nowMs: number): void {
    if (this.isPaused) return
    while (this.lists.waitingClients.first !== null) {
      const s = this.takeReadyServer()
      if (s === null) break
      this.ready(s, nowMs)
    }
    this.checkUsedServer()
    this.launchIfNeeded(nowMs)
  }

  // ---- capacity ----

  private takeReadyServer(): PooledServer | null {
    const idle = this.lists.idleServers.first
    if (idle !== null) return idle
    if (this.settings.server_check_query === null) return this.lists.usedServers.first
    return null
  }

  /** A waiter and a used server: check the server first (server_check_query), then hand it over. */
  private checkUsedServer(): void {
    if (this.lists.waitingClients.size === 0 || this.settings.server_check_query === null) return
    const s = this.lists.usedServers.first
    if (s === null) return
    this.lists.moveServer(s, ServerState.Tested)
    s.runInternal(this.settings.server_check_query as string, (ok) => {
      if (s.state !== ServerState.Tested) return
      if (ok) this.ready(s, Date.now())
      else s.close('server_check_query failed')
    })
  }

  /** How many servers this pool may have now: pool_size, plus the reserve once a waiter waited long enough. */
  allowedServers(nowMs: number): number {
    const st = this.settings
    let allowed = st.pool_size
    const first = this.lists.waitingClients.first
    if (st.reserve_pool_size > 0 && first !== null && nowMs - first.waitSinceMs >= st.reserve_pool_timeout * 1000) {
      allowed += st.reserve_pool_size
    }
    return allowed
  }

  canOpenServer(nowMs: number): boolean {
    const st = this.settings
    if (this.lastLoginFailMs !== 0 && nowMs - this.lastLoginFailMs < st.server_login_retry * 1000) return false
    if (this.lists.serverCount >= this.allowedServers(nowMs)) return false
    if (st.max_db_connections > 0 && this.dbCount.servers >= st.max_db_connections) return false
    if (st.max_user_connections > 0 && this.userCount.servers >= st.max_user_connections) return false
    if (this.dbCount.servers >= this.dbCount.cap || this.userCount.servers >= this.userCount.cap) return false
    return this.lists.serverCount < this.lease
  }

  /** Opens servers for clients that need one, never more logins at once than there are such clients. */
  launchIfNeeded(nowMs: number): void {
    const wanted = this.lists.waitingClients.size + (this.welcome === null ? Math.min(1, this.lists.loginClients.size) : 0)
    while (this.lists.loginServers.size + this.lists.testedServers.size < wanted) {
      if (!this.canOpenServer(nowMs) && !(this.isBlockedOnlyByDbLimit(nowMs) && this.evictSiblingIdle())) break
      if (!this.openServer()) break
    }
    if (this.leaser !== null && this.lists.serverCount >= this.lease) {
      const more = wanted - this.lists.loginServers.size - this.lists.testedServers.size
      if (more > 0) this.askLease(this.lists.serverCount + more, nowMs)
    }
  }

  /** With workers: ask the primary for slots up to `target` servers, within what the pool may have now. */
  private askLease(target: number, nowMs: number): void {
    const allowed = this.allowedServers(nowMs)
    const t = Math.min(allowed, target)
    if (t > this.lease) this.leaser?.want(this, t, allowed > this.settings.pool_size)
  }

  private isBlockedOnlyByDbLimit(nowMs: number): boolean {
    const st = this.settings
    const dbLimit = Math.min(st.max_db_connections > 0 ? st.max_db_connections : Infinity, this.dbCount.cap)
    if (dbLimit === Infinity || this.dbCount.servers < dbLimit) return false
    this.dbCount.servers--
    const otherwiseOk = this.canOpenServer(nowMs)
    this.dbCount.servers++
    return otherwiseOk
  }

  /** max_db_connections reached: close an idle server of another pool of this database, as PgBouncer does. */
  private evictSiblingIdle(): boolean {
    for (const p of this.dbCount.pools) {
      if (p === this) continue
      const s = p.lists.usedServers.first ?? p.lists.idleServers.first
      if (s !== null) {
        s.close('evicted for a pool of the same database (max_db_connections)')
        return true
      }
    }
    return false
  }

  /** The pool is being dropped: it leaves its database's sibling set, and gives back its slots. */
  detach(): void {
    this.dbCount.pools.delete(this)
    this.leaser?.dropped(this)
  }

  /** min_pool_size (capped at pool_size); with workers, this worker's part of it. */
  minServers(): number {
    const min = Math.min(this.settings.min_pool_size, this.settings.pool_size)
    return this.leaser === null ? min : this.leaser.minShare(min)
  }

  /** The pool keeps min_pool_size servers even without clients: a forced user (PgBouncer 1.21+). */
  get keepsMinimum(): boolean {
    return this.isForcedUser && this.settings.min_pool_size > 0
  }

  /**
   * min_pool_size: keep this many servers open while the pool has clients, or always when its
   * entry forces the user (PgBouncer 1.21+); never while paused, when idle servers are let go.
   */
  fillMinimum(nowMs: number): void {
    if (this.isPaused || (this.lists.clientCount === 0 && !this.keepsMinimum)) return
    const min = this.minServers()
    while (this.lists.serverCount < min && this.canOpenServer(nowMs) && this.openServer()) { /* opened one */ }
    if (this.lists.serverCount < min && this.lists.serverCount >= this.lease) this.askLease(min, nowMs)
  }

  private openServer(): boolean {
    // Beyond pool_size only the reserve allows it, for the longest waiter (allowedServers).
    const reserveFor = this.lists.serverCount >= this.settings.pool_size ? this.lists.waitingClients.first : null
    const s = this.factory.openServer(this, reserveFor)
    if (s === null) return false
    this.dbCount.servers++
    this.userCount.servers++
    this.lists.moveServer(s, ServerState.Login)
    return true
  }
}
