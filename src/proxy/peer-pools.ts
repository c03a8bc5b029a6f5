// Peer pools: where a CancelRequest whose key names another peer goes ([peers], PgBouncer 1.19+,
// and the peers a fleet finds in etcd). Each peer has a small pool: at most pool_size cancel
// requests are on their way to it at once, each on a connection of its own that ends when the peer
// has read the packet and closed; the others wait in arrival order for cancel_wait_timeout at most.
// A peer that is down or silent costs the cancel, never the client: the client's cancel connection
// has been closed already (as for any cancel tidepool forwards), every connection to a peer is
// bounded by cancelTimeoutMs, and a failure is logged once per cancel.
// The table of peers is rebuilt whole on RELOAD and when the fleet's membership changes; a static
// [peers] entry wins over a fleet node with the same id.
// Invariants: a pool's counts (login, active, waiting) equal what is on its way and in its queue;
// a peer removed from the table loses its waiters, its connections in flight run to their end.
// Must not: read a key for more than its routing (the registry in cancel.ts did), or log secrets.

import type { PeerEntry } from '../config/types.ts'
import type { Logger } from '../observe/log.ts'
import { sendCancel, type PeerForwardOutcome } from './cancel.ts'

/** A peer as SHOW PEERS shows it (PgBouncer's columns): pool_size with default_pool_size filled in. */
export interface PeerRow {
  peer_id: number
  host: string
  port: number
  pool_size: number
}

/** SHOW PEER_POOLS (PgBouncer's columns). */
export interface PeerPoolRow {
  peer_id: number
  /** Cancel requests sent to the peer, waiting for it to close the connection. */
  cl_active_cancel_req: number
  /** Cancel requests not sent yet: queued, or on a connection still being opened. */
  cl_waiting_cancel_req: number
  sv_active_cancel: number
  sv_login: number
}

/** A peer found by other means than [peers] (a fleet node): no pool_size of its own. */
export interface FoundPeer {
  peer_id: number
  host: string
  port: number
}

/** More cancel requests than this waiting for one peer are dropped: a flood must not grow memory. */
const MAX_WAITING = 1024

interface Waiter {
  pid: number
  secret: number
  sinceMs: number
}

class PeerPool {
  login = 0
  active = 0
  /** Arrival order; `head` is the first still waiting (no shift() on the hot side of a burst). */
  waiting: Waiter[] = []
  head = 0

  constructor(public peer: PeerRow) {}

  get waitingCount(): number {
    return this.waiting.length - this.head
  }

  /** The first waiter; the array is compacted once it has been read halfway. */
  take(): Waiter | null {
    if (this.head >= this.waiting.length) return null
    const w = this.waiting[this.head++]
    if (this.head > 64 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head)
      this.head = 0
    }
    return w
  }
}

/** The peer table: static entries over found ones; pool sizes resolved against default_pool_size. */
export function peerTable(staticPeers: ReadonlyMap<number, PeerEntry>, found: readonly FoundPeer[], defaultPoolSize: number): PeerRow[] {
  const m = new Map<number, PeerRow>()
  for (const f of found) m.set(f.peer_id, { peer_id: f.peer_id, host: f.host, port: f.port, pool_size: defaultPoolSize })
  for (const e of staticPeers.values()) m.set(e.peer_id, { peer_id: e.peer_id, host: e.host, port: e.port, pool_size: e.pool_size ?? defaultPoolSize })
  return [...m.values()].sort((a, b) => a.peer_id - b.peer_id)
}

export interface PeerPoolsOptions {
  log: Logger
  /** Bound on each connection to a peer (connect, send, its close): cancelTimeoutMs. */
  timeoutMs(): number
  /** cancel_wait_timeout in ms (0: none): how long a request may wait for a free slot. */
  waitMs(): number
}

export class PeerPools {
  private readonly pools = new Map<number, PeerPool>()

  constructor(private readonly o: PeerPoolsOptions) {}

