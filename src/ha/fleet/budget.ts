// The fleet's connection budget (fleet_budget = on): each pool's pool_size is the fleet's total,
// not each node's. Every node holds a share of each pool's budget as an etcd key under its lease,
//   <fleet_name>/budget/pool/<db>/<user>/<node>  JSON { share, demand, limit }
// and its pools open servers only within their share (Pool.lease through budget-lease.ts).
// Every BUDGET_TICK_MS the agent reads all shares (one range read), works out where the budget
// should go (fairShares: in proportion to each node's demand, the clients using or waiting for a
// server), and moves its own share toward that:
//   - up: only by a transaction that compares <fleet_name>/budget/seq's mod revision with the one
//     read, and bumps it; so every increase is computed from the latest shares, and the shares in
//     etcd never add up to more than the limit (decreases, and keys that go with a lease, only lower
//     the sum, so they need no guard);
//   - down: when another node is short of its fair share, lower the pool's lease first (idle servers
//     close now, busy ones as they are released), then write a share that still covers the servers
//     open; it reaches the target as they close.
// Fencing: etcd drops a node's shares when its lease expires, TTL after the last keep-alive etcd
// answered, at the earliest; the node counts from when it sent that keep-alive (leaseFreshSinceMs).
// Past ½ TTL it takes nothing more; past ¾ TTL every pool's lease is 0 (idle servers close, busy
// ones as released); past 0.9 TTL busy servers are closed too. So when the lease can have expired and
// other nodes take the share, this node holds no server of it. It renews its lease itself past ¼ TTL.
// Must not: run on the data path (its own unref'd timer; pools only poke it), or raise a lease
// before etcd holds the share.

import type { Etcd3 } from 'etcd3'
import type { Logger } from '../../observe/log.ts'
import { fairShares, type BudgetAgentHook, type BudgetPool, type FleetBudgetLease } from './budget-lease.ts'
import type { FleetMember } from './member.ts'

export const BUDGET_TICK_MS = 200
/** How often the fence looks at the lease's age. */
const GUARD_MS = 50
/** Demand is the most clients a pool had using or waiting for a server over this window (and the one before). */
const DEMAND_WINDOW_MS = 1_000

export interface ShareRecord {
  share: number
  demand: number
  limit: number
}

/** One node's share of one pool, as read. */
interface ShareRead extends ShareRecord {
  node: string
  /** Its floor (floor/ key, no lease): kept through a fence, and after death until the node returns. */
  floor: number
}

interface Demand {
  cur: number
  prev: number
  sinceMs: number
}

export interface FleetBudgetOptions {
  client: Etcd3
  member: FleetMember
  fleetName: string
  ttlS: number
  log: Logger
  pools(): BudgetPool[]
  lease: FleetBudgetLease
  /** fleet_budget_floor: servers of each pool this node claims to keep through a fence. */
  floor: number
}

export function budgetPrefix(fleetName: string): string {
  return `${fleetName}/budget/`
}

function poolPart(db: string, user: string): string {
  return `pool/${encodeURIComponent(db)}/${encodeURIComponent(user)}/`
}

export class FleetBudget implements BudgetAgentHook {
  private readonly prefix: string
  private readonly seqKey: string
  private timer: NodeJS.Timeout | null = null
  private guardTimer: NodeJS.Timeout | null = null
  private ticking: Promise<void> | null = null
  private isPoked = false
  private isStopped = false
  private readonly demands = new Map<BudgetPool, Demand>()
  /** Share keys this node wrote, by key, with the pool (null once dropped) and the share written. */
  private readonly written = new Map<string, { pool: BudgetPool | null; rec: ShareRecord; leaseId: string }>()
  /** This node's floor by share key, as last read or claimed. */
  private readonly floors = new Map<string, number>()
  /** Shares by node (all pools) as last read, for SHOW FLEET. */
  private totals = new Map<string, number>()
  private isFenced = false
  private lastError = ''
  private isHeldBack = false
  /** Shares read at the last tick, by pool part. */
  private lastRead = new Map<string, ShareRead[]>()

  constructor(private readonly o: FleetBudgetOptions) {
    this.prefix = budgetPrefix(o.fleetName)
    this.seqKey = `${this.prefix}seq`
  }

  start(): void {
    this.o.lease.attach(this)
    this.guardTimer = setInterval(() => this.guard(), GUARD_MS)
    this.guardTimer.unref()
    this.guard()
    this.schedule(0)
  }

  poke(): void {
    if (this.isStopped || this.isPoked) return
    this.isPoked = true
    if (this.ticking === null) {
      if (this.timer !== null) clearTimeout(this.timer)
      this.schedule(0)
    }
  }

