// Every pool of the process, one per (database, user), made on first use and dropped after
// autodb_idle_timeout with nothing in it; the max_db/max_user_connections counts they share; and
// what stops them: PAUSE of all or of one database, a switchover's hold, KILL, DISABLE.
// Invariants: a pool is paused exactly when isPauseWanted() says so (the whole pooler is paused,
// or its database is, or a switchover holds it); settings come from the current Config.
// Must not: touch sockets or read the clock (times come in as arguments); know hosts, which
// ha/ owns (the caller says whether a pool is on a host).

import type { Config } from '../config/types.ts'
import { entryFor, poolSettings } from '../config/effective.ts'
import type { Logger } from '../observe/log.ts'
import { ClientErrors, type ClientFailure } from '../protocol/client-errors.ts'
import { sweepPool, type JanitorSettings } from './janitor.ts'
import { Pool, SharedCount, type ServerFactory, type ServerLease } from './pool.ts'

export interface PoolSetDeps {
  config(): Config
  log: Logger
  factory: ServerFactory
  /** Whether the pool's database entry lists any of these hosts (by key). */
  isOnHosts(pool: Pool, hostKeys: readonly string[]): boolean
  /** A pool was made (before its first server opens). */
  onCreated(pool: Pool): void
  /** A pool is dropped as idle: its counters must live on in the totals. */
  onDropped(pool: Pool): void
  /** With workers: where pools lease their server slots (absent in a single process). */
  lease?: ServerLease | null
}

export class PoolSet {
  private readonly pools = new Map<string, Pool>()
  private readonly dbCounts = new Map<string, SharedCount>()
  private readonly userCounts = new Map<string, SharedCount>()
  /** PAUSE with no database, and PAUSE <db> (or KILL <db>): new transactions wait until RESUME. */
  private isPausedAllNow = false
  private readonly pausedDbs = new Set<string>()
  /** Pools a switchover holds (apart from PAUSE, which an operator may lift meanwhile), and its hosts. */
  private readonly heldPools = new Set<Pool>()
  private heldHosts: readonly string[] | null = null
  /** DISABLE db: new logins to these are refused. */
  readonly disabledDbs = new Set<string>()

  constructor(private readonly deps: PoolSetDeps) {}

  /** The pool for a database entry and the server-side user, created on first use; null with no such entry. */
  poolFor(database: string, user: string): Pool | null {
    const key = poolKey(database, user)
    const existing = this.pools.get(key)
    if (existing !== undefined) return existing
    const cfg = this.deps.config()
    const entry = entryFor(cfg, database)
    if (entry === undefined) return null
    const pool = new Pool(database, user, poolSettings(cfg, entry, user), counter(this.dbCounts, database), counter(this.userCounts, user), this.deps.factory, this.deps.lease ?? null)
    pool.isForcedUser = entry.user !== null
    if (this.heldHosts !== null && this.deps.isOnHosts(pool, this.heldHosts)) this.heldPools.add(pool)
    pool.isPaused = this.isPauseWanted(pool)
    this.pools.set(key, pool)
    this.deps.onCreated(pool)
    this.deps.log.debug('pool.created', null, `new pool ${database}/${user}`)
    return pool
  }

  list(): Pool[] {
    return [...this.pools.values()]
  }

  /** The pool of (database, user) if it exists; never makes one. */
  existing(database: string, user: string): Pool | undefined {
    return this.pools.get(`${database}\u0000${user}`)
  }

  /** The pools of one database, or all with null. */
  of(database: string | null): Pool[] {
    return this.list().filter((p) => database === null || p.database === database)
  }

  /** The pools whose database entry lists any of these hosts. */
  onHosts(hostKeys: readonly string[]): Pool[] {
    return this.list().filter((p) => this.deps.isOnHosts(p, hostKeys))
  }

  get isPausedAll(): boolean {
    return this.isPausedAllNow
  }

  /** null: is the pooler as a whole paused; a name: is that database paused (PAUSE db, KILL db). */
  isPaused(database: string | null): boolean {
    return database === null ? this.isPausedAllNow : this.pausedDbs.has(database)
  }

  hasPausedDatabases(): boolean {
    return this.pausedDbs.size > 0
  }

  /** The one rule: PAUSE of all, PAUSE of its database, or a switchover's hold. */
  private isPauseWanted(p: Pool): boolean {
    return this.isPausedAllNow || this.pausedDbs.has(p.database) || this.heldPools.has(p)
  }

  /** Sets each pool's isPaused by the rule; a pool let go serves its waiters at once. */
  private applyPause(pools: Iterable<Pool>, nowMs: number): void {
    for (const p of pools) {
      p.isPaused = this.isPauseWanted(p)
      if (!p.isPaused) p.kick(nowMs)
    }
  }

  /** PAUSE: returns the pools now paused, for the caller to wait on. */
  pause(database: string | null, nowMs: number): Pool[] {
    if (database === null) this.isPausedAllNow = true
    else this.pausedDbs.add(database)
    const affected = this.of(database)
    this.applyPause(affected, nowMs)
    return affected
  }

  resume(database: string | null, nowMs: number): number {
    if (database === null) {
      this.isPausedAllNow = false
      this.pausedDbs.clear()
    } else this.pausedDbs.delete(database)
    const affected = this.of(database)
    this.applyPause(affected, nowMs)
    return affected.length
  }

  /** A switchover holds the pools on these hosts, pools created meanwhile too; null lets them go. */
  hold(hostKeys: readonly string[] | null, nowMs: number): number {
    this.heldHosts = hostKeys
    const released = [...this.heldPools]
    this.heldPools.clear()
    if (hostKeys !== null) for (const p of this.onHosts(hostKeys)) this.heldPools.add(p)
    this.applyPause([...this.heldPools, ...released], nowMs)
    return hostKeys === null ? released.length : this.heldPools.size
  }