  /** Replaces the table; a peer gone loses its waiters, a changed one sends the next cancel to its new address. */
  setPeers(rows: readonly PeerRow[]): void {
    const next = new Set(rows.map((r) => r.peer_id))
    for (const [id, pool] of this.pools) {
      if (next.has(id)) continue
      if (pool.waitingCount > 0) this.o.log.debug('cancel.peer_dropped', null, `peer ${id} left the [peers] table: ${pool.waitingCount} waiting cancel request(s) dropped`)
      pool.waiting = []
      pool.head = 0
      this.pools.delete(id)
    }
    for (const r of rows) {
      const pool = this.pools.get(r.peer_id)
      if (pool === undefined) this.pools.set(r.peer_id, new PeerPool(r))
      else pool.peer = r
    }
  }

  forward(peerId: number, pid: number, secret: number): PeerForwardOutcome {
    const pool = this.pools.get(peerId)
    if (pool === undefined) return 'no such peer'
    if (pool.login + pool.active < Math.max(1, pool.peer.pool_size)) {
      this.send(pool, pid, secret)
      return 'sent to its peer'
    }
    if (pool.waitingCount >= MAX_WAITING) return 'peer queue full'
    pool.waiting.push({ pid, secret, sinceMs: Date.now() })
    return 'queued for its peer'
  }

  private send(pool: PeerPool, pid: number, secret: number): void {
    const peer = pool.peer
    pool.login++
    let state: 'login' | 'active' | 'done' = 'login'
    const done = () => {
      if (state === 'done') return
      if (state === 'login') pool.login--
      else pool.active--
      state = 'done'
      this.next(pool)
    }
    sendCancel({
      host: peer.host,
      port: peer.port,
      pid,
      secret,
      begin: () => {
        pool.login--
        pool.active++
        state = 'active'
        return true
      },
      end: done,
      failed: (reason) => {
        this.o.log.warn('cancel.peer_failed', null, `could not forward a cancel request to peer ${peer.peer_id} (${peer.host}:${peer.port}): ${reason}; the cancel is lost`)
        done()
      },
    }, this.o.timeoutMs())
  }

  /** A slot came free: the first waiter still in time goes. */
  private next(pool: PeerPool): void {
    if (this.pools.get(pool.peer.peer_id) !== pool) return
    const limitMs = this.o.waitMs()
    const now = Date.now()
    for (let w = pool.take(); w !== null; w = pool.take()) {
      if (limitMs > 0 && now - w.sinceMs > limitMs) continue
      this.send(pool, w.pid, w.secret)
      return
    }
  }

  /** The janitor's pass: requests that waited longer than cancel_wait_timeout are dropped, as PgBouncer's. */
  sweep(nowMs: number): void {
    const limitMs = this.o.waitMs()
    if (limitMs <= 0) return
    for (const pool of this.pools.values()) {
      let dropped = 0
      // Arrival order: the first one still in time ends the scan.
      while (pool.head < pool.waiting.length && nowMs - pool.waiting[pool.head].sinceMs > limitMs) {
        pool.take()
        dropped++
      }
      if (dropped > 0) this.o.log.warn('cancel.peer_failed', null, `${dropped} cancel request(s) for peer ${pool.peer.peer_id} waited longer than cancel_wait_timeout; dropped`)
    }
  }

  /** SHOW PEERS, by peer id. */
  rows(): PeerRow[] {
    return this.sorted().map((p) => ({ ...p.peer }))
  }

  /** SHOW PEER_POOLS, by peer id: one row per peer of the table. */
  poolRows(): PeerPoolRow[] {
    return this.sorted().map((p) => ({
      peer_id: p.peer.peer_id,
      cl_active_cancel_req: p.active,
      cl_waiting_cancel_req: p.waitingCount + p.login,
      sv_active_cancel: p.active,
      sv_login: p.login,
    }))
  }

  private sorted(): PeerPool[] {
    return [...this.pools.values()].sort((a, b) => a.peer.peer_id - b.peer.peer_id)
  }
}
