// How pools get server connections: the backend target of each pool (host, port, database, user,
// password, startup parameters from its [databases] entry), and for watched entries the host the
// router picks now (leastconn, turn by turn among ties). It also reacts when ha/ says a host
// changed health or role, and bans a host a connection could not reach. It lives at the wiring
// level because it creates ServerConn (proxy/) and asks Backends (ha/); only Runtime imports it.
// Must not: change pause state or list membership by hand (servers close through their own path).

import type { DatabaseEntry } from '../config/types.ts'
import { entryFor } from '../config/effective.ts'
import { attrsOf, isWatched, type Backends } from '../ha/backends.ts'
import type { Host } from '../ha/hosts.ts'
import type { HostChange } from '../ha/monitor.ts'
import type { Pool, ServerFactory } from '../pool/pool.ts'
import { ServerState, type PooledClient } from '../pool/states.ts'
import type { ClientConn } from '../proxy/client-conn.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { ServerConn, type ServerTarget, type WatchedHost } from '../proxy/server-conn.ts'

/** Where one pool's servers go. */
interface Route {
  /** The entry's first host (unwatched entries always go there); compared on RELOAD. */
  target: ServerTarget
  /** Turn among equally loaded hosts (leastconn ties). */
  nextHost: number
  /** Why the last attempt found no host (logged once per change), or null. */
  noHostReason: string | null
}

export class BackendServerFactory implements ServerFactory {
  /** Weak: a pool dropped as idle takes its route with it. */
  private readonly routes = new WeakMap<Pool, Route>()

  constructor(
    private readonly ctx: ProxyContext,
    private readonly backends: Backends,
    private readonly pools: () => Iterable<Pool>,
  ) {}

  openServer(pool: Pool, reserveFor: PooledClient | null): ServerConn | null {
    const s = this.open(pool)
    // PgBouncer's warning, on the waiter the reserve is for.
    if (s !== null && reserveFor !== null) this.ctx.log.warn('pool.reserve_used', reserveFor as ClientConn, 'taking connection from reserve_pool')
    return s
  }

  private open(pool: Pool): ServerConn | null {
    const entry = entryFor(this.ctx.config, pool.database)
    const route = this.routes.get(pool)
    if (route === undefined) throw new Error(`server-factory: pool ${pool.database}/${pool.user} was made without onPoolCreated`)
    if (entry === undefined || !isWatched(entry)) return new ServerConn(pool, route.target, this.ctx)
    const pick = this.backends.pick(entry, route.nextHost++, Date.now())
    if (typeof pick === 'string') {
      // Clients wait (query_wait_timeout bounds them) until a check finds a fitting host.
      if (route.noHostReason !== pick) this.ctx.log.warn('pool.no_host', null, `${pool.database}/${pool.user}: no server connection opened: ${pick} (target_session_attrs ${attrsOf(entry)})`)
      route.noHostReason = pick
      return null
    }
    route.noHostReason = null
    return new ServerConn(pool, { ...this.resolveTarget(entry, pool.database, pool.user, pick.index), watchedHost: pick.host }, this.ctx)
  }

  /** A pool was made (PoolSet): its target comes from its entry as the config is now. */
  onPoolCreated(pool: Pool): void {
    const entry = entryFor(this.ctx.config, pool.database)
    if (entry === undefined) return
    this.routes.set(pool, { target: this.resolveTarget(entry, pool.database, pool.user, 0), nextHost: 0, noHostReason: null })
  }

  /** After a RELOAD: true when the pool's servers now go elsewhere (its old ones must leave). */
  retarget(pool: Pool): boolean {
    const entry = entryFor(this.ctx.config, pool.database)
    const route = this.routes.get(pool)
    if (entry === undefined || route === undefined) return false
    const target = this.resolveTarget(entry, pool.database, pool.user, 0)
    if (JSON.stringify(target) === JSON.stringify(route.target)) return false
    route.target = target
    return true
  }

  /** Whether the pool's database entry lists any of these hosts (by key). */
  isOnHosts(pool: Pool, hostKeys: readonly string[]): boolean {
    const e = entryFor(this.ctx.config, pool.database)
    return e !== undefined && this.backends.hostsOf(e).some((h) => hostKeys.includes(h.key))
  }

  /** A server connection could not reach or log in to a watched host: ban it for host_ban_ms. */
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
  onHostChange(h: Host, change: HostChange): void {
    const now = Date.now()
    const parts: string[] = []
    if (change.upChanged) parts.push(h.isUsable(now) ? 'up' : h.health(now))
    if (change.roleChanged) parts.push(`role ${h.role}`)
    if (h.isConflicted) parts.push('role sources disagree')
    const msg = `host ${h.key}: ${parts.join(', ')}${h.isUsable(now) || h.lastError === null ? '' : ` (${h.lastError})`}`
    if (h.isUsable(now)) this.ctx.log.info('host.changed', null, msg)
    else this.ctx.log.warn('host.changed', null, msg)
    for (const pool of this.pools()) {
      const entry = entryFor(this.ctx.config, pool.database)
      if (entry === undefined || !isWatched(entry) || !this.backends.hostsOf(entry).includes(h)) continue
      const region = this.backends.regionOf(entry)
      let leaving = 0
      for (const s of pool.lists.allServers()) {
        const server = s as ServerConn
        const t = server.target
        if (!this.backends.fits(entry, t.host, t.port, now)) {
          if (s.state === ServerState.Active) s.closeOnRelease = true
          else server.close(`host ${t.host}:${t.port} no longer fits target_session_attrs ${attrsOf(entry)}`, false)
        } else if (region !== '') {
          if (this.backends.isPreferred(entry, t.host, t.port, now)) server.retireAtMs = 0
          else if (server.retireAtMs === 0) {
            server.retireAtMs = Math.max(1, now + Math.floor(Math.random() * this.ctx.config.settings.region_failback_ms))
            leaving++
          }
        }
      }
      if (leaving > 0) {
        this.ctx.log.info('pool.region_failback', null, `${pool.database}/${pool.user}: ${leaving} server connection(s) outside region ${region} retire within ${this.ctx.config.settings.region_failback_ms} ms, a host of the region fits again`)
      }
      pool.kick(now)
    }
  }

  private resolveTarget(db: DatabaseEntry, database: string, user: string, hostIndex: number): ServerTarget {
    const s = this.ctx.config.settings
    const host = db.hosts.length > 0 ? db.hosts[hostIndex % db.hosts.length] : (s.unix_socket_dir || '/tmp')
    const port = db.ports.length > 0 ? db.ports[hostIndex % db.ports.length] : 5432
    const startupParams: Record<string, string> = {}
    if (db.client_encoding !== null) startupParams.client_encoding = db.client_encoding
    if (db.datestyle !== null) startupParams.DateStyle = db.datestyle
    if (db.timezone !== null) startupParams.TimeZone = db.timezone
    if (db.application_name !== null) startupParams.application_name = db.application_name
    const serverUser = db.user ?? user
    const password = db.password ?? this.ctx.config.userlist.get(serverUser)?.password ?? null
    const authPolicy = { requireAuth: db.require_auth ?? s.server_require_auth, maxIterations: s.server_scram_max_iterations }
    return { host, port, database: db.dbname ?? database, user: serverUser, password, startupParams, connectQuery: db.connect_query, authPolicy }
  }
}
