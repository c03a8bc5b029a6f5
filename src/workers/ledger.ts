// The slot ledger, kept by the primary: how many server connections each worker may have open per
// pool, so that pool_size (+ reserve_pool_size), max_db_connections and max_user_connections hold
// over all workers together. A worker opens a server only within the slots it holds (its lease);
// it asks for more when its clients wait, and gives slots back when it no longer needs them or when
// the primary asks. Slots move toward waiting clients:
//   - free room at every level (pool, database, user) is granted at once;
//   - otherwise the primary asks the other holders that are not short themselves to give back
//     what they do not use (slots with no server, servers idle a while), and, at the pool level,
//     holders above their fair share to come down to it
//     (limit / workers that hold or want slots) as their busy servers are released;
//   - among workers that wait, those below their fair share are served first.
// Invariant: for every pool, database and user, the slots held by all workers never exceed the
// limit in force when they were granted (a lower limit after RELOAD is reached as servers close).
// A holder is asked again for the same pool at most every RECLAIM_RETRY_MS: it answers at once
// with what it could give, and what it gives later (busy servers released) comes by itself.
// Pure: no IPC, no timers; time comes in as arguments; the caller sends the actions it returns.

/** How often one holder may be asked again for slots of one pool. */
export const RECLAIM_RETRY_MS = 100

/** The limits a pool's worker reported with its request (effective settings; 0 = none for db/user). */
export interface SlotLimits {
  pool: number
  reserve: number
  db: number
  user: number
}

export type LedgerAction =
  | { kind: 'grant'; worker: number; key: string; n: number }
  /** Give back up to `n` slots of `key`: unused ones and idle servers first, busy servers only down to `keep`. */
  | { kind: 'reclaim'; worker: number; key: string; n: number; keep: number }

interface PoolEntry {
  readonly key: string
  readonly db: string
  readonly user: string
  limits: SlotLimits
  /** Slots by worker. */
  readonly held: Map<number, number>
  /** What each waiting worker asked for in all (its target), and whether the reserve pool applies. */
  readonly wants: Map<number, { target: number; reserve: boolean }>
}

export class Ledger {
  private readonly pools = new Map<string, PoolEntry>()
  /** When each holder was last asked for slots of a pool, by `${worker}\0${key}`. */
  private readonly asked = new Map<string, number>()

  /** Slots `worker` holds for `key`. */
  held(worker: number, key: string): number {
    return this.pools.get(key)?.held.get(worker) ?? 0
  }

  /** Slots held for a pool, a database or a user over all workers. */
  totalOfPool(key: string): number {
    const e = this.pools.get(key)
    return e === undefined ? 0 : sum(e.held.values())
  }

  totalOfDb(db: string): number {
    let n = 0
    for (const e of this.pools.values()) if (e.db === db) n += sum(e.held.values())
    return n
  }

  totalOfUser(user: string): number {
    let n = 0
    for (const e of this.pools.values()) if (e.user === user) n += sum(e.held.values())
    return n
  }

  /** Workers still short of what they asked for. */
  get hasWants(): boolean {
    for (const e of this.pools.values()) if (e.wants.size > 0) return true
    return false
  }

  /**
   * `worker` could use `target` slots of the pool in all. A target at or below what it holds
   * withdraws its request.
   */
  want(worker: number, key: string, db: string, user: string, target: number, reserve: boolean, limits: SlotLimits, nowMs: number): LedgerAction[] {
    const e = this.entry(key, db, user, limits)
    e.limits = limits
    if (target > (e.held.get(worker) ?? 0)) e.wants.set(worker, { target, reserve })
    else e.wants.delete(worker)
    return this.settle(nowMs)
  }

  /** `worker` gave `n` slots of `key` back (n may be 0: the answer to a reclaim). */
  release(worker: number, key: string, n: number, nowMs: number): LedgerAction[] {
    const e = this.pools.get(key)
    if (e !== undefined && n > 0) {
      const left = (e.held.get(worker) ?? 0) - n
      if (left > 0) e.held.set(worker, left)
      else e.held.delete(worker)
      this.forgetIfEmpty(e)
    }
    return this.settle(nowMs)
  }

  /**
   * Online restart: `holder` (no worker: the pooler being taken over) holds `n` slots of the pool
   * outright, as it last reported, until it reports fewer or is dropped (dropWorker). It is never
   * granted anything, and what is reclaimed from it comes back only as its servers close.
   */
  setHeld(holder: number, key: string, db: string, user: string, n: number, limits: SlotLimits, nowMs: number): LedgerAction[] {
    const e = this.entry(key, db, user, limits)
    if (n > 0) e.held.set(holder, n)
    else e.held.delete(holder)
    this.forgetIfEmpty(e)
    return this.settle(nowMs)
  }

  /** Slots held per pool over all holders, with the limits last reported (for a pooler that takes over). */
  holdings(): Array<{ key: string; db: string; user: string; n: number; limits: SlotLimits }> {
    const out: Array<{ key: string; db: string; user: string; n: number; limits: SlotLimits }> = []
    for (const e of this.pools.values()) {
      const n = sum(e.held.values())
      if (n > 0) out.push({ key: e.key, db: e.db, user: e.user, n, limits: e.limits })
    }
    return out
  }

  /** A worker is gone: its requests are void at once (its slots stay counted until dropWorker). */
  withdraw(worker: number): void {
    for (const e of this.pools.values()) e.wants.delete(worker)
  }

