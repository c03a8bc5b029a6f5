// The fleet's connection budget (fleet_budget = on): pool_size, max_db_connections and
// max_user_connections are the fleet's totals, not each node's. For every scope (a pool, a database
// with max_db_connections, a user with max_user_connections) every node holds a share as an etcd
// key under its lease,
//   <fleet_name>/budget/pool/<db>/<user>/<node>, .../db/<db>/<node>, .../user/<user>/<node>
//   JSON { share, demand, limit }
// and its pools open servers only within their shares (Pool.lease; the database's and the user's
// SharedCount.cap), through budget-lease.ts.
// Every BUDGET_TICK_MS the agent reads all shares (one range read), works out where each budget
// should go (fairShares: in proportion to each node's demand, the clients using or waiting for a
// server), and moves its own share toward that:
//   - up: only by a transaction that compares <fleet_name>/budget/seq's mod revision with the one
//     read, and bumps it; so every increase is computed from the latest shares, and the shares in
//     etcd never add up to more than the limit (decreases, and keys that go with a lease, only lower
//     the sum, so they need no guard);
//   - down: when another node is short of its fair share, lower the local limit first (idle servers
//     close now, busy ones as they are released), then write a share that still covers the servers
//     open; it reaches the target as they close.
// Floors (fleet_budget_floor): a key per scope and node under floor/, without a lease, claimed in
// the same guarded transaction and counted in the same sum; what a fenced node keeps.
// Fencing: etcd drops a node's shares when its lease expires, TTL after the last keep-alive etcd
// answered, at the earliest; the node counts from when it sent that keep-alive (leaseFreshSinceMs).
// Past ½ TTL it takes nothing more; past ¾ TTL every limit is its floor (idle servers close, busy
// ones as released); past 0.9 TTL busy servers above it are closed too. So when the lease can have
// expired and other nodes take the share, this node holds no server of it. It renews its lease
// itself past ¼ TTL. docs/architecture.md, "Fleet: one connection budget", has the arithmetic.
// Must not: run on the data path (its own unref'd timer; pools only poke it), or raise a limit
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

type ScopeKind = 'pool' | 'db' | 'user'

/** One budget this node holds a share of: a pool, a database or a user, with what it governs here. */
interface Scope {
  kind: ScopeKind
  /** `pool/<db>/<user>/`, `db/<db>/` or `user/<user>/` (names URI-encoded). */
  part: string
  database: string
  user: string
  limit: number
  demand: number
  pools: BudgetPool[]
}

function servers(sc: Scope): number {
  let n = 0
  for (const p of sc.pools) n += p.lists.serverCount
  return n
}

/** The local limit the scope's share governs: the pool's lease, or the database's or user's cap. */
function localLimit(sc: Scope): number {
  const p = sc.pools[0]
  return sc.kind === 'pool' ? p.lease : sc.kind === 'db' ? p.dbCount.cap : p.userCount.cap
}

