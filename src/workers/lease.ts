// A worker's side of the slot ledger (ledger.ts): the slots each of its pools holds, asking the
// primary for more when clients wait at the lease, and giving slots back: those with no server when
// nobody waits (at the janitor's sweep), and what the primary reclaims for another worker (unused
// slots and idle servers at once, busy servers as they are released, down to the share it keeps).
// Pool.lease is what the pool may have open; `held` what the primary counts as ours. held is above
// lease only while slots wait for their servers to close; they go back as those servers do.
// Must not: send a message per query or per transaction; only changes of demand and of servers' count.

import type { Pool, ServerLease } from '../pool/pool.ts'
import type { PooledServer } from '../pool/states.ts'
import type { ServerConn } from '../proxy/server-conn.ts'
import type { ToPrimary } from './ipc.ts'

/** An idle server goes to another worker only once idle this long: a busy pool reuses one within ms. */
const IDLE_TO_GIVE_MS = 250

interface Slots {
  held: number
  /** The last target sent in a want; 0 when none is outstanding. */
  asked: number
}

export class WorkerLease implements ServerLease {
  private readonly slots = new Map<string, Slots>()

  constructor(
    private readonly index: number,
    private readonly count: number,
    private readonly send: (m: ToPrimary) => void,
    private readonly find: (database: string, user: string) => Pool | undefined,
  ) {}

  want(pool: Pool, target: number, reserve: boolean): void {
    const s = this.slotsOf(pool)
    if (target <= s.asked) return
    s.asked = target
    this.send({ t: 'want', db: pool.database, user: pool.user, target, reserve, limits: limitsOf(pool) })
  }

  serverUp(_pool: Pool, s: PooledServer): void {
    const sc = s as ServerConn
    this.send({ t: 'server_up', id: sc.id, host: sc.target.host, port: sc.target.port, pid: sc.backendPid, secret: sc.backendSecret })
  }

  serverClosed(pool: Pool, s: PooledServer): void {
    // Only a server that logged in was announced (its backend pid is known then).
    if ((s as ServerConn).backendPid !== 0) this.send({ t: 'server_down', id: (s as ServerConn).id })
    this.giveBack(pool)
  }

  dropped(pool: Pool): void {
    const s = this.slots.get(keyOf(pool.database, pool.user))
    if (s === undefined) return
    pool.lease = 0
    this.giveBack(pool)
    this.slots.delete(keyOf(pool.database, pool.user))
  }

  minShare(min: number): number {
    return Math.floor(min / this.count) + (this.index < min % this.count ? 1 : 0)
  }

  /** The primary granted `n` more slots. */
  onGrant(db: string, user: string, n: number, nowMs: number): void {
    const pool = this.find(db, user)
    if (pool === undefined) {
      // The pool was dropped meanwhile: the slots go straight back.
      this.send({ t: 'release', db, user, n })
      return
    }
    const s = this.slotsOf(pool)
    s.held += n
    pool.lease += n
    if (s.asked <= s.held) s.asked = 0
    pool.kick(nowMs)
  }

  /**
   * The primary wants up to `n` slots back for another worker: slots without a server and idle
   * servers now, busy servers (as they are released) only down to `keep`. Always answered, with
   * what went back at once (maybe 0).
   */
  onReclaim(db: string, user: string, n: number, keep: number): void {
    const pool = this.find(db, user)
    const s = pool === undefined ? undefined : this.slots.get(keyOf(db, user))
    if (pool === undefined || s === undefined) {
      this.send({ t: 'release', db, user, n: 0 })
      return
    }
    const l = pool.lists
    const now = Date.now()
    let idle = 0
    for (const list of [l.usedServers, l.idleServers]) for (const x of list) if (now - x.idleSinceMs >= IDLE_TO_GIVE_MS) idle++
    const busy = l.serverCount - idle
    const lease = Math.max(s.held - n, Math.min(busy, keep))
    if (lease < pool.lease) pool.lease = lease
    // Servers idle a while above the new lease close now (each close gives its slot back through
    // serverClosed); one idle for a moment is between two transactions and goes when released.
    const before = s.held
    for (const list of [l.usedServers, l.idleServers]) {
      for (const idleServer of [...list]) {
        if (l.serverCount <= pool.lease) break
        if (now - idleServer.idleSinceMs >= IDLE_TO_GIVE_MS) idleServer.close('slot handed to another worker')
      }
    }
    const given = before - s.held + this.giveBack(pool)
    if (given === 0) this.send({ t: 'release', db, user, n: 0 })
  }

  /**
   * The janitor's sweep: a pool nobody waits in gives back slots that have no server (above its
   * part of min_pool_size) and withdraws a request the primary has not met.
   */
  sweep(pools: Iterable<Pool>): void {
    for (const pool of pools) {
      const s = this.slots.get(keyOf(pool.database, pool.user))
      if (s === undefined) continue
      const l = pool.lists
      if (l.waitingClients.size > 0 || (pool.welcome === null && l.loginClients.size > 0)) continue
      const keep = Math.max(l.serverCount, pool.minServers())
      if (pool.lease > keep) pool.lease = keep
      this.giveBack(pool)
      if (s.asked > s.held) {
        s.asked = 0
        this.send({ t: 'want', db: pool.database, user: pool.user, target: s.held, reserve: false, limits: limitsOf(pool) })
      }
    }
  }

  /** Slots held above both the lease and the open servers go back; returns how many. */
  private giveBack(pool: Pool): number {
    const s = this.slots.get(keyOf(pool.database, pool.user))
    if (s === undefined) return 0
    const n = s.held - Math.max(pool.lease, pool.lists.serverCount)
    if (n <= 0) return 0
    s.held -= n
    this.send({ t: 'release', db: pool.database, user: pool.user, n })
    return n
  }

  private slotsOf(pool: Pool): Slots {
    const key = keyOf(pool.database, pool.user)
    let s = this.slots.get(key)
    if (s === undefined) {
      s = { held: 0, asked: 0 }
      this.slots.set(key, s)
    }
    return s
  }
}

function keyOf(db: string, user: string): string {
  return `${db}\u0000${user}`
}

function limitsOf(pool: Pool): { pool: number; reserve: number; db: number; user: number } {
  const st = pool.settings
  return { pool: st.pool_size, reserve: st.reserve_pool_size, db: st.max_db_connections, user: st.max_user_connections }
}