  /** A worker is gone: every slot it held is free again, and its requests are void. */
  dropWorker(worker: number, nowMs: number): LedgerAction[] {
    for (const e of [...this.pools.values()]) {
      e.held.delete(worker)
      e.wants.delete(worker)
      this.forgetIfEmpty(e)
    }
    for (const tag of [...this.asked.keys()]) if (tag.startsWith(`${worker}\u0000`)) this.asked.delete(tag)
    return this.settle(nowMs)
  }

  /**
   * Grants what free room allows, fairest first, and asks holders for slots where a worker is
   * still short. Called after every change; the primary also calls it now and then while some
   * worker waits, since a holder's idle servers do not announce themselves.
   */
  settle(nowMs: number): LedgerAction[] {
    const out: LedgerAction[] = []
    for (const e of this.pools.values()) {
      if (e.wants.size === 0) continue
      const fair = this.fairShare(e)
      // Workers below their fair share first, then by how little they hold.
      const order = [...e.wants.keys()].sort((a, b) => (e.held.get(a) ?? 0) - (e.held.get(b) ?? 0))
      const hasPoorWaiter = order.some((w) => (e.held.get(w) ?? 0) < fair)
      for (const w of order) {
        const want = e.wants.get(w)
        if (want === undefined) continue
        const has = e.held.get(w) ?? 0
        if (hasPoorWaiter && has >= fair) continue
        const room = this.room(e, want.reserve)
        const give = Math.min(want.target - has, room)
        if (give > 0) {
          e.held.set(w, has + give)
          out.push({ kind: 'grant', worker: w, key: e.key, n: give })
        }
        const short = want.target - has - Math.max(0, give)
        if (short <= 0) {
          e.wants.delete(w)
          continue
        }
        this.reclaimFor(e, w, short, has + Math.max(0, give) < fair ? fair : null, nowMs, out)
      }
    }
    return out
  }

  /** Free slots for one more server of this pool at every level. */
  private room(e: PoolEntry, reserve: boolean): number {
    const l = e.limits
    let room = l.pool + (reserve ? l.reserve : 0) - sum(e.held.values())
    if (l.db > 0) room = Math.min(room, l.db - this.totalOfDb(e.db))
    if (l.user > 0) room = Math.min(room, l.user - this.totalOfUser(e.user))
    return room
  }

  /** The pool's limit over the workers that hold or want its slots (at least 1). */
  private fairShare(e: PoolEntry): number {
    const workers = new Set([...e.held.keys(), ...e.wants.keys()])
    return Math.max(1, Math.floor(e.limits.pool / Math.max(1, workers.size)))
  }

  /**
   * `w` is short by `short` slots of `e`. Every other holder at the level that binds is asked for
   * what it does not use; at the pool level, when `w` is below its fair share (`fair` set), holders
   * above it are also asked to come down to it as their servers are released.
   */
  private reclaimFor(e: PoolEntry, w: number, short: number, fair: number | null, nowMs: number, out: LedgerAction[]): void {
    const l = e.limits
    const isPoolBound = l.pool + (e.wants.get(w)?.reserve === true ? l.reserve : 0) - sum(e.held.values()) <= 0
    const candidates: Array<[PoolEntry, number]> = []
    if (isPoolBound) {
      for (const v of e.held.keys()) if (v !== w) candidates.push([e, v])
    } else {
      // A database or user limit binds: idle slots of any pool of that database or user (this
      // worker's own other pools too) may serve, as PgBouncer evicts an idle server of a sibling pool.
      const isDbBound = l.db > 0 && l.db - this.totalOfDb(e.db) <= 0
      for (const o of this.pools.values()) {
        if (!(isDbBound ? o.db === e.db : o.user === e.user)) continue
        for (const v of o.held.keys()) if (!(o === e && v === w)) candidates.push([o, v])
      }
    }
    for (const [o, v] of candidates) {
      const isAboveFair = isPoolBound && fair !== null && (o.held.get(v) ?? 0) > fair
      // A holder that is short itself has no idle slot to spare (its idle servers are between two
      // of its own transactions); only fairness may take from it.
      if (o.wants.has(v) && !isAboveFair) continue
      const tag = `${v}\u0000${o.key}`
      const last = this.asked.get(tag)
      if (last !== undefined && nowMs - last < RECLAIM_RETRY_MS) continue
      const has = o.held.get(v) ?? 0
      const keep = isPoolBound && fair !== null ? Math.min(has, fair) : has
      this.asked.set(tag, nowMs)
      out.push({ kind: 'reclaim', worker: v, key: o.key, n: Math.min(short, has), keep })
    }
  }

  private entry(key: string, db: string, user: string, limits: SlotLimits): PoolEntry {
    let e = this.pools.get(key)
    if (e === undefined) {
      e = { key, db, user, limits, held: new Map(), wants: new Map() }
      this.pools.set(key, e)
    }
    return e
  }

  private forgetIfEmpty(e: PoolEntry): void {
    if (e.held.size > 0 || e.wants.size > 0) return
    this.pools.delete(e.key)
    for (const tag of [...this.asked.keys()]) if (tag.endsWith(`\u0000${e.key}`)) this.asked.delete(tag)
  }
}

function sum(xs: Iterable<number>): number {
  let n = 0
  for (const x of xs) n += x
  return n
}
