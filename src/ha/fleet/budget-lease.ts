// The node's side of the fleet's connection budget (fleet_budget = on), as the pools see it: the
// ServerLease that pools with workers get from the primary (src/workers/lease.ts), here fed by the
// fleet's shares in etcd (budget.ts). A pool opens a server only within Pool.lease; the budget agent
// raises the lease only after etcd holds the share, and lowers it before it gives a share up, so the
// servers a node holds never exceed the share the fleet counts for it.
// Also the pure arithmetic every node runs on the same data (fairShares), so that all nodes agree on
// where the budget should go without talking to each other.
// Loaded statically by the runtime (pools need their leaser at creation), so: no etcd client here.
// ha/ does not import pool/ (the layer table): BudgetPool is the part of a Pool the budget reads and
// sets, and FleetBudgetLease fits pool/'s ServerLease by shape; the runtime hands one to the other.
// Must not: talk to etcd, start timers, or do work per query; want() only pokes the agent.

/** A server as the budget closes it. */
interface BudgetServer {
  close(reason: string): void
}

interface Sized {
  readonly size: number
}

/** What the budget reads of a pool and sets on it (Pool has it all). */
export interface BudgetPool {
  readonly database: string
  readonly user: string
  readonly settings: { readonly pool_size: number; readonly max_db_connections: number; readonly max_user_connections: number }
  /** The database's and the user's counts over this node's pools; `cap` is this node's share. */
  readonly dbCount: { readonly servers: number; cap: number }
  readonly userCount: { readonly servers: number; cap: number }
  /** Servers the pool may have open: raised only once etcd holds the share. */
  lease: number
  readonly welcome: unknown
  readonly lists: {
    readonly serverCount: number
    readonly waitingClients: Sized
    readonly loginClients: Sized
    readonly activeServers: Sized
    readonly testedServers: Sized
    readonly beingCanceledServers: Sized
    readonly idleServers: Iterable<BudgetServer>
    readonly usedServers: Iterable<BudgetServer>
    allServers(): BudgetServer[]
  }
  kick(nowMs: number): void
}

/** What the budget agent listens to: a pool whose clients wait at its lease. */
export interface BudgetAgentHook {
  poke(): void
}

/** pool/'s ServerLease, by shape. */
export class FleetBudgetLease {
  private agent: BudgetAgentHook | null = null
  readonly overLeaseReason = 'above this node\'s share of the fleet budget'

  /** The agent starts after the pools exist (the fleet's modules load later); until then every lease is 0. */
  attach(agent: BudgetAgentHook | null): void {
    this.agent = agent
  }

  want(_pool: BudgetPool, _target: number, _reserve: boolean): void {
    this.agent?.poke()
  }

  serverUp(_pool: BudgetPool, _s: unknown): void {}

  serverClosed(_pool: BudgetPool, _s: unknown): void {}

  dropped(pool: BudgetPool): void {
    pool.lease = 0
    this.agent?.poke()
  }

  minShare(min: number): number {
    return min
  }
}

/**
 * Where a budget of `limit` servers should go among nodes with these demands (clients using or
 * waiting for a server): every node with demand gets one first (as far as the budget goes, names
 * in order), then the rest in proportion to what each still wants, never above its demand, largest
 * remainders first (ties by name). Nodes without demand get 0. Deterministic: every node computes
 * the same targets from the same records.
 */
export function fairShares(limit: number, demands: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>()
  const names = [...demands.keys()].sort()
  let left = Math.max(0, limit)
  for (const n of names) {
    const d = Math.max(0, Math.floor(demands.get(n) ?? 0))
    const one = d > 0 && left > 0 ? 1 : 0
    out.set(n, one)
    left -= one
  }
  // Water-filling: hand the rest out in proportion to unmet demand until it is gone or all are met.
  while (left > 0) {
    const unmet = names.filter((n) => (demands.get(n) ?? 0) > (out.get(n) ?? 0))
    if (unmet.length === 0) break
    const total = unmet.reduce((a, n) => a + Math.floor(demands.get(n) ?? 0) - (out.get(n) ?? 0), 0)
    const exact = unmet.map((n) => {
      const need = Math.floor(demands.get(n) ?? 0) - (out.get(n) ?? 0)
      return { n, need, x: Math.min(need, (left * need) / total) }
    })
    let given = 0
    for (const e of exact) {
      const g = Math.floor(e.x)
      out.set(e.n, (out.get(e.n) ?? 0) + g)
      given += g
    }
    let rest = left - given
    const byRemainder = exact.filter((e) => e.x - Math.floor(e.x) > 0 && Math.floor(e.x) < e.need)
      .sort((a, b) => (b.x - Math.floor(b.x)) - (a.x - Math.floor(a.x)) || (a.n < b.n ? -1 : 1))
    for (const e of byRemainder) {
      if (rest === 0) break
      out.set(e.n, (out.get(e.n) ?? 0) + 1)
      rest--
    }
    if (rest === left) break
    left = rest
  }
  return out
}