  private schedule(ms: number): void {
    if (this.isStopped) return
    this.timer = setTimeout(() => {
      this.timer = null
      this.isPoked = false
      this.ticking = this.tick().then(() => { this.lastError = '' }, (err: unknown) => {
        const msg = (err as Error).message
        // Once per cause: with etcd away every tick fails the same way.
        if (msg !== this.lastError) this.o.log.warn('fleet.budget_error', null, `budget shares not updated: ${msg}`)
        this.lastError = msg
      }).finally(() => {
        this.ticking = null
        this.schedule(this.isPoked ? 0 : BUDGET_TICK_MS)
      })
    }, ms)
    this.timer.unref()
  }

  /** Shares by node name summed over pools, as last read (this node's own as it holds it). */
  shareTotals(): ReadonlyMap<string, number> {
    return this.totals
  }

  /** This node's shares by pool, for /metrics: `share` is what it may hold, its floor included. */
  ownShares(): Array<{ database: string; user: string; share: number; floor: number; demand: number; limit: number }> {
    const out = []
    for (const [key, w] of this.written) {
      if (w.pool === null) continue
      const floor = this.floors.get(key) ?? 0
      out.push({ database: w.pool.database, user: w.pool.user, demand: w.rec.demand, limit: w.rec.limit, floor, share: (this.isFenced ? 0 : w.rec.share) + floor })
    }
    return out
  }

  get fenced(): boolean {
    return this.isFenced
  }

  private observeDemand(pool: BudgetPool, nowMs: number): number {
    let d = this.demands.get(pool)
    if (d === undefined) {
      d = { cur: 0, prev: 0, sinceMs: nowMs }
      this.demands.set(pool, d)
    }
    if (nowMs - d.sinceMs >= DEMAND_WINDOW_MS) {
      d.prev = d.cur
      d.cur = 0
      d.sinceMs = nowMs
    }
    const l = pool.lists
    // Clients logging in to a pool that has no server yet wait for its first one (welcome parameters).
    const now = l.waitingClients.size + l.activeServers.size + l.testedServers.size + l.beingCanceledServers.size + (pool.welcome === null ? l.loginClients.size : 0)
    if (now > d.cur) d.cur = now
    return Math.max(d.cur, d.prev)
  }

  /**
   * The fence, on its own timer so that a tick stuck on a dead etcd cannot delay it: past ¼ TTL it
   * renews the lease, past ½ TTL no share grows, past ¾ TTL every share is given up.
   */
  private guard(): void {
    const nowMs = Date.now()
    const ttlMs = this.o.ttlS * 1000
    const fresh = this.o.member.leaseFreshSinceMs
    const age = fresh === 0 ? Infinity : nowMs - fresh
    if (fresh > 0 && age > ttlMs / 4) void this.o.member.renew()
    const isHeldBack = age > ttlMs / 2
    if (isHeldBack !== this.isHeldBack) {
      this.isHeldBack = isHeldBack
      if (isHeldBack && this.written.size > 0) this.o.log.warn('fleet.budget_held', null, `fleet lease not renewed for ${age === Infinity ? 'its whole life' : `${Math.round(age)} ms`}: opening no server beyond this node's budget shares`)
    }
    if (age > (ttlMs * 3) / 4) {
      this.fence(age > ttlMs * 0.9)
    } else if (this.isFenced) {
      this.isFenced = false
      if (this.written.size > 0) this.o.log.info('fleet.budget_unfenced', null, 'fleet lease renewed: this node takes its budget shares again')
      this.poke()
    }
  }