function setLocalLimit(sc: Scope, n: number): void {
  const p = sc.pools[0]
  if (sc.kind === 'pool') p.lease = n
  else if (sc.kind === 'db') p.dbCount.cap = n
  else p.userCount.cap = n
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
  /** Share keys this node wrote, by key, with the scope and the share written. */
  private readonly written = new Map<string, { scope: Scope; rec: ShareRecord; leaseId: string }>()
  /** This node's floor by share key, as last read or claimed. */
  private readonly floors = new Map<string, number>()
  /** Pool shares (floors included) by node, summed over pools, as last read: SHOW FLEET. */
  private totals = new Map<string, number>()
  private isFenced = false
  private lastError = ''
  private isHeldBack = false

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

  /** Pool shares by node name summed over pools, as last read (this node's own as it holds it). */
  shareTotals(): ReadonlyMap<string, number> {
    return this.totals
  }

  /** This node's shares, for /metrics: `share` is what it may hold, its floor included. */
  ownShares(): BudgetShareRow[] {
    const out: BudgetShareRow[] = []
    for (const [key, w] of this.written) {
      const floor = this.floors.get(key) ?? 0
      out.push({ scope: w.scope.kind, database: w.scope.database, user: w.scope.user, demand: w.rec.demand, limit: w.rec.limit, floor, share: (this.isFenced ? 0 : w.rec.share) + floor })
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

  /** The scopes of this node's pools now: every pool, and each database and user that has a limit. */
  private scopes(nowMs: number): Scope[] {
    const out: Scope[] = []
    const dbs = new Map<string, Scope>()
    const users = new Map<string, Scope>()
    for (const p of this.o.pools()) {
      const demand = this.observeDemand(p, nowMs)
      out.push({ kind: 'pool', part: `pool/${encodeURIComponent(p.database)}/${encodeURIComponent(p.user)}/`, database: p.database, user: p.user, limit: p.settings.pool_size, demand, pools: [p] })
      const groups: Array<[Map<string, Scope>, ScopeKind, string, number]> = [[dbs, 'db', p.database, p.settings.max_db_connections], [users, 'user', p.user, p.settings.max_user_connections]]
      for (const [map, kind, name, limit] of groups) {
        if (limit <= 0) continue
        let sc = map.get(name)
        if (sc === undefined) {
          sc = { kind, part: `${kind}/${encodeURIComponent(name)}/`, database: kind === 'db' ? name : '', user: kind === 'user' ? name : '', limit, demand: 0, pools: [] }
          map.set(name, sc)
          out.push(sc)
        }
        sc.pools.push(p)
        sc.demand += demand
        // A cap never set by the budget (a limit new since the last tick) starts at none held.
        const count = kind === 'db' ? p.dbCount : p.userCount
        if (count.cap === Infinity) count.cap = 0
      }
    }
    for (const p of [...this.demands.keys()]) if (!out.some((sc) => sc.pools.includes(p))) this.demands.delete(p)
    // A database or user whose limit went away (RELOAD) is no longer capped here.
    for (const p of this.o.pools()) {
      if (p.settings.max_db_connections <= 0) p.dbCount.cap = Infinity
      if (p.settings.max_user_connections <= 0) p.userCount.cap = Infinity
    }
    return out
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
    const scopes = this.scopes(Date.now())
    if (this.isFenced) return
    const leaseId = this.o.member.leaseId
    if (leaseId === '') return
    const res = await this.o.client.getAll().prefix(this.prefix).exec()
    let seqRev = '0'
    const byPart = new Map<string, ShareRead[]>()
    const totals = new Map<string, number>()
    const readOf = (part: string, node: string): ShareRead => {
      let list = byPart.get(part)
      if (list === undefined) {
        list = []
        byPart.set(part, list)
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
      const isFloor = key.startsWith(`${this.prefix}floor/`)
      const rest = key.slice(this.prefix.length + (isFloor ? 'floor/'.length : 0))
      const cut = rest.lastIndexOf('/')
      if (cut < 0 || !/^(pool|db|user)\//.test(rest)) continue
      const part = rest.slice(0, cut + 1)
      const node = rest.slice(cut + 1)
      let n: number
      if (isFloor) {
        const f = parseFloor(kv.value.toString())
        if (f === null) continue
        readOf(part, node).floor = f
        n = f
      } else {
        const rec = parseShare(kv.value.toString())
        // This node's share counts only under its current lease: an old lease's is gone or going.
        if (rec === null || (node === this.o.member.name && kv.lease !== leaseId)) continue
        Object.assign(readOf(part, node), rec)
        n = rec.share
      }
      if (part.startsWith('pool/')) totals.set(node, (totals.get(node) ?? 0) + n)
    }
    this.totals = totals
    let seq = seqRev
    const seen = new Set<string>()
    for (const sc of scopes) {
      const key = this.prefix + sc.part + this.o.member.name
      seen.add(key)
      if (this.isFenced) return
      const next = await this.settle(sc, key, byPart.get(sc.part) ?? [], seq, leaseId)
      if (next !== null) seq = next
    }
    // Scopes gone here (a pool dropped, a limit removed): their shares and floors go back.
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
    return `${this.prefix}floor/${shareKey.slice(this.prefix.length)}`
  }

  /**
   * Moves this node's share of one scope toward its fair part, and claims its floor; returns the
   * new seq revision when it bumped it. A node may hold floor + share servers: the floor (no
   * lease) survives a fence, the share (under the lease) does not.
   */
  private async settle(sc: Scope, key: string, reads: ShareRead[], seqRev: string, leaseId: string): Promise<string | null> {
    const me = this.o.member.name
    const { limit, demand } = sc
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
    const open = servers(sc)
    // Never trust more than etcd holds for us (a lease that was lost meanwhile took its share along).
    let lease = Math.min(localLimit(sc), floor + held)
    let share = held
    const floorWanted = Math.min(this.o.floor, limit)
    if (!this.isHeldBack && (floor < floorWanted || (demand > floor + held && !(isOtherShort && floor + held >= target)))) {
      // Growth: of the floor, or of the share up to the demand (only to the target while another node is short).
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
          this.written.set(key, { scope: sc, rec, leaseId })
          this.floors.set(key, newFloor)
          // etcd took the put under our lease, so the lease was alive then; the guard may have fenced since.
          if (!this.isFenced) this.raise(sc, newFloor + newShare)
          return r.header.revision
        }
        // Someone else moved first: read again at once.
        this.poke()
      }
      lease = floor + held
    } else if (isOtherShort && floor + held > target) {
      lease = Math.max(target, floor)
      setLocalLimit(sc, Math.min(localLimit(sc), lease))
      this.closeIdleAbove(sc, lease)
      share = Math.max(0, Math.max(lease, servers(sc)) - floor)
    } else {
      lease = floor + held
    }
    if (floor > floorWanted) {
      // A lower fleet_budget_floor than this node claimed before: the rest goes back (no guard: a decrease).
      await this.o.client.put(this.floorKey(key)).value(JSON.stringify({ floor: floorWanted })).exec()
      this.floors.set(key, floorWanted)
      share += floor - floorWanted
    }
    if (lease < localLimit(sc)) setLocalLimit(sc, lease)
    else if (lease > localLimit(sc) && !this.isFenced) this.raise(sc, lease)
    const last = this.written.get(key)
    // Servers closed this tick may still be on their way out at PostgreSQL: their share goes back next tick.
    if (share < open - floor && share < held) share = Math.min(held, open - floor)
    if (last === undefined || last.rec.share !== share || last.rec.demand !== demand || last.rec.limit !== limit || last.leaseId !== leaseId) {
      const rec: ShareRecord = { share, demand, limit }
      await this.o.client.put(key).value(JSON.stringify(rec)).lease(leaseId).exec()
      this.written.set(key, { scope: sc, rec, leaseId })
    }
    return null
  }

  private raise(sc: Scope, n: number): void {
    setLocalLimit(sc, n)
    const nowMs = Date.now()
    for (const p of sc.pools) p.kick(nowMs)
  }

  /** Idle servers of the scope above `limit` close now; busy ones close as they are released. */
  private closeIdleAbove(sc: Scope, limit: number): void {
    let n = servers(sc)
    for (const p of sc.pools) {
      const l = p.lists
      for (const list of [l.usedServers, l.idleServers]) {
        for (const s of [...list]) {
          if (n <= limit) return
          s.close('budget share handed to another fleet node')
          n--
        }
      }
    }
  }

  /** The lease may be gone: hold no server beyond the floors (busy ones too once `isLate`). */
  private fence(isLate: boolean): void {
    if (!this.isFenced) {
      this.isFenced = true
      if (this.written.size > 0) this.o.log.warn('fleet.budget_fenced', null, 'fleet lease not renewed for ¾ of its TTL: giving up every budget share above the floors (idle servers close now, busy ones when released)')
    }
    const me = this.o.member.name
    let kept = 0
    for (const sc of this.scopes(Date.now())) {
      const floor = this.floors.get(this.prefix + sc.part + me) ?? 0
      if (sc.kind === 'pool') kept += floor
      if (localLimit(sc) > floor) setLocalLimit(sc, floor)
      this.closeIdleAbove(sc, floor)
      if (!isLate) continue
      let n = servers(sc)
      for (const p of sc.pools) {
        // Busy servers above the floor, the newest first (a list's tail).
        const all = p.lists.allServers()
        for (let i = all.length - 1; i >= 0 && n > floor; i--, n--) all[i].close('fleet lease about to expire: budget share given up')
      }
    }
    if ((this.totals.get(me) ?? 0) !== kept) {
      this.totals = new Map(this.totals)
      this.totals.set(me, kept)
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
}

export interface BudgetShareRow {
  scope: ScopeKind
  /** '' for a user scope. */
  database: string
  /** '' for a database scope. */
  user: string
  share: number
  floor: number
  demand: number
  limit: number
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