  /**
   * KILL db, as PgBouncer's kill_pool: clients and servers go now; new clients wait until RESUME db.
   * KILL with no database (null, PgBouncer 1.25) does that to every database that has a pool.
   */
  kill(database: string | null, nowMs: number): number {
    const affected = this.of(database)
    if (database !== null) this.pausedDbs.add(database)
    else for (const p of affected) this.pausedDbs.add(p.database)
    this.applyPause(affected, nowMs)
    for (const p of affected) {
      for (const c of p.lists.allClients()) c.fail(ClientErrors.databaseRemoved)
      for (const s of p.lists.allServers()) s.close('database removed')
    }
    return affected.length
  }

  /** RECONNECT: no client gets a server opened before it (Pool.retireServers). */
  reconnect(database: string | null, nowMs: number): number {
    const affected = this.of(database)
    for (const p of affected) p.retireServers('obsolete connection (RECONNECT)', nowMs)
    return affected.length
  }

  /**
   * Online restart, old worker: every server closes, idle ones now, busy ones as they are released
   * (a server opened since for a client still here, once no client here waits), so that its slot
   * goes to the new pooler; the welcome stays, for the clients handed over with it.
   */
  retireForTakeover(nowMs: number): void {
    for (const p of this.pools.values()) {
      p.isHandingOver = true
      p.retireServers('online restart: the new pooler serves', nowMs, true)
    }
  }

  /** The settings every server was opened with changed (server TLS): all of them retire. */
  retireAll(reason: string, nowMs: number): void {
    for (const p of this.pools.values()) p.retireServers(reason, nowMs)
  }

  /** WAIT_CLOSE's condition: no server of these pools is marked to close any more. */
  isClosingDone(database: string | null): boolean {
    return !this.of(database).some((p) => p.lists.allServers().some((s) => s.closeOnRelease))
  }

  setDisabled(database: string, isDisabled: boolean): void {
    if (isDisabled) this.disabledDbs.add(database)
    else this.disabledDbs.delete(database)
  }

  /** Servers of every pool running work or an internal query: what shutdown waits for. */
  busyServerCount(): number {
    let busy = 0
    for (const p of this.pools.values()) busy += p.lists.busyServerCount
    return busy
  }

  /** Closes every client waiting for a server with `err` (SHUTDOWN WAIT_FOR_SERVERS). */
  failWaiters(err: ClientFailure): void {
    for (const p of this.pools.values()) for (const c of [...p.lists.waitingClients]) c.fail(err)
  }

  closeAllServers(reason: string): void {
    for (const p of this.pools.values()) for (const s of p.lists.allServers()) s.close(reason)
  }

  /** One janitor pass over every pool, dropping those idle for autodb_idle_timeout. */
  sweep(st: JanitorSettings, nowMs: number): void {
    this.prewarm()
    for (const [key, p] of this.pools) {
      sweepPool(p, st, nowMs)
      this.dropIfIdle(key, p, nowMs)
    }
  }

  /**
   * PgBouncer 1.21+: an entry that forces its user (user=) and has a min_pool_size gets its pool
   * without waiting for a client, so the minimum is open before the first one comes. Only then:
   * with many users, opening pools nobody asked for would be a surprise.
   */
  private prewarm(): void {
    const cfg = this.deps.config()
    for (const [name, entry] of cfg.databases) {
      if (name === '*' || entry.user === null || this.pools.has(poolKey(name, entry.user))) continue
      if (poolSettings(cfg, entry, entry.user).min_pool_size > 0) this.poolFor(name, entry.user)
    }
  }

  /**
   * Pools are made on demand per (database, user); one that has had no clients and no servers for
   * autodb_idle_timeout is dropped, so clients trying many names cannot grow memory without bound.
   */
  private dropIfIdle(key: string, pool: Pool, nowMs: number): void {
    const limit = this.deps.config().settings.autodb_idle_timeout
    // A pre-warmed pool would be made again at once, losing its server_login_retry wait.
    if (pool.lists.clientCount > 0 || pool.lists.serverCount > 0 || pool.keepsMinimum) {
      pool.emptySinceMs = 0
      return
    }
    if (pool.emptySinceMs === 0) pool.emptySinceMs = nowMs
    else if (limit > 0 && nowMs - pool.emptySinceMs > limit * 1000) {
      pool.detach()
      this.pools.delete(key)
      this.deps.onDropped(pool)
      this.deps.log.debug('pool.dropped', null, `dropped idle pool ${pool.database}/${pool.user}`)
    }
  }

  /**
   * A new Config is in force: pools of a removed entry lose their clients; the others take their
   * new settings, and where `isTargetChanged` says the servers now go elsewhere, they retire
   * (busy servers when released, the others now).
   */
  reconfigure(next: Config, isTargetChanged: (pool: Pool) => boolean, nowMs: number): void {
    for (const p of this.pools.values()) {
      const entry = entryFor(next, p.database)
      if (entry === undefined) {
        p.isForcedUser = false
        for (const c of p.lists.allClients()) c.fail(ClientErrors.databaseRemoved)
        continue
      }
      p.settings = poolSettings(next, entry, p.user)
      p.isForcedUser = entry.user !== null
      if (isTargetChanged(p)) p.retireServers('database configuration changed', nowMs)
    }
  }
}

function poolKey(database: string, user: string): string {
  return `${database}\u0000${user}`
}

function counter(m: Map<string, SharedCount>, key: string): SharedCount {
  let c = m.get(key)
  if (c === undefined) {
    c = new SharedCount()
    m.set(key, c)
  }
  return c
}