  private async tick(): Promise<void> {
    const nowMs = Date.now()
    const pools = this.o.pools()
    const demandOf = new Map<BudgetPool, number>()
    for (const p of pools) demandOf.set(p, this.observeDemand(p, nowMs))
    for (const p of [...this.demands.keys()]) if (!demandOf.has(p)) this.demands.delete(p)
    if (this.isFenced) return
    const leaseId = this.o.member.leaseId
    if (leaseId === '') return
    const res = await this.o.client.getAll().prefix(this.prefix).exec()
    let seqRev = '0'
    const byPool = new Map<string, ShareRead[]>()
    const totals = new Map<string, number>()
    const readOf = (part: string, node: string): ShareRead => {
      let list = byPool.get(part)
      if (list === undefined) {
        list = []
        byPool.set(part, list)
      }
      let r = list.find((x) => x.node === node)
      if (r === undefined) {
        r = { node, share: 0, demand: 0, limit: 0, floor: 0 }
        list.push(r)
      }
      return r
    }
    for (const kv of res.kvs) {
      const key = kv.key.toString()
      if (key === this.seqKey) {
        seqRev = kv.mod_revision
        continue
      }
      const rest = key.slice(this.prefix.length)
      const cut = rest.lastIndexOf('/')
      const kind = rest.startsWith('pool/') ? 'pool' : rest.startsWith('floor/') ? 'floor' : null
      if (kind === null || cut < 0) continue
      // Both kinds of key of one pool meet under its pool part.
      const part = 'pool/' + rest.slice(kind.length + 1, cut + 1)
      const node = rest.slice(cut + 1)
      const isMine = node === this.o.member.name
      if (kind === 'floor') {
        const f = parseFloor(kv.value.toString())
        if (f === null) continue
        readOf(part, node).floor = f
        totals.set(node, (totals.get(node) ?? 0) + f)
        continue
      }
      const rec = parseShare(kv.value.toString())
      // This node's share counts only under its current lease: an old lease's is gone or going.
      if (rec === null || (isMine && kv.lease !== leaseId)) continue
      Object.assign(readOf(part, node), rec)
      totals.set(node, (totals.get(node) ?? 0) + rec.share)
    }
    this.totals = totals
    this.lastRead = byPool
    let seq = seqRev
    const seen = new Set<string>()
    for (const pool of pools) {
      const part = poolPart(pool.database, pool.user)
      const key = this.prefix + part + this.o.member.name
      seen.add(key)
      if (this.isFenced) return
      const next = await this.settlePool(pool, part, key, demandOf.get(pool) ?? 0, byPool.get(part) ?? [], seq, leaseId)
      if (next !== null) seq = next
    }
    // Pools dropped here: their shares and floors go back.
    for (const key of [...this.written.keys()]) {
      if (seen.has(key)) continue
      this.written.delete(key)
      this.floors.delete(key)
      await this.o.client.delete().key(key).exec()
      await this.o.client.delete().key(this.floorKey(key)).exec()
    }
  }

  /** The floor key beside a share key. */
  private floorKey(shareKey: string): string {
    return this.prefix + 'floor/' + shareKey.slice(this.prefix.length + 'pool/'.length)
  }

  /**
   * Moves this node's share of one pool toward its fair part, and claims its floor; returns the new
   * seq revision when it bumped it. A node may hold floor + share servers: the floor (no lease)
   * survives a fence, the share (under the lease) does not.
   */
  private async settlePool(pool: BudgetPool, part: string, key: string, demand: number, reads: ShareRead[], seqRev: string, leaseId: string): Promise<string | null> {
    const me = this.o.member.name
    const limit = pool.settings.pool_size
    const mine = reads.find((r) => r.node === me)
    const held = mine?.share ?? 0
    const floor = mine?.floor ?? 0
    const demands = new Map<string, number>()
    let others = 0
    for (const r of reads) {
      if (r.node === me) continue
      demands.set(r.node, r.demand)
      others += r.share + r.floor
    }
    demands.set(me, demand)
    const fair = fairShares(limit, demands)
    const target = fair.get(me) ?? 0
    const isOtherShort = reads.some((r) => r.node !== me && r.share + r.floor < Math.min(r.demand, fair.get(r.node) ?? 0))
    this.floors.set(key, floor)
    const servers = pool.lists.serverCount
    // Never trust more than etcd holds for us (a lease that was lost meanwhile took its share along).
    let lease = Math.min(pool.lease, floor + held)
    let share = held
    const floorWanted = Math.min(this.o.floor, limit)
    if (!this.isHeldBack && (floor < floorWanted || (demand > floor + held && !(isOtherShort && floor + held >= target)))) {
      // Growth (of the floor, or of the share up to the demand, or only to the target while another node is short).
      const free = limit - others - held - floor
      const newFloor = floor + Math.max(0, Math.min(floorWanted - floor, free))
      const cap = isOtherShort ? Math.max(target, newFloor) : Math.max(demand, newFloor)
      const newShare = held + Math.max(0, Math.min(cap - newFloor - held, free - (newFloor - floor)))
      if (newFloor > floor || newShare > held) {
        const rec: ShareRecord = { share: newShare, demand, limit }
        const txn = seqRev === '0' ? this.o.client.if(this.seqKey, 'Create', '==', 0) : this.o.client.if(this.seqKey, 'Mod', '==', seqRev)
        const puts = [this.o.client.put(key).value(JSON.stringify(rec)).lease(leaseId), this.o.client.put(this.seqKey).value(me)]
        if (newFloor > floor) puts.push(this.o.client.put(this.floorKey(key)).value(JSON.stringify({ floor: newFloor })))
        const r = await txn.then(...puts).commit()
        if (r.succeeded) {
          this.written.set(key, { pool, rec, leaseId })
          this.floors.set(key, newFloor)
          // etcd took the put under our lease, so the lease was alive then; the guard may have fenced since.
          if (!this.isFenced) {
            pool.lease = newFloor + newShare
            pool.kick(Date.now())
          }
          return r.header.revision
        }
        // Someone else moved first: read again at once.
        this.o.lease.want(pool, 0, false)
      }
      lease = floor + held
    } else if (isOtherShort && floor + held > target) {
      lease = Math.max(target, floor)
      this.closeIdleAbove(pool, lease)
      share = Math.max(0, Math.max(lease, pool.lists.serverCount) - floor)
    } else {
      lease = floor + held
    }
    if (floor > floorWanted) {
      // A lower fleet_budget_floor than this node claimed before: the rest goes back (no guard: a decrease).
      await this.o.client.put(this.floorKey(key)).value(JSON.stringify({ floor: floorWanted })).exec()
      this.floors.set(key, floorWanted)
      share += floor - floorWanted
    }
    if (lease < pool.lease) pool.lease = lease
    else if (lease > pool.lease && !this.isFenced) {
      pool.lease = lease
      pool.kick(Date.now())
    }
    const last = this.written.get(key)
    // Servers closed this tick may still be on their way out at PostgreSQL: their share goes back next tick.
    if (share < servers - floor && share < held) share = Math.min(held, servers - floor)
    if (last === undefined || last.rec.share !== share || last.rec.demand !== demand || last.rec.limit !== limit || last.leaseId !== leaseId) {
      const rec: ShareRecord = { share, demand, limit }
      await this.o.client.put(key).value(JSON.stringify(rec)).lease(leaseId).exec()
      this.written.set(key, { pool, rec, leaseId })
    }
    return null
  }

  /** Idle servers above `lease` close now; busy ones close as they are released (Pool.retireReason). */
  private closeIdleAbove(pool: BudgetPool, lease: number): void {
    const l = pool.lists
    for (const list of [l.usedServers, l.idleServers]) {
      for (const s of [...list]) {
        if (l.serverCount <= lease) return
        s.close('budget share handed to another fleet node')
      }
    }
  }

  /** The lease may be gone: hold no server of any share (busy ones too once `isLate`). */
  private fence(isLate: boolean): void {
    const pools = this.o.pools()
    if (!this.isFenced) {
      this.isFenced = true
      if (this.written.size > 0) this.o.log.warn('fleet.budget_fenced', null, 'fleet lease not renewed for ¾ of its TTL: giving up every budget share (idle servers close now, busy ones when released)')
    }
    let kept = 0
    for (const pool of pools) {
      const floor = this.floors.get(this.prefix + poolPart(pool.database, pool.user) + this.o.member.name) ?? 0
      kept += floor
      if (pool.lease > floor) pool.lease = floor
      this.closeIdleAbove(pool, floor)
      if (!isLate) continue
      // Busy servers above the floor, the most recently linked first (a list's tail is its newest).
      const busy = pool.lists.allServers()
      for (let i = busy.length - 1; i >= 0 && pool.lists.serverCount > floor; i--) busy[i].close('fleet lease about to expire: budget share given up')
    }
    if ((this.totals.get(this.o.member.name) ?? 0) !== kept) {
      this.totals = new Map(this.totals)
      this.totals.set(this.o.member.name, kept)
    }
  }

  stop(): void {
    this.isStopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.guardTimer !== null) clearInterval(this.guardTimer)
    this.guardTimer = null
    this.o.lease.attach(null)
  }

  /** Shutdown, before the lease is revoked (which takes the shares along): floors go back too. */
  async leave(): Promise<void> {
    this.stop()
    if (this.ticking !== null) await this.ticking
    const floors = [...this.floors].filter(([, f]) => f > 0).map(([key]) => this.floorKey(key))
    await Promise.all(floors.map((k) => this.o.client.delete().key(k).exec().catch(() => {})))
  }

  /** The shares read at the last tick (tests, SHOW). */
  reads(): ReadonlyMap<string, readonly ShareRead[]> {
    return this.lastRead
  }
}

function parseFloor(v: string): number | null {
  try {
    const o = JSON.parse(v) as { floor?: unknown }
    return typeof o.floor === 'number' && Number.isInteger(o.floor) && o.floor >= 0 ? o.floor : null
  } catch {
    return null
  }
}

function parseShare(v: string): ShareRecord | null {
  try {
    const o = JSON.parse(v) as Partial<ShareRecord>
    if (typeof o.share !== 'number' || typeof o.demand !== 'number' || typeof o.limit !== 'number') return null
    if (!Number.isInteger(o.share) || o.share < 0) return null
    return { share: o.share, demand: o.demand, limit: o.limit }
  } catch {
    return null
  }
}
